package hmac

import (
	"errors"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
)

func TestRoutesDefault(t *testing.T) {
	rt, err := NewRoutes(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/inst1/sessions", "/inst1/accounts", "/inst1/accounts/acct-7/transactions", "/inst1/users/u1/user",
		"/inst1/members/m1/member", "/inst1/accounts/a/account_owner", "/inst1/accounts/a/account_number",
		"/sessions", "/inst1/accounts/%C3%A9/transactions",
	} {
		if err := rt.Check(p); err != nil {
			t.Errorf("Check(%q) = %v", p, err)
		}
	}
	for p, want := range map[string]error{
		"/inst1/admin":                      ErrUnknownResource,
		"/inst1/accounts/a1":                ErrUnknownResource,
		"/inst1/accounts/a1/holdings":       ErrUnknownResource,
		"/inst1/accounts/a/account_numbers": ErrUnknownResource,
		"/inst1/Accounts":                   ErrUnknownResource,
		"/":                                 ErrUnknownResource,
		"/inst1/./accounts":                 ErrPathNotCanonical,
		"/inst1/%2e%2e/accounts":            ErrPathNotCanonical,
		"/inst1/x%2faccounts":               ErrPathNotCanonical,
		"/inst1//accounts":                  ErrPathNotCanonical,
		"/inst1/accounts;x=1":               ErrPathNotCanonical,
		"/inst1/accounts/":                  ErrPathNotCanonical,
		"/inst1/accounts\\x":                ErrPathNotCanonical,
		"/inst1/%61ccounts":                 ErrPathNotCanonical,
	} {
		if err := rt.Check(p); !errors.Is(err, want) {
			t.Errorf("Check(%q) = %v, want %v", p, err, want)
		}
	}
	if got := rt.Resources(); !slices.Equal(got, DefaultResources) {
		t.Errorf("Resources() = %v", got)
	}
}

func TestRoutesResources(t *testing.T) {
	rt, err := NewRoutes(append(slices.Clone(DefaultResources), "holdings", "/account_numbers"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/i/accounts/a/holdings", "/i/accounts/a/account_numbers", "/i/sessions"} {
		if err := rt.Check(p); err != nil {
			t.Errorf("Check(%q) = %v", p, err)
		}
	}
	for _, bad := range []string{"", "a/b", "{id}", "a;b", "..", "%2e"} {
		if _, err := NewRoutes([]string{bad}, nil); err == nil {
			t.Errorf("resource %q accepted", bad)
		}
	}
}

func TestRoutesTemplates(t *testing.T) {
	rt, err := NewRoutes(nil, []string{"/{institution_id}/sessions", "/{institution_id}/accounts", "/{institution_id}/accounts/{id}/transactions"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/inst1/sessions", "/inst1/accounts", "/inst1/accounts/7/transactions"} {
		if err := rt.Check(p); err != nil {
			t.Errorf("Check(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"/inst1/admin/accounts", "/accounts", "/inst1/x/y/accounts/7/transactions", "/inst1/accounts/7/user", "/inst1/sessions/x"} {
		if err := rt.Check(p); !errors.Is(err, ErrUnknownResource) {
			t.Errorf("Check(%q) = %v, want ErrUnknownResource", p, err)
		}
	}
	if err := rt.Check("/inst1/../sessions"); !errors.Is(err, ErrPathNotCanonical) {
		t.Errorf("dot segment under templates: %v", err)
	}
	for _, bad := range []string{"", "/", "accounts", "/{institution_id}/{resource}", "/a//b", "/a/{x", "/a/{}/b", "/a/{{x}}/b", "/a/./b", "/a;x/b"} {
		if _, err := NewRoutes(nil, []string{bad}); err == nil {
			t.Errorf("template %q accepted", bad)
		}
	}
	if _, err := NewRoutes([]string{"accounts"}, []string{"/{i}/accounts"}); err == nil {
		t.Error("resources and templates together accepted")
	}
}

// FuzzCanonicalPath: the MDX route check never panics, and whatever it
// admits is a path every reader resolves alike, ending in an allowed
// resource.
func FuzzCanonicalPath(f *testing.F) {
	rt, err := NewRoutes(nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/inst1/accounts", "/inst1/./accounts", "/inst1/%2e%2e/accounts", "/inst1/x%2faccounts",
		"/inst1//accounts", "/inst1/accounts;x=1", "/inst1/accounts/", "/inst1/admin", "/inst1/accounts\\x", "/inst1/acc%6Funts"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := rt.Check(p)
		if err != nil {
			if !errors.Is(err, ErrPathNotCanonical) && !errors.Is(err, ErrUnknownResource) {
				t.Fatalf("Check(%q) = %v", p, err)
			}
			return
		}
		d, uerr := url.PathUnescape(p)
		if uerr != nil || path.Clean(d) != d || strings.Count(d, "/") != strings.Count(p, "/") || strings.ContainsAny(d, "\\;%?#") {
			t.Fatalf("admitted %q, which is not canonical", p)
		}
		res, _ := FinalSegment().Resource(p, "")
		if !slices.Contains(DefaultResources, strings.TrimPrefix(res, "/")) || "/"+path.Base(d) != res {
			t.Fatalf("admitted %q, whose signed resource is %q", p, res)
		}
	})
}
