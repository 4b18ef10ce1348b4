package ipallow

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// BenchmarkIPAllowHandler is mx_ip_allow's whole ServeHTTP for an admitted
// client: parsing the TCP peer and the trie lookup.
func BenchmarkIPAllowHandler(b *testing.B) {
	a := &IPAllow{Ranges: []string{"mx"}}
	handlertest.Provision(b, a)
	r := request("192.41.58.130:443", "")
	w := httptest.NewRecorder()
	nop := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	b.ReportAllocs()
	for b.Loop() {
		if err := a.ServeHTTP(w, r, nop); err != nil {
			b.Fatal(err)
		}
	}
}
