package fdxauth

import (
	"net/http"
	"testing"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// discard is a ResponseWriter that keeps nothing but its headers.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

const benchPath = "/fdx/v6/core/accounts/acc-1/transactions"

// BenchmarkFDXAuthBound is a request with a certificate-bound JWT access
// token (keys cached), as every fdx_auth request was before DPoP.
func BenchmarkFDXAuthBound(b *testing.B) {
	as := newAuthServer(b)
	cert := clientCert(b, "recipient-1")
	a, _ := newFDXAuth(b, &FDXAuth{JWKSURL: as.URL + "/jwks", AccountClaim: &FDXGrantClaim{Claim: "fdx_accounts"}})
	r := request(benchPath, as.mint(b, cert, map[string]any{"fdx_accounts": []string{"acc-1"}}), cert)
	next := &handlertest.Next{}
	w := &discard{h: http.Header{}}
	if err := a.ServeHTTP(w, r, next); err != nil || next.Calls != 1 {
		b.Fatalf("%v %d", err, w.code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		clear(w.h)
		if err := a.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if next.Calls != b.N+1 {
		b.Fatalf("%d of %d requests admitted", next.Calls-1, b.N)
	}
}

// BenchmarkFDXAuthDPoP is the same request with a DPoP-bound token and a
// fresh proof each time: the proof's parse, signature and claims, and its
// jti recorded in the in-process replay cache (the proofs are made before
// the timer starts).
func BenchmarkFDXAuthDPoP(b *testing.B) {
	as := newAuthServer(b)
	k := newDPoPKey(b)
	a, _ := newFDXAuth(b, &FDXAuth{JWKSURL: as.URL + "/jwks", ClientCert: ClientCertOptional, DPoP: DPoPAllowed, AccountClaim: &FDXGrantClaim{Claim: "fdx_accounts"}})
	tok := as.mint(b, nil, map[string]any{"cnf": map[string]string{"jkt": k.jkt}, "fdx_accounts": []string{"acc-1"}})
	proofs := make([]string, b.N+1)
	for i := range proofs {
		proofs[i] = k.proof(b, "GET", site+benchPath, tok, nil)
	}
	r := dpopRequest(benchPath, tok, proofs[0], nil)
	next := &handlertest.Next{}
	w := &discard{h: http.Header{}}
	if err := a.ServeHTTP(w, r, next); err != nil || next.Calls != 1 {
		b.Fatalf("%v %d", err, w.code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		clear(w.h)
		r.Header["Dpop"] = proofs[i+1 : i+2]
		if err := a.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if next.Calls != b.N+1 {
		b.Fatalf("%d of %d requests admitted", next.Calls-1, b.N)
	}
}
