package mdx

import (
	"bytes"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// BenchmarkVerifyHandler1KiB is mdx_hmac verify's whole ServeHTTP for a
// signed 1 KiB POST: header checks, buffering the body, MD5, HMAC.
func BenchmarkVerifyHandler1KiB(b *testing.B) {
	m := &Verify{Signing: Signing{Keys: []string{testKey}}}
	m.now = func() time.Time { return testNow }
	handlertest.Provision(b, m)
	m.logger = zap.NewNop()
	body := bytes.Repeat([]byte("<a>x</a>"), 128)
	k, _ := hmac.ParseKey(testKey)
	date := hmac.FormatDate(testNow)
	md5 := hmac.ContentMD5(body)
	sig, _ := hmac.Sign(hmac.SHA1, k, &hmac.Request{Method: "POST", ContentMD5: md5, ContentType: refusal.MDXContentType, Date: date, Accept: refusal.MDXContentType, Resource: "/sessions"})
	base := httptest.NewRequest("POST", "/inst1/sessions", nil)
	base.Header.Set("Accept", refusal.MDXContentType)
	base.Header.Set("Content-Type", refusal.MDXContentType)
	base.Header.Set("Date", date)
	base.Header.Set("Content-MD5", md5)
	base.Header.Set("MDX-HMAC", sig)
	base = handlertest.Request(base, "64.77.254.33")
	w := httptest.NewRecorder()
	nop := &handlertest.Next{}
	rd := bytes.NewReader(body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		r := *base
		r.Body = io.NopCloser(rd)
		r.ContentLength = int64(len(body))
		if err := m.ServeHTTP(w, &r, nop); err != nil {
			b.Fatal(err)
		}
		_ = r.Body.Close() // as a proxy's transport does
	}
}
