package fdx

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzMatch: matching any method and path never panics, refuses every
// path that cleaning would change, and returns only a rule of the method.
func FuzzMatch(f *testing.F) {
	t := DefaultTable()
	f.Add("GET", "/fdx/v6/core/accounts/a1/transactions")
	f.Add("HEAD", "/fdx/v6/core/accounts/../accounts")
	f.Add("DELETE", "//fdx/v6/events/x/revocation/y")
	f.Add("", "")
	f.Fuzz(func(tt *testing.T, method, p string) {
		r, err := t.Match(method, p)
		if p == "" || path.Clean(p) != p {
			if !errors.Is(err, ErrPathNotCanonical) {
				tt.Fatalf("non-canonical %q: %v", p, err)
			}
			return
		}
		want := method
		if method == "HEAD" {
			want = "GET"
		}
		if r != nil && r.Method != want {
			tt.Fatalf("%s %s matched a %s rule", method, p, r.Method)
		}
	})
}

// FuzzCanonicalPath: whatever path Match lets reach a rule is one that
// every reader resolves alike; everything else is refused as not
// canonical, never matched.
func FuzzCanonicalPath(f *testing.F) {
	t := DefaultTable()
	for _, s := range []string{"/fdx/v6/core/accounts", "/fdx/v6/core/accounts\\a1", "/fdx/v6/core/accounts;x=1",
		"/fdx/v6/core/accounts%5ca1", "/fdx/v6/core/accounts%3bx", "/fdx/v6/core/accounts/a%2f..%2f..%2fconsents",
		"/fdx/v6/consents/%2e%2e", "/fdx/v6/core/accounts/", "/fdx/v6/core/accounts/a%20b/transactions"} {
		f.Add(s)
	}
	f.Fuzz(func(tt *testing.T, p string) {
		r, err := t.Match("GET", p)
		if err != nil {
			if !errors.Is(err, ErrPathNotCanonical) || r != nil {
				tt.Fatalf("Match(%q) = %v, %v", p, r, err)
			}
			return
		}
		d, uerr := url.PathUnescape(p)
		if uerr != nil || path.Clean(d) != d || strings.Count(d, "/") != strings.Count(p, "/") || strings.ContainsAny(d, "\\;%?#") {
			tt.Fatalf("Match(%q) let a non-canonical path through (rule %v)", p, r)
		}
		for i := 0; i < len(d); i++ {
			if d[i] < 0x20 || d[i] == 0x7f {
				tt.Fatalf("Match(%q) let a control byte through", p)
			}
		}
	})
}
