package mdx

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest/observer"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/caddymodule/internal/handlertest"
)

const (
	card     = "4111111111111111"
	account  = "123456789"
	accounts = `<?xml version="1.0" encoding="UTF-8"?><mdx version="5.0"><accounts><account><id>` + card + `</id><name>Checking ` + account + `</name></account></accounts></mdx>`
	masked   = `<?xml version="1.0" encoding="UTF-8"?><mdx version="5.0"><accounts><account><id>XXXXXXXXXXXX1111</id><name>Checking XXXXX6789</name></account></accounts></mdx>`
	clean    = `<mdx version="5.0"><accounts><account><id>acct-7</id><name>Checking</name></account></accounts></mdx>`
)

func newSanitize(t *testing.T, s *Sanitize) (*Sanitize, *observer.ObservedLogs) {
	t.Helper()
	handlertest.Provision(t, s)
	var logs *observer.ObservedLogs
	s.logger, logs = handlertest.Logs()
	return s, logs
}

func sanitizeServe(t *testing.T, s *Sanitize, method string, next *handlertest.Next) *httptest.ResponseRecorder {
	t.Helper()
	w, err := handlertest.Serve(t, s, handlertest.Request(httptest.NewRequest(method, "/inst1/accounts", nil), ""), next)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mdxReply(body string) *handlertest.Next {
	return &handlertest.Next{Header: http.Header{"Content-Type": {gate.MDXContentType}}, Body: body}
}

func TestSanitizeMask(t *testing.T) {
	s, logs := newSanitize(t, &Sanitize{})
	w := sanitizeServe(t, s, "GET", mdxReply(accounts))
	if w.Code != 200 || w.Body.String() != masked {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	found := logs.FilterMessage("complete account or card number in an MDX response").All()
	if len(found) != 2 {
		t.Fatalf("%d findings logged", len(found))
	}
	if f := found[0].ContextMap(); f["account"] != int64(1) || f["field"] != "id" || f["rule"] != "card_number" || f["action"] != "mask" {
		t.Errorf("finding fields %v", f)
	}
	for _, e := range logs.All() {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && (strings.Contains(s, card) || strings.Contains(s, account)) {
				t.Errorf("the log holds the number: %v", e.ContextMap())
			}
		}
	}
}

func TestSanitizeBlockAndReport(t *testing.T) {
	block, _ := newSanitize(t, &Sanitize{Action: "block"})
	w := sanitizeServe(t, block, "GET", mdxReply(accounts))
	if w.Code != 502 || strings.Contains(w.Body.String(), card) || !strings.Contains(w.Body.String(), "the response carried a complete account or card number") {
		t.Errorf("block: %d %s", w.Code, w.Body)
	}
	if w := sanitizeServe(t, block, "GET", mdxReply(clean)); w.Code != 200 || w.Body.String() != clean {
		t.Errorf("block, clean reply: %d %s", w.Code, w.Body)
	}
	small, _ := newSanitize(t, &Sanitize{Action: "block", MaxBody: 64})
	if w := sanitizeServe(t, small, "GET", mdxReply(clean)); w.Code != 502 || !strings.Contains(w.Body.String(), "too large to inspect") {
		t.Errorf("block, reply over max_body: %d %s", w.Code, w.Body)
	}

	report, logs := newSanitize(t, &Sanitize{Action: "report", Fields: []string{"name"}})
	before := handlertest.MetricValue(t, gate.Metrics.SanitizeFindings, map[string]string{"rule": "account_number", "action": "report"})
	if w := sanitizeServe(t, report, "GET", mdxReply(accounts)); w.Code != 200 || w.Body.String() != accounts {
		t.Errorf("report: %d %s", w.Code, w.Body)
	}
	// fields add to the defaults (id, name): both findings are reported
	if n := logs.FilterMessage("complete account or card number in an MDX response").Len(); n != 2 {
		t.Errorf("report: %d findings logged, want 2", n)
	}
	if got := handlertest.MetricValue(t, gate.Metrics.SanitizeFindings, map[string]string{"rule": "account_number", "action": "report"}); got != before+1 {
		t.Errorf("findings counted %v, want %v", got, before+1)
	}
}

// TestSanitizePassesOn: what is not a successful XML reply to a GET passes
// unchanged.
func TestSanitizePassesOn(t *testing.T) {
	s, logs := newSanitize(t, &Sanitize{Action: "block"})
	for name, c := range map[string]struct {
		method string
		next   *handlertest.Next
	}{
		"json":     {"GET", &handlertest.Next{Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"id":"` + card + `"}`}},
		"no type":  {"GET", &handlertest.Next{Body: accounts}},
		"error":    {"GET", &handlertest.Next{Status: 500, Header: http.Header{"Content-Type": {gate.MDXContentType}}, Body: accounts}},
		"brotli":   {"GET", &handlertest.Next{Header: http.Header{"Content-Type": {"text/xml"}, "Content-Encoding": {"br"}}, Body: accounts}},
		"bad type": {"GET", &handlertest.Next{Header: http.Header{"Content-Type": {"application/xml; ="}}, Body: accounts}},
	} {
		w := sanitizeServe(t, s, c.method, c.next)
		if w.Code != max(c.next.Status, 200) || w.Body.String() != c.next.Body {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	head := sanitizeServe(t, s, "HEAD", &handlertest.Next{Header: http.Header{"Content-Type": {gate.MDXContentType}, "Content-Length": {"250"}}})
	if head.Code != 200 || head.Header().Get("Content-Length") != "250" {
		t.Errorf("HEAD: %d %v", head.Code, head.Header())
	}
	if logs.Len() != 0 {
		t.Errorf("passed-on replies were inspected: %d log lines", logs.Len())
	}
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

func TestSanitizeGzip(t *testing.T) {
	s, _ := newSanitize(t, &Sanitize{})
	z := gzipped(t, accounts)
	w := sanitizeServe(t, s, "GET", &handlertest.Next{Header: http.Header{"Content-Type": {gate.MDXContentType}, "Content-Encoding": {"gzip"}, "Content-Length": {"999"}}, Body: z})
	if w.Code != 200 || w.Header().Get("Content-Length") != "" || w.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(zr); string(got) != masked {
		t.Errorf("gunzipped %s", got)
	}

	block, _ := newSanitize(t, &Sanitize{Action: "block"})
	if w := sanitizeServe(t, block, "GET", &handlertest.Next{Header: http.Header{"Content-Type": {gate.MDXContentType}, "Content-Encoding": {"gzip"}}, Body: z}); w.Code != 502 {
		t.Errorf("block, gzip: %d", w.Code)
	}

	// says gzip, is not: passed on unchanged, with a warning
	for _, action := range []string{"mask", "block"} {
		s, logs := newSanitize(t, &Sanitize{Action: action})
		w := sanitizeServe(t, s, "GET", &handlertest.Next{Header: http.Header{"Content-Type": {gate.MDXContentType}, "Content-Encoding": {"gzip"}}, Body: clean})
		if w.Code != 200 || w.Body.String() != clean {
			t.Errorf("%s, not gzip: %d %q", action, w.Code, w.Body)
		}
		if logs.FilterMessageSnippet("Content-Encoding gzip but not gzip data").Len() != 1 {
			t.Errorf("%s, not gzip: no warning", action)
		}
	}
}

func TestSanitizeProvisionErrors(t *testing.T) {
	for name, s := range map[string]*Sanitize{
		"bad action":        {Action: "drop"},
		"negative max_body": {MaxBody: -1},
	} {
		if err := handlertest.TryProvision(t, s); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
	s, _ := newSanitize(t, &Sanitize{})
	if s.Action != "mask" || strings.Join(s.Fields, ",") != "id,name" || s.MaxBody != DefaultSanitizeMaxBody {
		t.Errorf("defaults %+v", s)
	}
}

// flushing writes its reply in two parts and flushes between them.
type flushing struct{ ctype string }

func (f flushing) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", f.ctype)
	_, _ = io.WriteString(w, accounts[:40])
	if err := http.NewResponseController(w).Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, accounts[40:])
	return err
}

// TestSanitizeFlush: a flush reaches the client when the reply passes
// through or is only reported on, and never while the masking goroutine
// writes to the client.
func TestSanitizeFlush(t *testing.T) {
	for _, c := range []struct {
		action, ctype string
		flushed       bool
		body          string
	}{
		{"mask", "application/json", true, accounts},
		{"report", gate.MDXContentType, true, accounts},
		{"mask", gate.MDXContentType, false, masked},
		{"block", gate.MDXContentType, false, ""},
	} {
		s, _ := newSanitize(t, &Sanitize{Action: c.action})
		w, err := handlertest.Serve(t, s, handlertest.Request(httptest.NewRequest("GET", "/inst1/accounts", nil), ""), flushing{c.ctype})
		if err != nil || w.Flushed != c.flushed {
			t.Errorf("%s %s: flushed %v, err %v", c.action, c.ctype, w.Flushed, err)
		}
		if c.body != "" && w.Body.String() != c.body {
			t.Errorf("%s %s: body %q", c.action, c.ctype, w.Body)
		}
	}
}
