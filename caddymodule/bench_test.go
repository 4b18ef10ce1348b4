package caddymodule

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mxgate/mxgate/hmac"
)

type nopHandler struct{}

func (nopHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return nil }

// BenchmarkIPAllowHandler is mx_ip_allow's whole ServeHTTP for an admitted
// client: reading Caddy's client IP, parsing it, and the trie lookup.
func BenchmarkIPAllowHandler(b *testing.B) {
	a := &IPAllow{Ranges: []string{"mx"}}
	provision(&testing.T{}, a)
	r := withClientIP(httptest.NewRequest("GET", "/inst1/accounts", nil), "192.41.58.130")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		if err := a.ServeHTTP(w, r, nopHandler{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyHandler1KiB is mdx_hmac verify's whole ServeHTTP for a
// signed 1 KiB POST: header checks, buffering the body, MD5, HMAC.
func BenchmarkVerifyHandler1KiB(b *testing.B) {
	m := &MDXHMAC{Keys: []string{testKey}}
	m.now = func() time.Time { return testNow }
	provision(&testing.T{}, m)
	m.logger = zap.NewNop()
	body := bytes.Repeat([]byte("<a>x</a>"), 128)
	k, _ := hmac.ParseKey(testKey)
	date := hmac.FormatDate(testNow)
	md5 := hmac.ContentMD5(body)
	sig, _ := hmac.Sign(hmac.SHA1, k, &hmac.Request{Method: "POST", ContentMD5: md5, ContentType: MDXContentType, Date: date, Accept: MDXContentType, Resource: "/sessions"})
	base := httptest.NewRequest("POST", "/inst1/sessions", nil)
	base.Header.Set("Accept", MDXContentType)
	base.Header.Set("Content-Type", MDXContentType)
	base.Header.Set("Date", date)
	base.Header.Set("Content-MD5", md5)
	base.Header.Set("MDX-HMAC", sig)
	base = withClientIP(base, "64.77.254.33")
	w := httptest.NewRecorder()
	rd := bytes.NewReader(body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		r := *base
		r.Body = io.NopCloser(rd)
		r.ContentLength = int64(len(body))
		if err := m.ServeHTTP(w, &r, nopHandler{}); err != nil {
			b.Fatal(err)
		}
	}
}
