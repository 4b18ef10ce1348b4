// Package fdx protects FDX v6 resource servers: it validates OAuth 2.0
// access tokens (RFC 9068 JWTs against a JWKS, or opaque tokens by RFC 7662
// introspection), checks that a token is bound to the client certificate
// that presented it (RFC 8705) or to the key of the DPoP proof that came
// with it (RFC 9449), enforces the scope each endpoint requires (the FDX
// tables of the API security profile), and the accounts and consent a
// token's consent grants (Grants).
//
// It knows nothing of HTTP servers; it is the library under the fdx_auth
// Caddy directive.
package fdx

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/mxgate/mxgate/internal/urlpath"
)

// Authenticated, as a rule's scope, requires a valid token and no scope.
const Authenticated = "authenticated"

// Rule is one row of a scope table: a method, a path pattern whose
// segments in braces ({accountId}) match any one segment, and the scopes
// of which a token needs any one.
type Rule struct {
	Method  string
	Pattern string
	Scopes  []string // empty: a valid token suffices
	segs    []string // "" for a wildcard segment
	params  []string // a wildcard segment's name (accountId), "" for a literal one
}

// NewRule parses a rule. scopes is "a|b|c" or "authenticated".
func NewRule(method, pattern, scopes string) (Rule, error) {
	method = strings.ToUpper(method)
	if method == "" || strings.ContainsAny(method, " /") {
		return Rule{}, fmt.Errorf("fdx: bad method %q", method)
	}
	if !strings.HasPrefix(pattern, "/") {
		return Rule{}, fmt.Errorf("fdx: pattern %q must begin with /", pattern)
	}
	r := Rule{Method: method, Pattern: pattern}
	for _, seg := range strings.Split(strings.Trim(pattern, "/"), "/") {
		switch {
		case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") && len(seg) > 2:
			r.segs = append(r.segs, "")
			r.params = append(r.params, seg[1:len(seg)-1])
		case seg == "" || strings.ContainsAny(seg, "{}*") || urlpath.Check("/"+seg) != nil:
			return Rule{}, fmt.Errorf("fdx: pattern %q has a bad segment %q", pattern, seg)
		default:
			r.segs = append(r.segs, seg)
			r.params = append(r.params, "")
		}
	}
	if scopes != Authenticated {
		for _, s := range strings.Split(scopes, "|") {
			if s == "" || strings.ContainsAny(s, " \t") {
				return Rule{}, fmt.Errorf("fdx: bad scope list %q", scopes)
			}
			r.Scopes = append(r.Scopes, s)
		}
	}
	return r, nil
}

// Allows reports whether a token with the given scopes may use the rule.
func (r *Rule) Allows(scopes []string) bool {
	if len(r.Scopes) == 0 {
		return true
	}
	for _, s := range r.Scopes {
		if slices.Contains(scopes, s) {
			return true
		}
	}
	return false
}

// Required names the scopes a token needs, for error messages.
func (r *Rule) Required() string {
	if len(r.Scopes) == 0 {
		return Authenticated
	}
	return strings.Join(r.Scopes, " ")
}

// Has reports whether the rule's pattern has the wildcard segment
// {name}.
func (r *Rule) Has(name string) bool { return slices.Contains(r.params, name) }

// Param returns the segment of p, a canonical path the rule matches, at
// the place of the pattern's {name}, percent-decoded once, as an
// application reads it (p's canonical form guarantees that decoding
// yields no "/", "%", "?", "#", "\", ";" or control byte). ok is false
// when the pattern has no {name} or p does not have the rule's shape.
func (r *Rule) Param(p, name string) (string, bool) {
	i := slices.Index(r.params, name)
	if i < 0 || urlpath.Check(p) != nil {
		return "", false
	}
	segs := urlpath.Segments(p)
	if len(segs) != len(r.segs) {
		return "", false
	}
	v, err := url.PathUnescape(segs[i])
	if err != nil {
		return "", false
	}
	return v, true
}

func (r *Rule) match(segs []string) (wild int, ok bool) {
	if len(segs) != len(r.segs) {
		return 0, false
	}
	for i, s := range r.segs {
		switch {
		case s == "":
			wild++
		case s != segs[i]:
			return 0, false
		}
	}
	return wild, true
}

// Table is a scope table. The zero value is an empty table.
type Table struct{ rules []Rule }

// DefaultTable returns the FDX v6 rows of the API security profile
// (reference 003): FDX Core, Consent and Notification Subscription APIs.
func DefaultTable() *Table {
	rows := [][3]string{
		{"GET", "/fdx/v6/core/accounts", "fdx:accountbasic:read|fdx:accountdetailed:read"},
		{"GET", "/fdx/v6/core/accounts/{accountId}", "fdx:accountbasic:read|fdx:accountdetailed:read"},
		{"GET", "/fdx/v6/core/accounts/{accountId}/transactions", "fdx:transactions:read"},
		{"GET", "/fdx/v6/core/accounts/{accountId}/contact", "fdx:customercontact:read"},
		{"GET", "/fdx/v6/core/accounts/{accountId}/payment-networks", "fdx:paymentsupport:read"},
		{"GET", "/fdx/v6/core/accounts/{accountId}/asset-transfer-networks", "fdx:paymentsupport:read"},
		{"GET", "/fdx/v6/consents/{consentId}", Authenticated},
		{"PATCH", "/fdx/v6/consents/{consentId}/revocation", Authenticated},
		{"GET", "/fdx/v6/consents/{consentId}/revocation", Authenticated},
		{"POST", "/fdx/v6/events/notification-subscriptions", "fdx:notifications:subscribe"},
		{"GET", "/fdx/v6/events/notification-subscriptions/{subscriptionId}", "fdx:notifications:subscribe"},
		{"DELETE", "/fdx/v6/events/{consentId}/revocation/{subscriptionId}", "fdx:notifications:subscribe"},
	}
	t := &Table{}
	for _, row := range rows {
		r, err := NewRule(row[0], row[1], row[2])
		if err != nil {
			panic(err)
		}
		t.rules = append(t.rules, r)
	}
	return t
}

// Rules returns a copy of the table's rules.
func (t *Table) Rules() []Rule { return slices.Clone(t.rules) }

// With returns a table with rules added; a rule for a method and pattern
// already present replaces it.
func (t *Table) With(rules ...Rule) *Table {
	out := &Table{rules: slices.Clone(t.rules)}
	for _, r := range rules {
		i := slices.IndexFunc(out.rules, func(o Rule) bool { return o.Method == r.Method && o.Pattern == r.Pattern })
		if i >= 0 {
			out.rules[i] = r
		} else {
			out.rules = append(out.rules, r)
		}
	}
	return out
}

// ErrPathNotCanonical is matched (errors.Is) by Match's error for a path
// that is not canonical: dot segments (raw or percent-encoded), doubled or
// trailing slashes, a backslash or a ";" parameter (raw or encoded), an
// encoded "/", control bytes, needless percent-encoding. Such a path could
// smuggle one endpoint under another's name: the application behind the
// gateway may resolve it to another resource than the row that matched.
var ErrPathNotCanonical = urlpath.ErrNotCanonical

// Match returns the rule for method and p (HEAD matches GET), the one with
// the fewest wildcard segments when several match, or nil when none does.
// p is the path as the client sent it, still percent-encoded and without
// the query (not Go's decoded URL.Path, in which an encoded "/" can no
// longer be told from a separator).
func (t *Table) Match(method, p string) (*Rule, error) {
	if err := urlpath.Check(p); err != nil {
		return nil, err
	}
	if method == "HEAD" {
		method = "GET"
	}
	segs := strings.Split(strings.Trim(p, "/"), "/")
	var best *Rule
	bestWild := -1
	for i := range t.rules {
		r := &t.rules[i]
		if r.Method != method {
			continue
		}
		if w, ok := r.match(segs); ok && (best == nil || w < bestWild) {
			best, bestWild = r, w
		}
	}
	return best, nil
}
