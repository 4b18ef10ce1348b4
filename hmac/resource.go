package hmac

import (
	"errors"
	"strings"
)

// ErrOutsideBasePath is returned by ResourceRule.Resource for a path that
// does not begin with the rule's base path.
var ErrOutsideBasePath = errors.New("hmac: request path is outside the configured base path")

// ResourceRule derives the signed REST resource from a request's path.
//
// MDX On Demand's document says the resource is "the final portion of the
// URL" (/sessions, /accounts, /transactions, …), so that
// GET /{institution_id}/accounts/{id}/transactions signs "/transactions";
// that is the default, [FinalSegment]. Whether MX signs the whole path after
// the base URL instead, and whether the query string is part of it, is not
// settled by any public source, so [PathAfter] offers that too.
//
// The zero value is the FinalSegment rule. A ResourceRule is immutable and
// safe for concurrent use.
type ResourceRule struct {
	whole     bool
	base      []string // base path segments; "" matches any one segment
	withQuery bool
}

// FinalSegment returns the rule that signs "/" followed by the last
// non-empty segment of the path.
func FinalSegment() ResourceRule { return ResourceRule{} }

// PathAfter returns the rule that signs the whole (escaped) path after
// basePath, and, if withQuery is set, "?" and the raw query when there is
// one. In basePath a segment written in braces, such as {institution_id},
// matches any one non-empty segment; every other segment must match exactly.
// An empty basePath or "/" strips nothing.
func PathAfter(basePath string, withQuery bool) (ResourceRule, error) {
	rr := ResourceRule{whole: true, withQuery: withQuery}
	bp := strings.Trim(basePath, "/")
	if bp == "" {
		return rr, nil
	}
	if !strings.HasPrefix(basePath, "/") {
		return ResourceRule{}, errors.New("hmac: base path must begin with '/'")
	}
	for _, seg := range strings.Split(bp, "/") {
		switch {
		case seg == "":
			return ResourceRule{}, errors.New("hmac: base path has an empty segment")
		case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") && len(seg) > 2:
			rr.base = append(rr.base, "")
		case strings.ContainsAny(seg, "{}"):
			return ResourceRule{}, errors.New("hmac: base path segment " + seg + " mixes a wildcard with text")
		default:
			rr.base = append(rr.base, seg)
		}
	}
	return rr, nil
}

// IsFinalSegment reports whether rr is the FinalSegment rule.
func (rr ResourceRule) IsFinalSegment() bool { return !rr.whole }

// Resource returns the resource to sign for a request with the given escaped
// path (as on the wire, e.g. url.URL.EscapedPath) and raw query.
func (rr ResourceRule) Resource(escapedPath, rawQuery string) (string, error) {
	if !rr.whole {
		p := strings.TrimRight(escapedPath, "/")
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			return p[i:], nil // the segment with its slash, no copy
		}
		return "/" + p, nil
	}
	rest := escapedPath
	if rest != "" && rest[0] != '/' {
		return "", ErrOutsideBasePath // "*" of OPTIONS *, or not a path at all
	}
	for _, want := range rr.base {
		if !strings.HasPrefix(rest, "/") {
			return "", ErrOutsideBasePath
		}
		rest = rest[1:]
		seg := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i:]
		} else {
			rest = ""
		}
		if seg == "" || (want != "" && seg != want) {
			return "", ErrOutsideBasePath
		}
	}
	if rest == "" {
		rest = "/"
	}
	if rr.withQuery && rawQuery != "" {
		return rest + "?" + rawQuery, nil
	}
	return rest, nil
}
