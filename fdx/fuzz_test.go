package fdx

import (
	"errors"
	"path"
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
