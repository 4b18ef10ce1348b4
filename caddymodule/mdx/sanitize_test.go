package mdx

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest/observer"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

const (
	card     = "4111111111111111"
	account  = "123456789"
	accounts = `<?xml version="1.0" encoding="UTF-8"?><mdx version="5.0"><accounts><account><id>` + card + `</id><name>Checking ` + account + `</name></account></accounts></mdx>`
	masked   = `<?xml version="1.0" encoding="UTF-8"?><mdx version="5.0"><accounts><account><id>XXXXXXXXXXXX1111</id><name>Checking XXXXX6789</name></account></accounts></mdx>`
	clean    = `<mdx version="5.0"><accounts><account><id>acct-7</id><name>Checking</name></account></accounts></mdx>`
	doctype  = `<?xml version="1.0"?><!DOCTYPE mdx [<!ENTITY n "` + card + `">]><mdx><accounts><account><id>&n;</id></account></accounts></mdx>`

	findingLog = "complete account or card number in an MDX response"
	refusedLog = "MDX response refused"
	abortedLog = "MDX response aborted: the guard refused it after part of it was sent"
	passedLog  = "MDX response let through although the guard refuses such responses"
)

func newSanitize(t *testing.T, s *Sanitize) (*Sanitize, *observer.ObservedLogs) {
	t.Helper()
	handlertest.Provision(t, s)
	var logs *observer.ObservedLogs
	s.logger, logs = handlertest.Logs()
	return s, logs
}

// served is what a request through the handler came to.
type served struct {
	w     *httptest.ResponseRecorder
	err   error
	panic any
}

// serve runs s in front of next on a request of method, catching a panic
// as net/http would.
func sanitizeServe(t *testing.T, s *Sanitize, method string, next http.Handler) (out served) {
	t.Helper()
	return serveTo(t, s, httptest.NewRecorder(), method, next)
}

func serveTo(t *testing.T, s *Sanitize, w *httptest.ResponseRecorder, method string, next http.Handler) (out served) {
	t.Helper()
	return serveWriter(t, s, w, w, method, next)
}

func serveWriter(t *testing.T, s *Sanitize, rec *httptest.ResponseRecorder, w http.ResponseWriter, method string, next http.Handler) (out served) {
	t.Helper()
	out.w = rec
	defer func() { out.panic = recover() }()
	r := handlertest.Request(httptest.NewRequest(method, "/inst1/accounts", nil), "")
	out.err = s.ServeHTTP(w, r, handlerFunc{next})
	return out
}

// handlerFunc makes an http.Handler a caddyhttp.Handler.
type handlerFunc struct{ h http.Handler }

func (f handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	if u, ok := f.h.(*upstreamReply); ok {
		return u.serveErr(w, r)
	}
	f.h.ServeHTTP(w, r)
	return nil
}

// upstreamReply answers like reverse_proxy: header, status, then the body in
// chunks, panicking with http.ErrAbortHandler when a write fails.
type upstreamReply struct {
	status int
	header http.Header
	chunks []string
	err    error // returned after the chunks
	panic  any   // raised after the chunks
	// returnOnWriteError makes a failed write return its error instead
	// of aborting, as a plain handler would
	returnOnWriteError bool

	writeErr error // the first write error seen
	written  int   // chunks written
}

func reply(body string) *upstreamReply {
	return &upstreamReply{header: http.Header{"Content-Type": {refusal.MDXContentType}}, chunks: []string{body}}
}

func (u *upstreamReply) with(k, v string) *upstreamReply {
	if v == "" {
		u.header.Del(k)
	} else {
		u.header.Add(k, v)
	}
	return u
}

func (u *upstreamReply) ServeHTTP(w http.ResponseWriter, r *http.Request) { _ = u.serveErr(w, r) }

func (u *upstreamReply) serveErr(w http.ResponseWriter, _ *http.Request) error {
	for k, v := range u.header {
		w.Header()[k] = v
	}
	w.WriteHeader(max(u.status, 200))
	w.WriteHeader(http.StatusTeapot) // superfluous: ignored
	for _, c := range u.chunks {
		if _, err := io.WriteString(w, c); err != nil {
			u.writeErr = err
			if u.returnOnWriteError {
				return err
			}
			_ = http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}
		u.written++
	}
	w.Header().Set("X-Late", "1") // as reverse_proxy sets trailers, after the body
	if u.panic != nil {
		panic(u.panic)
	}
	return u.err
}

func findings(t *testing.T, rule, action string) float64 {
	return handlertest.MetricValue(t, metrics.SanitizeFindings, map[string]string{"rule": rule, "action": action})
}

func rejections(t *testing.T, reason string) float64 {
	return handlertest.MetricValue(t, metrics.Rejections, map[string]string{"directive": "mdx_sanitize", "reason": reason})
}

func letThrough(t *testing.T, reason, action string) float64 {
	return handlertest.MetricValue(t, metrics.SanitizeLetThrough, map[string]string{"reason": reason, "action": action})
}

// noNumber fails when a log line holds the number.
func noNumber(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, e := range logs.All() {
		if strings.Contains(e.Message, card) {
			t.Errorf("the log holds the number: %s", e.Message)
		}
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && (strings.Contains(s, card) || strings.Contains(s, account)) {
				t.Errorf("the log holds the number: %v", e.ContextMap())
			}
		}
	}
}

// big is a reply of about n accounts with a card number in the first.
func big(n int, tail string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><mdx version="5.0"><accounts>`)
	b.WriteString(`<account><id>` + card + `</id><name>Visa</name></account>`)
	for range n {
		b.WriteString(`<account><id>acct-1</id><name>Everyday Checking</name><balance>10.00</balance></account>`)
	}
	b.WriteString(`</accounts>` + tail + `</mdx>`)
	return b.String()
}

// chunked is reply(body) written in chunks of 4 KiB.
func chunked(body string) *upstreamReply {
	u := reply("")
	u.chunks = nil
	for len(body) > 0 {
		n := min(len(body), 4096)
		u.chunks, body = append(u.chunks, body[:n]), body[n:]
	}
	return u
}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = io.WriteString(zw, s)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func gunzip(t *testing.T, b []byte) (string, error) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	out, err := io.ReadAll(zr)
	return string(out), err
}

// wantRefused checks a 502 with the MDX error of reason, nothing of the
// upstream's reply, and one refusal counted.
func wantRefused(t *testing.T, name string, out served, reason string, before float64) {
	t.Helper()
	if out.panic != nil || out.err != nil {
		t.Fatalf("%s: panic %v, err %v", name, out.panic, out.err)
	}
	w := out.w
	if w.Code != 502 || w.Header().Get("Content-Type") != refusal.MDXContentType || strings.Contains(w.Body.String(), "4111") ||
		w.Header().Get("Content-Encoding") != "" {
		t.Errorf("%s: %d %v %q", name, w.Code, w.Header(), w.Body)
	}
	if reason != "" && !strings.Contains(w.Body.String(), reason) && reason != "account_number_in_response" && reason != "response_too_large_to_inspect" {
		t.Errorf("%s: the body does not name %s: %q", name, reason, w.Body)
	}
	if got := rejections(t, reason); got != before+1 {
		t.Errorf("%s: %s counted %v times, want %v", name, reason, got, before+1)
	}
}

func TestSanitizeMask(t *testing.T) {
	s, logs := newSanitize(t, &Sanitize{})
	cards, accts := findings(t, "card_number", "mask"), findings(t, "account_number", "mask")
	out := sanitizeServe(t, s, "GET", reply(accounts).with("Content-Length", "174"))
	if out.err != nil || out.panic != nil || out.w.Code != 200 || out.w.Body.String() != masked || out.w.Header().Get("Content-Length") != "174" {
		t.Fatalf("%+v %d %v %s", out, out.w.Code, out.w.Header(), out.w.Body)
	}
	found := logs.FilterMessage(findingLog).All()
	if len(found) != 2 {
		t.Fatalf("%d findings logged", len(found))
	}
	if f := found[0].ContextMap(); f["account"] != int64(1) || f["field"] != "id" || f["rule"] != "card_number" || f["action"] != "mask" || f["path"] != "/inst1/accounts" {
		t.Errorf("finding fields %v", f)
	}
	if findings(t, "card_number", "mask") != cards+1 || findings(t, "account_number", "mask") != accts+1 {
		t.Error("findings not counted")
	}
	noNumber(t, logs)
}

// TestSanitizeMaskGzip: a gzip reply is decoded, masked and encoded again,
// without its Content-Length.
func TestSanitizeMaskGzip(t *testing.T) {
	s, _ := newSanitize(t, &Sanitize{})
	out := sanitizeServe(t, s, "GET", reply(gzipped(t, accounts)).with("Content-Encoding", "gzip").with("Content-Length", "999"))
	w := out.w
	if w.Code != 200 || w.Header().Get("Content-Length") != "" || w.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	if got, err := gunzip(t, w.Body.Bytes()); err != nil || got != masked {
		t.Errorf("gunzipped %q %v", got, err)
	}
}

// TestSanitizeRefusedFromHeader: what the header says cannot be inspected
// is refused in mask and block modes, and the upstream's body is not read
// on; report mode lets it through and counts it.
func TestSanitizeRefusedFromHeader(t *testing.T) {
	cases := map[string]struct {
		next   *upstreamReply
		reason string
	}{
		"x-gzip":              {reply(accounts).with("Content-Encoding", "x-gzip"), "content_encoding"},
		"deflate":             {reply(accounts).with("Content-Encoding", "deflate"), "content_encoding"},
		"gzip, gzip":          {reply(accounts).with("Content-Encoding", "gzip, gzip"), "content_encoding"},
		"no Content-Type":     {reply(accounts).with("Content-Type", ""), "content_type"},
		"malformed parameter": {reply(accounts).with("Content-Type", "").with("Content-Type", "application/xml; charset"), "content_type"},
		"two Content-Types":   {reply(accounts).with("Content-Type", "application/json"), "content_type"},
		"charset latin1":      {reply(accounts).with("Content-Type", "").with("Content-Type", "text/xml; charset=ISO-8859-1"), "encoding"},
	}
	for _, action := range []string{"mask", "block"} {
		s, logs := newSanitize(t, &Sanitize{Action: action})
		for name, c := range cases {
			next := *c.next
			next.chunks = []string{accounts[:20], accounts[20:]}
			before := rejections(t, c.reason)
			out := sanitizeServe(t, s, "GET", &next)
			wantRefused(t, action+", "+name, out, c.reason, before)
			if next.written != 0 || next.writeErr == nil {
				t.Errorf("%s, %s: the upstream wrote %d chunks (%v)", action, name, next.written, next.writeErr)
			}
		}
		// a panic of the handler's own goes on
		next := reply(accounts).with("Content-Encoding", "deflate")
		next.chunks, next.panic = nil, "a bug"
		if out := sanitizeServe(t, s, "GET", next); out.panic != "a bug" {
			t.Errorf("%s: panic %v", action, out.panic)
		}
		if n := logs.FilterMessage(refusedLog).Len(); n != len(cases) {
			t.Errorf("%s: %d refusals logged", action, n)
		}
		noNumber(t, logs)
	}
	s, logs := newSanitize(t, &Sanitize{Action: "report"})
	for name, c := range cases {
		before := letThrough(t, c.reason, "report")
		out := sanitizeServe(t, s, "GET", c.next)
		if out.w.Code != 200 || out.w.Body.String() != accounts {
			t.Errorf("report, %s: %d %q", name, out.w.Code, out.w.Body)
		}
		if letThrough(t, c.reason, "report") != before+1 {
			t.Errorf("report, %s: not counted", name)
		}
	}
	if n := logs.FilterMessage(passedLog).Len(); n != len(cases) {
		t.Errorf("report: %d lines", n)
	}
}

// TestSanitizeRefusedBeforeAnyByte: a reply the guard refuses before it
// has written anything is answered 502, naming the reason.
func TestSanitizeRefusedBeforeAnyByte(t *testing.T) {
	for name, c := range map[string]struct {
		body, reason string
	}{
		"DTD":            {doctype, "doctype"},
		"encoding":       {`<?xml version="1.0" encoding="ISO-8859-1"?><mdx><accounts><account><id>` + card + `</id></account></accounts></mdx>`, "encoding"},
		"upper case":     {`<MDX><accounts><account><id>` + card + `</id></account></accounts></MDX>`, "upper_case_name"},
		"long field":     {`<mdx><accounts><account><name>` + strings.Repeat("a", 64<<10) + " " + card + `</name></account></accounts></mdx>`, "field_too_large"},
		"malformed tail": {accounts[:len(accounts)-6] + "<x>&</x></mdx>", "malformed"},
		"empty":          {"", "malformed"},
	} {
		for _, action := range []string{"mask", "block"} {
			s, logs := newSanitize(t, &Sanitize{Action: action})
			before := rejections(t, c.reason)
			next := reply(c.body)
			if len(c.body) > 100 {
				next.chunks = []string{c.body[:100], c.body[100:]}
			}
			wantRefused(t, action+", "+name, sanitizeServe(t, s, "GET", next), c.reason, before)
			if e := logs.FilterMessage(refusedLog).All(); len(e) != 1 || e[0].ContextMap()["reason"] != c.reason {
				t.Errorf("%s, %s: logged %v", action, name, e)
			}
			noNumber(t, logs)
		}
	}
}

// TestSanitizeMaskAbortsAfterBytesLeft: a reply found bad after part of it
// has been sent is aborted (the panic net/http takes for an abort, in the
// handler's goroutine), never completed; the masks sent stay.
func TestSanitizeMaskAbortsAfterBytesLeft(t *testing.T) {
	body := big(2000, `<institution><name>AT&T Credit Union</name></institution>`+strings.Repeat("<x>more</x>", 20000))
	for _, gz := range []bool{false, true} {
		s, logs := newSanitize(t, &Sanitize{})
		before := rejections(t, "malformed")
		next := chunked(body)
		if gz {
			next = chunked(gzipped(t, body)).with("Content-Encoding", "gzip")
		}
		out := sanitizeServe(t, s, "GET", next)
		if out.panic != http.ErrAbortHandler {
			t.Fatalf("gzip %v: panic %v, err %v", gz, out.panic, out.err)
		}
		got := out.w.Body.String()
		if gz {
			var err error
			if got, err = gunzip(t, out.w.Body.Bytes()); err == nil {
				t.Errorf("a complete gzip stream was sent")
			}
		}
		if out.w.Code != 200 || len(got) < 32<<10 || !strings.Contains(got, "<id>XXXXXXXXXXXX1111</id>") || strings.Contains(got, card) || strings.Contains(got, "</mdx>") {
			t.Errorf("gzip %v: %d, %d bytes sent", gz, out.w.Code, len(got))
		}
		if rejections(t, "malformed") != before+1 || logs.FilterMessage(abortedLog).Len() != 1 {
			t.Errorf("gzip %v: the abort was not counted or logged", gz)
		}
		if !gz && next.writeErr == nil { // (gzip: the whole small stream may be read ahead)
			t.Errorf("gzip %v: the upstream's writes went on", gz)
		}
	}
}

// TestSanitizeMaskUpstreamFails: an upstream that fails mid-body is not a
// refusal: before any byte left the handler's error stands; after, the
// reply is aborted.
func TestSanitizeMaskUpstreamFails(t *testing.T) {
	s, _ := newSanitize(t, &Sanitize{})
	cause := errors.New("upstream went away")
	before := rejections(t, "read")

	next := reply(accounts[:50])
	next.err = cause
	if out := sanitizeServe(t, s, "GET", next); out.err != cause || out.panic != nil || out.w.Body.Len() != 0 {
		t.Errorf("before any byte: %v %v %q", out.err, out.panic, out.w.Body)
	}
	next = reply(accounts[:50])
	next.panic = http.ErrAbortHandler
	if out := sanitizeServe(t, s, "GET", next); out.panic != http.ErrAbortHandler || out.w.Body.Len() != 0 {
		t.Errorf("aborted before any byte: %v %q", out.panic, out.w.Body)
	}
	next = reply(accounts[:50])
	next.panic = "a bug"
	if out := sanitizeServe(t, s, "GET", next); out.panic != "a bug" {
		t.Errorf("a panic of the handler: %v", out.panic)
	}

	body := big(2000, "")
	next = chunked(body[:len(body)/2])
	next.err = cause
	if out := sanitizeServe(t, s, "GET", next); out.panic != http.ErrAbortHandler || out.w.Body.Len() == 0 || strings.Contains(out.w.Body.String(), card) {
		t.Errorf("after bytes left: %v %v, %d bytes", out.err, out.panic, out.w.Body.Len())
	}
	if rejections(t, "read") != before {
		t.Error("an upstream failure was counted as a refusal")
	}
}

// failingWriter is a client that went away.
type failingWriter struct{ *httptest.ResponseRecorder }

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestSanitizeMaskClientGone(t *testing.T) {
	s, _ := newSanitize(t, &Sanitize{})
	before := rejections(t, "write")
	rec := httptest.NewRecorder()
	next := chunked(big(5000, ""))
	out := serveWriter(t, s, rec, failingWriter{rec}, "GET", next)
	if out.panic != http.ErrAbortHandler || next.writeErr == nil {
		t.Errorf("%v %v", out.panic, next.writeErr)
	}
	if rejections(t, "write") != before {
		t.Error("a client failure was counted as a refusal")
	}
}

// TestSanitizeMaskPlainHandler: a handler that returns its write error
// instead of aborting gets the same answers.
func TestSanitizeMaskPlainHandler(t *testing.T) {
	s, _ := newSanitize(t, &Sanitize{})
	before := rejections(t, "doctype")
	next := reply(doctype)
	next.chunks = []string{doctype[:30], doctype[30:]}
	next.returnOnWriteError = true
	wantRefused(t, "doctype", sanitizeServe(t, s, "GET", next), "doctype", before)
}

func TestSanitizeBlock(t *testing.T) {
	s, logs := newSanitize(t, &Sanitize{Action: "block"})
	before, cards := rejections(t, "account_number_in_response"), findings(t, "card_number", "block")
	out := sanitizeServe(t, s, "GET", reply(accounts))
	wantRefused(t, "block", out, "account_number_in_response", before)
	if !strings.Contains(out.w.Body.String(), "the response carried a complete account or card number") || findings(t, "card_number", "block") != cards+1 {
		t.Errorf("block: %q", out.w.Body)
	}
	if out := sanitizeServe(t, s, "GET", reply(clean).with("Content-Length", "95")); out.w.Code != 200 || out.w.Body.String() != clean || out.w.Header().Get("Content-Length") != "95" {
		t.Errorf("block, clean reply: %d %s", out.w.Code, out.w.Body)
	}
	z := gzipped(t, accounts)
	before = rejections(t, "account_number_in_response")
	wantRefused(t, "block, gzip", sanitizeServe(t, s, "GET", reply(z).with("Content-Encoding", "gzip")), "account_number_in_response", before)
	if out := sanitizeServe(t, s, "GET", reply(gzipped(t, clean)).with("Content-Encoding", "gzip")); out.w.Code != 200 || out.w.Body.String() != gzipped(t, clean) {
		t.Errorf("block, clean gzip reply: %d", out.w.Code)
	}
	before = rejections(t, "content_encoding")
	wantRefused(t, "block, not gzip", sanitizeServe(t, s, "GET", reply(clean).with("Content-Encoding", "gzip")), "content_encoding", before)
	noNumber(t, logs)
}

func TestSanitizeBlockTooLarge(t *testing.T) {
	s, _ := newSanitize(t, &Sanitize{Action: "block", MaxBody: 64})
	before := rejections(t, "response_too_large_to_inspect")
	next := reply(clean)
	next.chunks = []string{clean[:40], clean[40:], "more"}
	out := sanitizeServe(t, s, "GET", next)
	wantRefused(t, "too large", out, "response_too_large_to_inspect", before)
	if !strings.Contains(out.w.Body.String(), "too large to inspect") || next.written != 1 {
		t.Errorf("%q, %d chunks read", out.w.Body, next.written)
	}
	// a gzip reply under max_body that decodes past max_decoded
	s, _ = newSanitize(t, &Sanitize{Action: "block", MaxBody: 1 << 20, MaxDecoded: 1000})
	before = rejections(t, "decoded_too_large")
	wantRefused(t, "gzip bomb", sanitizeServe(t, s, "GET", reply(gzipped(t, big(100, ""))).with("Content-Encoding", "gzip")), "decoded_too_large", before)
	s, _ = newSanitize(t, &Sanitize{MaxDecoded: 1000})
	before = rejections(t, "decoded_too_large")
	wantRefused(t, "gzip bomb, mask", sanitizeServe(t, s, "GET", reply(gzipped(t, big(100, ""))).with("Content-Encoding", "gzip")), "decoded_too_large", before)
}

func TestSanitizeBlockHandlerFails(t *testing.T) {
	s, _ := newSanitize(t, &Sanitize{Action: "block"})
	cause := errors.New("upstream went away")
	next := reply(accounts[:50])
	next.err = cause
	if out := sanitizeServe(t, s, "GET", next); out.err != cause || out.w.Body.Len() != 0 {
		t.Errorf("%v %q", out.err, out.w.Body)
	}
	next = reply(accounts[:50])
	next.panic = http.ErrAbortHandler
	if out := sanitizeServe(t, s, "GET", next); out.panic != http.ErrAbortHandler || out.w.Body.Len() != 0 {
		t.Errorf("%v %q", out.panic, out.w.Body)
	}
}

func TestSanitizeReport(t *testing.T) {
	s, logs := newSanitize(t, &Sanitize{Action: "report", Fields: []string{"nickname"}})
	accts := findings(t, "account_number", "report")
	body := strings.Replace(accounts, "</account>", "<nickname>"+account+"</nickname></account>", 1)
	out := sanitizeServe(t, s, "GET", reply(body))
	if out.w.Code != 200 || out.w.Body.String() != body {
		t.Errorf("report: %d %s", out.w.Code, out.w.Body)
	}
	// fields add to the defaults: all three are reported
	if n := logs.FilterMessage(findingLog).Len(); n != 3 {
		t.Errorf("report: %d findings logged, want 3", n)
	}
	if got := findings(t, "account_number", "report"); got != accts+2 {
		t.Errorf("findings counted %v, want %v", got, accts+2)
	}
	// the guard stops early; the reply goes on whole
	before := letThrough(t, "doctype", "report")
	next := reply(doctype + strings.Repeat(" ", 100<<10))
	next.chunks = []string{next.chunks[0][:200], next.chunks[0][200:]}
	if out := sanitizeServe(t, s, "GET", next); out.w.Code != 200 || out.w.Body.String() != next.chunks[0]+next.chunks[1] {
		t.Errorf("report, doctype: %d, %d bytes", out.w.Code, out.w.Body.Len())
	}
	if letThrough(t, "doctype", "report") != before+1 {
		t.Error("report, doctype: not counted")
	}
	// a handler that fails is no finding of ours
	next = reply(accounts[:50])
	next.panic = http.ErrAbortHandler
	before = letThrough(t, "read", "report")
	if out := sanitizeServe(t, s, "GET", next); out.panic != http.ErrAbortHandler {
		t.Errorf("report, aborted: %v", out.panic)
	}
	if letThrough(t, "read", "report") != before {
		t.Error("report: a read error was let through")
	}
	noNumber(t, logs)
}

// TestSanitizeAllowMalformed: with allow_malformed a malformed reply is
// masked and passes, with a log line and a count; what is not malformed
// is refused all the same.
func TestSanitizeAllowMalformed(t *testing.T) {
	s, logs := newSanitize(t, &Sanitize{AllowMalformed: true})
	before := letThrough(t, "malformed", "mask")
	in := strings.Replace(accounts, "Checking", "AT&T", 1)
	out := sanitizeServe(t, s, "GET", reply(in))
	if out.w.Code != 200 || out.w.Body.String() != strings.Replace(masked, "Checking", "AT&T", 1) {
		t.Errorf("%d %q", out.w.Code, out.w.Body)
	}
	if letThrough(t, "malformed", "mask") != before+1 {
		t.Error("not counted")
	}
	if e := logs.FilterMessage(passedLog).All(); len(e) != 1 || e[0].ContextMap()["reason"] != "malformed" || e[0].ContextMap()["allow_malformed"] != true {
		t.Errorf("logged %v", e)
	}
	// an empty reply passes empty
	if out := sanitizeServe(t, s, "GET", reply("")); out.w.Code != 200 || out.w.Body.Len() != 0 || out.panic != nil {
		t.Errorf("empty: %d %v", out.w.Code, out.panic)
	}
	before = rejections(t, "doctype")
	wantRefused(t, "doctype", sanitizeServe(t, s, "GET", reply(doctype)), "doctype", before)

	block, _ := newSanitize(t, &Sanitize{Action: "block", AllowMalformed: true})
	clean := strings.Replace(clean, "Checking", "AT&T", 1)
	if out := sanitizeServe(t, block, "GET", reply(clean)); out.w.Code != 200 || out.w.Body.String() != clean {
		t.Errorf("block: %d %q", out.w.Code, out.w.Body)
	}
}

// TestSanitizePassesOn: a reply without a body, and one of a type
// allow_types passes unread, pass unchanged, their bodies uninspected.
func TestSanitizePassesOn(t *testing.T) {
	s, logs := newSanitize(t, &Sanitize{Action: "block", AllowTypes: []AllowedTypes{{MediaTypes: []string{"image/png"}, Scan: "none"}}})
	for name, c := range map[string]struct {
		method string
		next   *upstreamReply
	}{
		"scan none":      {"GET", reply("\x89PNG 4111 1111 1111 1111").with("Content-Type", "").with("Content-Type", "image/png")},
		"empty, no type": {"GET", &upstreamReply{status: 200, header: http.Header{"Content-Length": {"0"}}}},
		"no content":     {"DELETE", &upstreamReply{status: 204, header: http.Header{"Content-Type": {refusal.MDXContentType}}}},
		"not modified":   {"GET", &upstreamReply{status: 304, header: http.Header{"Content-Type": {"text/plain"}}}},
	} {
		out := sanitizeServe(t, s, c.method, c.next)
		if out.w.Code != max(c.next.status, 200) || out.w.Body.String() != strings.Join(c.next.chunks, "") {
			t.Errorf("%s: %d %s", name, out.w.Code, out.w.Body)
		}
	}
	head := sanitizeServe(t, s, "HEAD", &upstreamReply{header: http.Header{"Content-Type": {refusal.MDXContentType}, "Content-Length": {"250"}}})
	if head.w.Code != 200 || head.w.Header().Get("Content-Length") != "250" {
		t.Errorf("HEAD: %d %v", head.w.Code, head.w.Header())
	}
	if logs.Len() != 0 {
		t.Errorf("passed-on replies were inspected: %d log lines", logs.Len())
	}
}

// earlyHints sends 103 before its reply.
type earlyHints struct{ *upstreamReply }

func (e earlyHints) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Link", "</style.css>; rel=preload")
	w.WriteHeader(http.StatusEarlyHints)
	e.upstreamReply.ServeHTTP(w, r)
}

func TestSanitizeInformational(t *testing.T) {
	s, _ := newSanitize(t, &Sanitize{})
	out := sanitizeServe(t, s, "GET", earlyHints{reply(accounts)})
	if out.w.Code != 200 && out.w.Code != http.StatusEarlyHints || out.w.Body.String() != masked {
		t.Errorf("%d %q", out.w.Code, out.w.Body)
	}
}

// TestSanitizeManyFindings: findings past the listed hundred are counted
// and summed up in one line.
func TestSanitizeManyFindings(t *testing.T) {
	s, logs := newSanitize(t, &Sanitize{Action: "report"})
	before := findings(t, "card_number", "report")
	var b strings.Builder
	b.WriteString("<mdx><accounts>")
	for range 150 {
		b.WriteString("<account><id>" + card + "</id></account>")
	}
	b.WriteString("</accounts></mdx>")
	sanitizeServe(t, s, "GET", reply(b.String()))
	if findings(t, "card_number", "report") != before+150 || logs.FilterMessage(findingLog).Len() != 100 {
		t.Errorf("counted %v, listed %d", findings(t, "card_number", "report")-before, logs.FilterMessage(findingLog).Len())
	}
	if e := logs.FilterMessageSnippet("not listed").All(); len(e) != 1 || e[0].ContextMap()["more"] != int64(50) {
		t.Errorf("%v", e)
	}
}

func TestSanitizeProvision(t *testing.T) {
	for name, s := range map[string]*Sanitize{
		"bad action":           {Action: "drop"},
		"negative max_body":    {MaxBody: -1},
		"negative max_decoded": {MaxDecoded: -1},
		"negative max_field":   {MaxField: -1},
		"max_field too large":  {MaxField: 1 << 30},
		"bad field":            {Fields: []string{"a b"}},
	} {
		if err := handlertest.TryProvision(t, s); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
	s, _ := newSanitize(t, &Sanitize{})
	if s.Action != "mask" || len(s.Fields) != 0 || s.MaxBody != DefaultSanitizeMaxBody || s.MaxDecoded != 8*DefaultSanitizeMaxBody || s.guard == nil {
		t.Errorf("defaults %+v", s)
	}
	s, _ = newSanitize(t, &Sanitize{MaxBody: 1 << 20})
	if s.MaxDecoded != 8<<20 {
		t.Errorf("max_decoded follows max_body: %d", s.MaxDecoded)
	}
}

// TestSanitizeProvisionWarns: the start-up log says what will pass, and
// that id and name listed in fields count anywhere.
func TestSanitizeProvisionWarns(t *testing.T) {
	s := &Sanitize{AllowMalformed: true, Fields: []string{"nickname", "ID"}}
	var logs *observer.ObservedLogs
	s.logger, logs = handlertest.Logs()
	if err := s.setup(); err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessageSnippet("allow_malformed").Len() != 1 || logs.FilterMessageSnippet("transaction ids too").Len() != 1 || logs.Len() != 2 {
		t.Errorf("%v", logs.All())
	}
}

// flushing writes its reply in two parts and flushes between them.
type flushing struct{ ctype string }

func (f flushing) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", f.ctype)
	_, _ = io.WriteString(w, accounts[:40])
	_ = http.NewResponseController(w).Flush()
	_, _ = io.WriteString(w, accounts[40:])
}

// TestSanitizeFlush: a flush reaches the client when the reply passes
// through or is only reported on, and never while the masking goroutine
// writes to the client or the reply is held.
func TestSanitizeFlush(t *testing.T) {
	for _, c := range []struct {
		action, ctype string
		flushed       bool
		body          string
	}{
		{"mask", "image/png", true, accounts},
		{"report", refusal.MDXContentType, true, accounts},
		{"mask", refusal.MDXContentType, false, masked},
		{"block", refusal.MDXContentType, false, ""},
	} {
		s, _ := newSanitize(t, &Sanitize{Action: c.action, AllowTypes: []AllowedTypes{{MediaTypes: []string{"image/*"}, Scan: "none"}}})
		out := sanitizeServe(t, s, "GET", flushing{c.ctype})
		if out.err != nil || out.w.Flushed != c.flushed {
			t.Errorf("%s %s: flushed %v, err %v", c.action, c.ctype, out.w.Flushed, out.err)
		}
		if c.body != "" && out.w.Body.String() != c.body {
			t.Errorf("%s %s: body %q", c.action, c.ctype, out.w.Body)
		}
	}
}
