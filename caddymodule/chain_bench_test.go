package caddymodule_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/caddymodule/ipallow"
	"github.com/mxgate/mxgate/caddymodule/limit"
	"github.com/mxgate/mxgate/caddymodule/mdx"
	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

const benchKey = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="

// BenchmarkMDXChainGET is what mxgate's MDX ingress chain adds to a
// signed GET in front of the proxy: mx_ip_allow, mdx_hmac verify with a
// replay window, and mx_rate_limit with a limit far above the load, each
// request with its own signature. The requests are signed before the
// timer starts; run it with a fixed count (-benchtime 200000x) so that
// there are enough of them.
func BenchmarkMDXChainGET(b *testing.B) {
	allow := &ipallow.IPAllow{Ranges: []string{"127.0.0.1"}}
	handlertest.Provision(b, allow)
	verify := &mdx.Verify{ReplayWindow: caddy.Duration(10 * time.Minute), ReplayCacheSize: 4_000_000}
	verify.Keys = []string{benchKey}
	handlertest.Provision(b, verify)
	rl := &limit.RateLimit{Limits: map[string]*limit.ClassLimit{"get": {Rate: 1e8}, "write": {Rate: 1e8}}}
	handlertest.Provision(b, rl)
	b.Cleanup(func() { _ = verify.Cleanup(); _ = rl.Cleanup() })

	final := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	chain := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return allow.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			return verify.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				return rl.ServeHTTP(w, r, final)
			}))
		}))
	})

	key, err := hmac.ParseKey(benchKey)
	if err != nil {
		b.Fatal(err)
	}
	date := hmac.FormatDate(time.Now())
	n := b.N
	reqs := make([]*http.Request, n)
	for i := range reqs {
		target := "/inst1/accounts/" + strconv.Itoa(i) + "/transactions"
		sig, err := hmac.Sign(hmac.SHA1, key, &hmac.Request{Method: "GET", Date: date, Accept: refusal.MDXContentType, Resource: "/transactions", SessionKey: "s" + strconv.Itoa(i)})
		if err != nil {
			b.Fatal(err)
		}
		r := httptest.NewRequest("GET", target, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Accept", refusal.MDXContentType)
		r.Header.Set("Date", date)
		r.Header.Set("MDX-Session-Key", "s"+strconv.Itoa(i))
		r.Header.Set("MDX-HMAC", sig)
		reqs[i] = handlertest.Request(r, "127.0.0.1")
	}
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range n {
		clear(w.Header())
		if err := chain.ServeHTTP(w, reqs[i]); err != nil {
			b.Fatal(err)
		}
		if w.Code != http.StatusOK {
			b.Fatalf("request %d: status %d: %s", i, w.Code, w.Body)
		}
	}
}
