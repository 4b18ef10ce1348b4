package fdx

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
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

// FuzzMetadata: any metadata document either is refused or names the
// configured issuer and only absolute http(s) endpoints, https ones for
// an https issuer.
func FuzzMetadata(f *testing.F) {
	const issuer = "https://as.example/t1"
	f.Add([]byte(`{"issuer":"https://as.example/t1","jwks_uri":"https://as.example/jwks","introspection_endpoint":"https://as.example/i"}`))
	f.Add([]byte(`{"issuer":"https://as.example/t1","mtls_endpoint_aliases":{"introspection_endpoint":"https://mtls.as.example/i"}}`))
	f.Add([]byte(`{"issuer":"https://as.example/t2","jwks_uri":"https://as.example/jwks"}`))
	f.Add([]byte(`{"issuer":"https://as.example/t1","jwks_uri":"http://as.example/jwks"}`))
	f.Add([]byte(`{"issuer":"https://as.example/t1","jwks_uri":"/jwks"}`))
	f.Add([]byte(`{"issuer":"https://as.example/t1","jwks_uri":42}`))
	f.Add([]byte(`null`))
	d := &Discovery{Issuer: issuer}
	f.Fuzz(func(t *testing.T, raw []byte) {
		md, err := d.parse(raw)
		if err != nil {
			return
		}
		if md.Issuer != issuer {
			t.Fatalf("issuer %q accepted", md.Issuer)
		}
		for _, ep := range []string{md.JWKSURI, md.TokenEndpoint, md.IntrospectionEndpoint, md.MTLSEndpointAliases.IntrospectionEndpoint, md.MTLSEndpointAliases.TokenEndpoint} {
			if ep == "" {
				continue
			}
			u, err := url.Parse(ep)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				t.Fatalf("endpoint %q accepted", ep)
			}
		}
	})
}

// FuzzIntrospectionAnswer: whatever the endpoint answers, a token is
// accepted only for an answer whose active is the boolean true and whose
// aud holds the audience; anything else is an invalid token or the
// endpoint failing, never a panic.
func FuzzIntrospectionAnswer(f *testing.F) {
	for _, s := range []string{`{"active":true,"aud":"https://rs.example"}`, `{"active":true}`, `{"active":"true"}`,
		`{"active":true,"aud":["x","https://rs.example"],"iss":"https://as.example"}`, `{"active":true,"aud":"https://rs.example","exp":"x"}`,
		`{"active":false}`, `null`, `[]`, `{"active":true,"aud":"https://rs.example","cnf":{"x5t#S256":1}}`} {
		f.Add([]byte(s))
	}
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body.Load().([]byte)) }))
	f.Cleanup(srv.Close)
	f.Fuzz(func(t *testing.T, raw []byte) {
		body.Store(raw)
		in := &Introspector{URL: srv.URL, ClientID: "rs", ClientSecret: "s", Issuer: "https://as.example", Audiences: []string{"https://rs.example"}}
		c, err := in.Introspect(context.Background(), "tok")
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("an error of no kind: %v", err)
			}
			return
		}
		var v struct {
			Active any             `json:"active"`
			Aud    json.RawMessage `json:"aud"`
		}
		if json.Unmarshal(raw, &v) != nil || v.Active != true || !audienceHolds(v.Aud, []string{"https://rs.example"}) || c == nil {
			t.Fatalf("accepted %q", raw)
		}
	})
}
