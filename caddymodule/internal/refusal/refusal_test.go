package refusal

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/resend"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

func TestRenderErrorEscapes(t *testing.T) {
	b, _ := Render(FormatMDX, Refusal{Code: "4010", Message: `a<b>&"c"`})
	if string(b) != `<mdx version="5.0"><error><code>4010</code><message>a&lt;b&gt;&amp;&#34;c&#34;</message></error></mdx>` {
		t.Errorf("%s", b)
	}
	b, _ = Render(FormatJSON, Refusal{Message: `quote " and \`})
	var v map[string]map[string]string
	if err := json.Unmarshal(b, &v); err != nil || v["error"]["message"] != `quote " and \` {
		t.Errorf("%s: %v", b, err)
	}
}

func TestRenderFormats(t *testing.T) {
	rf := Refusal{Status: http.StatusForbidden, Reason: "r", Code: "<1>", Message: `no "way" & <never>`}
	for _, c := range []struct {
		format      Format
		body, ctype string
	}{
		{FormatMDX, `<mdx version="5.0"><error><code>&lt;1&gt;</code><message>no &#34;way&#34; &amp; &lt;never&gt;</message></error></mdx>`, MDXContentType},
		{FormatJSON, `{"error":{"message":"no \"way\" \u0026 \u003cnever\u003e"}}`, "application/json; charset=utf-8"},
		{FormatFDX, `{"code":"403","message":"Forbidden","debugMessage":"no \"way\" \u0026 \u003cnever\u003e"}`, "application/json; charset=UTF-8"},
		{FormatText, "no \"way\" & <never>\n", "text/plain; charset=utf-8"},
	} {
		body, ctype := Render(c.format, rf)
		if string(body) != c.body || ctype != c.ctype {
			t.Errorf("%s: %q %q, want %q %q", c.format, body, ctype, c.body, c.ctype)
		}
	}
	// The JSON bodies decode to the message as given.
	body, _ := Render(FormatFDX, rf)
	var fdx struct{ Code, Message, DebugMessage string }
	if err := json.Unmarshal(body, &fdx); err != nil || fdx.DebugMessage != rf.Message || fdx.Code != "403" {
		t.Errorf("fdx body %s: %+v %v", body, fdx, err)
	}
}

func TestParseFormat(t *testing.T) {
	if f, err := ParseFormat("", FormatFDX); err != nil || f != FormatFDX {
		t.Errorf("empty: %q %v, want the default", f, err)
	}
	for _, f := range formats {
		if got, err := ParseFormat(string(f), FormatMDX); err != nil || got != f {
			t.Errorf("%s: %q %v", f, got, err)
		}
	}
	_, err := ParseFormat("html", FormatMDX)
	if err == nil || !strings.Contains(err.Error(), `unknown error_format "html"`) || !strings.Contains(err.Error(), "mdx, json, fdx, text, handle_errors") {
		t.Errorf("unknown format: %v", err)
	}
}

func TestRefuseWritesBodyAndKeepsHeaders(t *testing.T) {
	rf := Refusal{Status: http.StatusUnauthorized, Reason: "test_refuse_body", Message: "Unauthorized"}
	before := rejections(t, "test_dir", rf.Reason)
	w := httptest.NewRecorder()
	w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
	w.Header().Set("Content-Type", "text/html")
	if err := Refuse(w, withVars(httptest.NewRequest("GET", "/", nil)), "test_dir", FormatJSON, rf); err != nil {
		t.Fatal(err)
	}
	if w.Code != 401 || w.Body.String() != `{"error":{"message":"Unauthorized"}}` {
		t.Errorf("%d %q", w.Code, w.Body)
	}
	for k, want := range map[string]string{
		"Content-Type":           "application/json; charset=utf-8",
		"Content-Length":         "36",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"Www-Authenticate":       `Basic realm="x"`,
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if got := rejections(t, "test_dir", rf.Reason); got != before+1 {
		t.Errorf("rejections counted %v, want %v", got, before+1)
	}
}

func TestRefuseHandleErrors(t *testing.T) {
	rf := Refusal{Status: http.StatusTooManyRequests, Reason: "test_refuse_he", Message: "Too many requests"}
	before := rejections(t, "test_dir", rf.Reason)
	w := httptest.NewRecorder()
	w.Header().Set("Retry-After", "3")
	r := withVars(httptest.NewRequest("GET", "/", nil))
	err := Refuse(w, r, "test_dir", FormatHandleErrors, rf)
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 429 {
		t.Fatalf("error %#v, want a caddyhttp.HandlerError with 429", err)
	}
	var got Refusal
	if !errors.As(err, &got) || got != rf || got.Error() != "Too many requests" {
		t.Errorf("the handler error does not carry the refusal: %#v", he.Err)
	}
	if w.Body.Len() != 0 || w.Header().Get("Content-Type") != "" || w.Header().Get("Retry-After") != "3" {
		t.Errorf("handle_errors wrote a response: %q %v", w.Body, w.Header())
	}
	if n := rejections(t, "test_dir", rf.Reason); n != before+1 {
		t.Errorf("rejections %v, want %v", n, before+1)
	}
}

func rejections(t *testing.T, directive, reason string) float64 {
	t.Helper()
	return handlertest.MetricValue(t, metrics.Rejections, map[string]string{"directive": directive, "reason": reason})
}

// withVars gives r the request variables Caddy's server gives each request.
func withVars(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
}

// TestRefuseRecordsTheRefusal: the refusal's directive and reason are in
// the request's variables, where log_append takes them for the access
// log; a request sent again (Trip) keeps those of its final trip only.
func TestRefuseRecordsTheRefusal(t *testing.T) {
	rf := Refusal{Status: http.StatusTooManyRequests, Reason: "test_recorded", Message: "Too many requests"}
	r := withVars(httptest.NewRequest("GET", "/", nil))
	if err := Refuse(httptest.NewRecorder(), r, "test_dir", FormatText, rf); err != nil {
		t.Fatal(err)
	}
	if d, why := caddyhttp.GetVar(r.Context(), DirectiveVar), caddyhttp.GetVar(r.Context(), ReasonVar); d != "test_dir" || why != "test_recorded" {
		t.Errorf("variables %v %v, want test_dir test_recorded", d, why)
	}

	// refused, then sent again and answered: no refusal recorded
	r = withVars(httptest.NewRequest("GET", "/", nil))
	first, _ := resend.Trip(r)
	if err := Refuse(httptest.NewRecorder(), first, "test_dir", FormatText, rf); err != nil {
		t.Fatal(err)
	}
	_, back := resend.Trip(r)
	back()
	if v := caddyhttp.GetVar(r.Context(), ReasonVar); v != nil {
		t.Errorf("a refusal of an earlier trip is recorded: %v", v)
	}
	// refused on the final trip: recorded
	last, back := resend.Trip(r)
	if err := Refuse(httptest.NewRecorder(), last, "test_dir", FormatText, rf); err != nil {
		t.Fatal(err)
	}
	back()
	if v := caddyhttp.GetVar(r.Context(), ReasonVar); v != "test_recorded" {
		t.Errorf("the final trip's refusal is not recorded: %v", v)
	}

	// a request without variables (outside Caddy's server) is refused all the same
	if err := Refuse(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), "test_dir", FormatText, rf); err != nil {
		t.Fatal(err)
	}
}

func TestCloseUnread(t *testing.T) {
	for _, c := range []struct {
		length int64
		major  int
		want   string
	}{{1 << 20, 1, "close"}, {-1, 1, "close"}, {0, 1, ""}, {1 << 20, 2, ""}} {
		r := httptest.NewRequest("POST", "/", nil)
		r.ContentLength, r.ProtoMajor = c.length, c.major
		w := httptest.NewRecorder()
		CloseUnread(w, r)
		if got := w.Header().Get("Connection"); got != c.want {
			t.Errorf("length %d, HTTP/%d: Connection %q, want %q", c.length, c.major, got, c.want)
		}
	}
}
