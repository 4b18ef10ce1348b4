package hmac

import (
	"errors"
	"testing"
)

func TestFinalSegment(t *testing.T) {
	rr := FinalSegment()
	cases := map[string]string{
		"/inst1/sessions":                 "/sessions",
		"/inst1/accounts":                 "/accounts",
		"/inst1/accounts/42/transactions": "/transactions",
		"/inst1/accounts/42/holdings":     "/holdings",
		"/inst1/sessions/":                "/sessions",
		"/sessions":                       "/sessions",
		"/":                               "/",
		"":                                "/",
	}
	for path, want := range cases {
		got, err := rr.Resource(path, "start_date=2024-01-01&page=2")
		if err != nil || got != want {
			t.Errorf("Resource(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
	if !rr.IsFinalSegment() {
		t.Error("FinalSegment().IsFinalSegment() = false")
	}
	var zero ResourceRule
	if got, _ := zero.Resource("/i/accounts", ""); got != "/accounts" {
		t.Errorf("zero rule is not FinalSegment: %q", got)
	}
}

func TestPathAfter(t *testing.T) {
	cases := []struct {
		base      string
		withQuery bool
		path, q   string
		want      string
		err       error
	}{
		{"/{institution_id}", false, "/inst1/accounts/42/transactions", "page=2", "/accounts/42/transactions", nil},
		{"/{institution_id}", true, "/inst1/accounts/42/transactions", "page=2", "/accounts/42/transactions?page=2", nil},
		{"/{institution_id}", true, "/inst1/accounts", "", "/accounts", nil},
		{"/{institution_id}", false, "/inst1/sessions", "", "/sessions", nil},
		{"/{institution_id}", false, "/inst1", "", "/", nil},
		{"/{institution_id}", false, "/", "", "", ErrOutsideBasePath},
		{"/{institution_id}", false, "//sessions", "", "", ErrOutsideBasePath},
		{"/mdx/{id}", false, "/mdx/inst1/accounts", "", "/accounts", nil},
		{"/mdx/{id}", false, "/other/inst1/accounts", "", "", ErrOutsideBasePath},
		{"/mdx/{id}", false, "/mdxx/inst1/accounts", "", "", ErrOutsideBasePath},
		{"/mdx", false, "/mdx/accounts/a%2Fb/transactions", "", "/accounts/a%2Fb/transactions", nil},
		{"", false, "/inst1/sessions", "", "/inst1/sessions", nil},
		{"/", true, "/inst1/sessions", "a=b", "/inst1/sessions?a=b", nil},
		{"", true, "*", "", "", ErrOutsideBasePath},
		{"", true, "0", "0", "", ErrOutsideBasePath},
		{"", false, "", "", "/", nil},
	}
	for _, c := range cases {
		rr, err := PathAfter(c.base, c.withQuery)
		if err != nil {
			t.Fatalf("PathAfter(%q): %v", c.base, err)
		}
		got, err := rr.Resource(c.path, c.q)
		if !errors.Is(err, c.err) || got != c.want {
			t.Errorf("PathAfter(%q, %v).Resource(%q, %q) = %q, %v; want %q, %v", c.base, c.withQuery, c.path, c.q, got, err, c.want, c.err)
		}
	}
	for _, bad := range []string{"mdx", "/a//b", "/x{id}", "/{id}x", "/{}"} {
		if _, err := PathAfter(bad, false); err == nil {
			t.Errorf("PathAfter(%q) accepted", bad)
		}
	}
}
