package shed

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// BenchmarkShedAdmit is mx_shed's whole ServeHTTP for an admitted
// request: a compare-and-swap, an add, no allocation.
func BenchmarkShedAdmit(b *testing.B) {
	s := &Shed{MaxInFlight: 1 << 20}
	handlertest.Provision(b, s)
	r := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	nop := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	b.ReportAllocs()
	for b.Loop() {
		if err := s.ServeHTTP(w, r, nop); err != nil {
			b.Fatal(err)
		}
	}
}
