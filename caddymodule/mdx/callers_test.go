package mdx

import (
	"net/http/httptest"
	"testing"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// TestSignOnlyForLocalCallers: mdx_hmac sign signs for loopback callers
// (or those allow_callers names) and answers anyone else 403, unsigned.
func TestSignOnlyForLocalCallers(t *testing.T) {
	def := &Sign{Signing: Signing{Keys: []string{testKey}}}
	handlertest.Provision(t, def)
	narrow := &Sign{Signing: Signing{Keys: []string{testKey}}}
	narrow.AllowCallers = []string{"127.0.0.1/32"}
	handlertest.Provision(t, narrow)
	for _, c := range []struct {
		s      *Sign
		remote string
		want   int
	}{
		{def, "127.0.0.1:1", 200},
		{def, "[::1]:1", 200},
		{def, "192.0.2.2:1", 403},
		{def, "[::ffff:192.0.2.2]:1", 403},
		{narrow, "127.0.0.1:1", 200},
		{narrow, "127.0.0.2:1", 403},
	} {
		r := httptest.NewRequest("GET", "/inst1/accounts", nil)
		r.RemoteAddr = c.remote
		r.Header.Set("X-Forwarded-For", "127.0.0.1")
		next := &handlertest.Next{}
		w, err := handlertest.Serve(t, c.s, handlertest.Request(r, "127.0.0.1"), next)
		if err != nil {
			t.Fatal(err)
		}
		if w.Code != c.want {
			t.Errorf("allow %v, caller %s: %d, want %d", c.s.AllowCallers, c.remote, w.Code, c.want)
		}
		signed := next.Received.Get("MDX-HMAC") != ""
		if signed != (c.want == 200) || (c.want == 403 && next.Calls != 0) {
			t.Errorf("caller %s: signed %v, upstream calls %d", c.remote, signed, next.Calls)
		}
		if c.want == 403 && w.Body.String() != `<mdx version="5.0"><error><code></code><message>Forbidden: this caller may not use the credentials of this gateway</message></error></mdx>` {
			t.Errorf("caller %s: body %s", c.remote, w.Body)
		}
	}
}
