package ipallow

import (
	"net/http/httptest"
	"testing"

	"github.com/mxgate/mxgate/caddymodule/internal/handlertest"
)

// BenchmarkIPAllowHandler is mx_ip_allow's whole ServeHTTP for an admitted
// client: reading Caddy's client IP, parsing it, and the trie lookup.
func BenchmarkIPAllowHandler(b *testing.B) {
	a := &IPAllow{Ranges: []string{"mx"}}
	handlertest.Provision(b, a)
	r := handlertest.Request(httptest.NewRequest("GET", "/inst1/accounts", nil), "192.41.58.130")
	w := httptest.NewRecorder()
	nop := &handlertest.Next{}
	b.ReportAllocs()
	for b.Loop() {
		if err := a.ServeHTTP(w, r, nop); err != nil {
			b.Fatal(err)
		}
	}
}
