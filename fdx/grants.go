package fdx

import (
	"errors"
	"fmt"
	"slices"
)

// An FDX consent grants a data recipient some accounts, and its access
// token names them (or the consent) in a claim. Grants enforces them at
// the edge: a path's {accountId} must be one of the accounts the token's
// claim lists, and its {consentId} the token's consent; otherwise the
// request is refused before the application sees it (broken object-level
// authorization, first in OWASP's API Security Top 10).

// ErrNotGranted matches every grant failure (errors.Is); errors.As with a
// *GrantError gives its reason.
var ErrNotGranted = errors.New("fdx: not granted")

// GrantError is a grant failure. Its Reason is safe to show: it names the
// claim and the path parameter, never an id.
type GrantError struct{ Reason string }

func (e *GrantError) Error() string { return "not granted: " + e.Reason }

// Is makes every GrantError match ErrNotGranted.
func (e *GrantError) Is(target error) bool { return target == ErrNotGranted }

// AuthorizationDetails is the claim of RFC 9396 (rich authorization
// requests): a list of objects, each with a type.
const AuthorizationDetails = "authorization_details"

// GrantClaim says where a token lists what its consent grants: a claim of
// its own (Claim; for accounts a JSON array of strings, for a consent a
// string), or a member of the entries of one type of RFC 9396's
// authorization_details (Claim "authorization_details", Type and Member:
// the values of Member in every entry whose type is Type, each an array
// of strings for accounts, a string for a consent). The claim is read
// from the token's claims, or the introspection answer's members.
type GrantClaim struct {
	Claim  string
	Type   string // with authorization_details
	Member string // with authorization_details
}

// Validate checks the claim's form.
func (g GrantClaim) Validate() error {
	switch {
	case g.Claim == "":
		return errors.New("fdx: a grant claim needs a name")
	case g.Claim == AuthorizationDetails && (g.Type == "" || g.Member == ""):
		return errors.New("fdx: authorization_details needs an entry type and a member")
	case g.Claim != AuthorizationDetails && (g.Type != "" || g.Member != ""):
		return fmt.Errorf("fdx: an entry type and member are for authorization_details only, not %q", g.Claim)
	}
	return nil
}

// String names the claim for messages: "accounts", or
// "authorization_details[type=fdx_consent].accounts".
func (g GrantClaim) String() string {
	if g.Claim == AuthorizationDetails {
		return AuthorizationDetails + "[type=" + g.Type + "]." + g.Member
	}
	return g.Claim
}

// Values returns what the claim grants in claims: with list, a claim's
// array of strings (or, in authorization_details, the union of the
// entries' arrays); otherwise a claim's string (or each entry's). ok is
// false when the token has no such claim (no entry of the type, none with
// the member); a claim of another shape is an error, and grants nothing.
func (g GrantClaim) Values(claims map[string]any, list bool) (vals []string, ok bool, err error) {
	bad := func() ([]string, bool, error) {
		return nil, false, &GrantError{Reason: "the token's " + g.String() + " is not " + shape(list)}
	}
	if g.Claim != AuthorizationDetails {
		v, present := claims[g.Claim]
		if !present || v == nil {
			return nil, false, nil
		}
		vals, good := stringValues(v, list)
		if !good {
			return bad()
		}
		return vals, true, nil
	}
	raw, present := claims[AuthorizationDetails]
	if !present || raw == nil {
		return nil, false, nil
	}
	entries, isList := raw.([]any)
	if !isList {
		return nil, false, &GrantError{Reason: "the token's authorization_details is not a list"}
	}
	for _, e := range entries {
		entry, isObj := e.(map[string]any)
		if !isObj {
			return nil, false, &GrantError{Reason: "the token's authorization_details holds an entry that is not an object"}
		}
		if typ, _ := entry["type"].(string); typ != g.Type {
			continue
		}
		v, has := entry[g.Member]
		if !has || v == nil {
			continue
		}
		got, good := stringValues(v, list)
		if !good {
			return bad()
		}
		vals, ok = append(vals, got...), true
	}
	return vals, ok, nil
}

func shape(list bool) string {
	if list {
		return "a list of strings"
	}
	return "a string"
}

// stringValues reads v as a list of strings (list) or a string.
func stringValues(v any, list bool) ([]string, bool) {
	if !list {
		s, ok := v.(string)
		return []string{s}, ok
	}
	items, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// The path parameters Grants enforces.
const (
	ParamAccount = "accountId"
	ParamConsent = "consentId"
)

// Grants enforces a consent's grants on the paths of a scope table. A nil
// field enforces nothing of its kind. The zero value enforces nothing.
type Grants struct {
	Accounts *GrantClaim // {accountId} must be one of its values
	Consent  *GrantClaim // {consentId} must be one of its values (a token names one consent)
}

// Check refuses (a *GrantError) the request for p, a canonical path that
// rule matched, unless every parameter of the rule that g enforces is
// granted by claims: the segment, percent-decoded once, equal byte for
// byte (so case-sensitively) to one of the claim's values. A token
// without the claim is refused on such paths.
func (g *Grants) Check(rule *Rule, p string, claims map[string]any) error {
	if err := check(g.Accounts, ParamAccount, true, rule, p, claims); err != nil {
		return err
	}
	return check(g.Consent, ParamConsent, false, rule, p, claims)
}

func check(g *GrantClaim, param string, list bool, rule *Rule, p string, claims map[string]any) error {
	if g == nil || !rule.Has(param) {
		return nil
	}
	id, ok := rule.Param(p, param)
	if !ok {
		return &GrantError{Reason: "the path's {" + param + "} cannot be read"}
	}
	vals, ok, err := g.Values(claims, list)
	switch {
	case err != nil:
		return err
	case !ok:
		return &GrantError{Reason: "the token has no " + g.String() + " claim to grant {" + param + "}"}
	case !slices.Contains(vals, id):
		return &GrantError{Reason: "the token's " + g.String() + " does not grant this {" + param + "}"}
	}
	return nil
}
