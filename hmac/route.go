package hmac

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mxgate/mxgate/internal/urlpath"
)

// MDX On Demand signs only the resource, the final segment of the path
// (see [ResourceRule]): whatever comes before it is not authenticated.
// [Routes] narrows what a verified request may name, so that a gateway does
// not widen that hole: the path must be canonical (one that every server
// reads the same way) and end in a resource MDX defines, or match one of a
// few pinned templates.

// DefaultResources are the resources MDX On Demand v5 defines: the final
// path segments its document says a signed request names.
var DefaultResources = []string{"sessions", "accounts", "transactions", "user", "member", "account_owner", "account_number"}

// Errors of Routes.Check. ErrPathNotCanonical is matched by every
// non-canonical path's error, whose text names the fault (never the path).
var (
	ErrPathNotCanonical = urlpath.ErrNotCanonical
	ErrUnknownResource  = errors.New("hmac: request path names no MDX resource")
)

// Routes says which request paths a verified MDX request may have: by
// default, any canonical path whose final segment is one of a list of
// resources; or, when templates are given, only paths that match one of
// them. It is immutable and safe for concurrent use.
type Routes struct {
	resources []string
	templates [][]string // segments; "" matches any one segment
}

// NewRoutes returns the Routes for resources (final segments; nil gives
// DefaultResources) or, if templates is not empty, for those templates
// alone. A template is a path such as /{institution_id}/accounts/{id}/transactions
// in which a segment in braces matches any one segment; its final segment
// must be written out, since it is what MDX signs. Giving both is an error.
func NewRoutes(resources, templates []string) (*Routes, error) {
	if len(resources) > 0 && len(templates) > 0 {
		return nil, errors.New("hmac: give resources or route templates, not both (a template names its resource)")
	}
	rt := &Routes{}
	for _, tpl := range templates {
		segs, err := parseTemplate(tpl)
		if err != nil {
			return nil, err
		}
		rt.templates = append(rt.templates, segs)
	}
	if len(templates) > 0 {
		return rt, nil
	}
	if resources == nil {
		resources = DefaultResources
	}
	for _, r := range resources {
		r = strings.TrimPrefix(r, "/")
		if r == "" || urlpath.Check("/"+r) != nil || strings.ContainsAny(r, "/{}") {
			return nil, fmt.Errorf("hmac: resource %q is not a single path segment", r)
		}
		rt.resources = append(rt.resources, r)
	}
	return rt, nil
}

func parseTemplate(tpl string) ([]string, error) {
	if !strings.HasPrefix(tpl, "/") || tpl == "/" {
		return nil, fmt.Errorf("hmac: route %q must begin with / and name a resource", tpl)
	}
	var segs []string
	for seg := range strings.SplitSeq(tpl[1:], "/") {
		switch {
		case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") && len(seg) > 2 && !strings.ContainsAny(seg[1:len(seg)-1], "{}"):
			segs = append(segs, "")
		case seg == "" || strings.ContainsAny(seg, "{}") || urlpath.Check("/"+seg) != nil:
			return nil, fmt.Errorf("hmac: route %q has a bad segment %q", tpl, seg)
		default:
			segs = append(segs, seg)
		}
	}
	if segs[len(segs)-1] == "" {
		return nil, fmt.Errorf("hmac: route %q must end in a resource name, not a placeholder: it is what MDX signs", tpl)
	}
	return segs, nil
}

// Resources returns the resources allowed (nil when templates are used).
func (rt *Routes) Resources() []string { return slices.Clone(rt.resources) }

// Check reports whether p, a request path as the client sent it (still
// percent-encoded, without the query; see urlpath.FromRequestURI), is
// allowed: ErrPathNotCanonical if it is not canonical, ErrUnknownResource
// if it is but names no allowed resource or matches no template, nil if
// it is allowed.
func (rt *Routes) Check(p string) error {
	if err := urlpath.Check(p); err != nil {
		return err
	}
	if len(rt.templates) > 0 {
		segs := urlpath.Segments(p)
		for _, tpl := range rt.templates {
			if matchTemplate(tpl, segs) {
				return nil
			}
		}
		return ErrUnknownResource
	}
	final := p[strings.LastIndexByte(p, '/')+1:]
	if slices.Contains(rt.resources, final) {
		return nil
	}
	return ErrUnknownResource
}

func matchTemplate(tpl, segs []string) bool {
	if len(tpl) != len(segs) {
		return false
	}
	for i, s := range tpl {
		if s != "" && s != segs[i] {
			return false
		}
	}
	return true
}
