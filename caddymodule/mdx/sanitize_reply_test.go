package mdx

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// Every part of a reply is read: bodies of every status and type, header
// fields, 1xx header fields and trailers.

// refusedFor is the MDX error body of a refusal for reason.
func refusedFor(reason string) string {
	return mdxError("Bad gateway: the response could not be inspected (" + reason + ")")
}

func mdxError(msg string) string {
	return `<mdx version="5.0"><error><code></code><message>` + msg + `</message></error></mdx>`
}

var blocked = mdxError("Bad gateway: the response carried a complete account or card number")

// TestSanitizeMediaTypes: a body that is not XML is refused in mask and
// block modes unless allow_types names its type; scan text reads it as
// text, masked or refused as XML is; report mode reads it as text and
// lets it through, counted.
func TestSanitizeMediaTypes(t *testing.T) {
	text := "card " + card + " on file"
	for _, ctype := range []string{"text/plain; charset=utf-8", "application/octet-stream", "text/html; charset=utf-8",
		"application/vnd.moneydesktop.mdx.v5+json", "multipart/byteranges; boundary=x"} {
		for _, action := range []string{"mask", "block"} {
			s, logs := newSanitize(t, &Sanitize{Action: action})
			before := rejections(t, "media_type")
			out := sanitizeServe(t, s, "GET", reply(text).with("Content-Type", "").with("Content-Type", ctype))
			if out.w.Code != 502 || out.w.Body.String() != refusedFor("media_type") || rejections(t, "media_type") != before+1 {
				t.Errorf("%s %s: %d %q", action, ctype, out.w.Code, out.w.Body)
			}
			noNumber(t, logs)
			// the control: the same number in an MDX reply is caught
			out = sanitizeServe(t, s, "GET", reply(accounts))
			if strings.Contains(out.w.Body.String(), card) {
				t.Errorf("%s: the control reply passed whole", action)
			}
			// without a body there is nothing to refuse
			empty := &upstreamReply{header: http.Header{"Content-Type": {ctype}}}
			if out := sanitizeServe(t, s, "GET", empty); out.w.Code != 200 || out.err != nil {
				t.Errorf("%s %s, no body: %d %v", action, ctype, out.w.Code, out.err)
			}
		}
	}
	allow := []AllowedTypes{{MediaTypes: []string{"text/plain", "application/*"}, Scan: "text"}}
	mask, _ := newSanitize(t, &Sanitize{AllowTypes: allow})
	for _, ctype := range []string{"text/plain; charset=utf-8", "application/vnd.moneydesktop.mdx.v5+json"} {
		out := sanitizeServe(t, mask, "GET", reply(text).with("Content-Type", "").with("Content-Type", ctype))
		if out.w.Code != 200 || out.w.Body.String() != "card XXXXXXXXXXXX1111 on file" {
			t.Errorf("mask, scan text, %s: %d %q", ctype, out.w.Code, out.w.Body)
		}
	}
	if out := sanitizeServe(t, mask, "GET", reply(text).with("Content-Type", "").with("Content-Type", "text/html")); out.w.Code != 502 {
		t.Errorf("a type not named: %d", out.w.Code)
	}
	if out := sanitizeServe(t, mask, "GET", reply(text).with("Content-Type", "").with("Content-Type", "text/plain; charset=iso-8859-1")); out.w.Body.String() != refusedFor("encoding") {
		t.Errorf("another charset: %d %q", out.w.Code, out.w.Body)
	}
	block, _ := newSanitize(t, &Sanitize{Action: "block", AllowTypes: allow})
	if out := sanitizeServe(t, block, "GET", reply(text).with("Content-Type", "").with("Content-Type", "text/plain")); out.w.Code != 502 || out.w.Body.String() != blocked {
		t.Errorf("block, scan text: %d %q", out.w.Code, out.w.Body)
	}
	if out := sanitizeServe(t, block, "GET", reply("no number").with("Content-Type", "").with("Content-Type", "text/plain")); out.w.Code != 200 || out.w.Body.String() != "no number" {
		t.Errorf("block, scan text, clean: %d %q", out.w.Code, out.w.Body)
	}
	report, _ := newSanitize(t, &Sanitize{Action: "report"})
	before, found := letThrough(t, "media_type", "report"), findings(t, "card_number", "report")
	if out := sanitizeServe(t, report, "GET", reply(text).with("Content-Type", "").with("Content-Type", "text/plain")); out.w.Code != 200 || out.w.Body.String() != text {
		t.Errorf("report: %d %q", out.w.Code, out.w.Body)
	}
	if letThrough(t, "media_type", "report") != before+1 || findings(t, "card_number", "report") != found+1 {
		t.Error("report mode did not count the reply, or did not read it as text")
	}
}

// TestSanitizeStatuses: bodies of every status are read; a 206 and a 101
// are refused.
func TestSanitizeStatuses(t *testing.T) {
	mask, _ := newSanitize(t, &Sanitize{})
	block, _ := newSanitize(t, &Sanitize{Action: "block"})
	for _, status := range []int{301, 404, 500, 503} {
		dirty := &upstreamReply{status: status, header: http.Header{"Content-Type": {refusal.MDXContentType}}, chunks: []string{accounts}}
		if out := sanitizeServe(t, mask, "GET", dirty); out.w.Code != status || out.w.Body.String() != masked {
			t.Errorf("mask %d: %d %q", status, out.w.Code, out.w.Body)
		}
		dirty.written = 0
		if out := sanitizeServe(t, block, "GET", dirty); out.w.Code != 502 || out.w.Body.String() != blocked {
			t.Errorf("block %d: %d %q", status, out.w.Code, out.w.Body)
		}
		plain := &upstreamReply{status: status, header: http.Header{"Content-Type": {"text/plain"}}, chunks: []string{card}}
		if out := sanitizeServe(t, mask, "GET", plain); out.w.Code != 502 || out.w.Body.String() != refusedFor("media_type") {
			t.Errorf("mask %d text/plain: %d %q", status, out.w.Code, out.w.Body)
		}
	}
	for _, s := range []*Sanitize{mask, block} {
		part := &upstreamReply{status: 206, header: http.Header{"Content-Type": {refusal.MDXContentType}, "Content-Range": {"bytes 0-9/100"}}, chunks: []string{"<mdx></mdx>"}}
		if out := sanitizeServe(t, s, "GET", part); out.w.Code != 502 || out.w.Body.String() != refusedFor("partial_content") {
			t.Errorf("%s 206: %d %q", s.Action, out.w.Code, out.w.Body)
		}
		up := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Upgrade", "websocket")
			w.WriteHeader(http.StatusSwitchingProtocols)
		})
		if out := sanitizeServe(t, s, "GET", up); out.w.Code != 502 || out.w.Body.String() != refusedFor("switching_protocols") {
			t.Errorf("%s 101: %d %q", s.Action, out.w.Code, out.w.Body)
		}
	}
}

// TestSanitizeStripsRange: Range and If-Range never reach the next
// handler.
func TestSanitizeStripsRange(t *testing.T) {
	s, _ := newSanitize(t, &Sanitize{})
	var seen http.Header
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		w.Header().Set("Content-Type", refusal.MDXContentType)
		_, _ = w.Write([]byte(clean))
	})
	r := handlertest.Request(httptest.NewRequest("GET", "/inst1/accounts", nil), "")
	r.Header.Set("Range", "bytes=0-99")
	r.Header.Set("If-Range", `"x"`)
	r.Header.Set("Accept", refusal.MDXContentType)
	w := httptest.NewRecorder()
	if err := s.ServeHTTP(w, r, handlerFunc{next}); err != nil || w.Code != 200 {
		t.Fatal(w.Code, err)
	}
	if seen.Get("Range") != "" || seen.Get("If-Range") != "" || seen.Get("Accept") != refusal.MDXContentType {
		t.Fatalf("the next handler saw %v", seen)
	}
}

// TestSanitizeHeaderFields: a header field holding a number is dropped in
// mask mode and refuses the reply in block mode; report mode passes it,
// counted. The number in the body beside it is the control.
func TestSanitizeHeaderFields(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		k, v   string
	}{
		{"X-Account-Number", 200, "X-Account-Number", card},
		{"X-Account-Number, account rule", 200, "X-Account-Number", "123456789012"},
		{"Location on a 302", 302, "Location", "/accounts/" + card},
		{"a name", 200, "X-Card-" + card, "1"},
	} {
		dirty := func() *upstreamReply {
			return &upstreamReply{status: c.status, header: http.Header{"Content-Type": {refusal.MDXContentType}, c.k: {c.v}, "X-Request-Id": {"req-1"}}, chunks: []string{accounts}}
		}
		mask, logs := newSanitize(t, &Sanitize{})
		out := sanitizeServe(t, mask, "GET", dirty())
		if out.w.Code != c.status || out.w.Header()[c.k] != nil || out.w.Header().Get("X-Request-Id") != "req-1" || out.w.Body.String() != masked {
			t.Errorf("mask %s: %d %v %q", c.name, out.w.Code, out.w.Header(), out.w.Body)
		}
		if logs.FilterMessageSnippet("header field dropped").Len() != 1 {
			t.Errorf("mask %s: not logged: %v", c.name, logs.All())
		}
		noNumber(t, logs)
		block, _ := newSanitize(t, &Sanitize{Action: "block"})
		before := rejections(t, "number_in_header")
		if out := sanitizeServe(t, block, "GET", dirty()); out.w.Code != 502 || out.w.Body.String() != refusedFor("number_in_header") || rejections(t, "number_in_header") != before+1 {
			t.Errorf("block %s: %d %v %q", c.name, out.w.Code, out.w.Header(), out.w.Body)
		}
		report, _ := newSanitize(t, &Sanitize{Action: "report"})
		if out := sanitizeServe(t, report, "GET", dirty()); out.w.Code != c.status || out.w.Header().Get(c.k) != c.v {
			t.Errorf("report %s: %d %v", c.name, out.w.Code, out.w.Header())
		}
	}
	// a handler that writes nothing has its header sent as it is: read too
	for _, action := range []string{"mask", "block"} {
		s, _ := newSanitize(t, &Sanitize{Action: action})
		silent := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("X-Card", card) })
		out := sanitizeServe(t, s, "GET", silent)
		if out.w.Header().Get("X-Card") != "" || action == "block" && out.w.Code != 502 {
			t.Errorf("%s, nothing written: %d %v", action, out.w.Code, out.w.Header())
		}
	}
	// a reply without a body has its header read too
	for _, action := range []string{"mask", "block"} {
		s, _ := newSanitize(t, &Sanitize{Action: action})
		out := sanitizeServe(t, s, "HEAD", &upstreamReply{header: http.Header{"Content-Type": {refusal.MDXContentType}, "X-Card": {card}}})
		if strings.Contains(out.w.Header().Get("X-Card"), card) || action == "block" && out.w.Code != 502 {
			t.Errorf("%s HEAD: %d %v", action, out.w.Code, out.w.Header())
		}
	}
}

// infoRecorder records 1xx replies, which httptest.ResponseRecorder takes
// for the final one.
type infoRecorder struct {
	*httptest.ResponseRecorder
	info   []int
	header []http.Header
}

func (r *infoRecorder) WriteHeader(code int) {
	if code >= 100 && code <= 199 {
		r.info = append(r.info, code)
		r.header = append(r.header, r.Header().Clone())
		return
	}
	r.ResponseRecorder.WriteHeader(code)
}

// hinting sends a 103 with a Link header, then its reply, as
// reverse_proxy forwards them: the 103's fields are set in the header
// map, written, then taken out again.
type hinting struct {
	link string
	next *upstreamReply
}

func (h hinting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Link", h.link)
	w.WriteHeader(http.StatusEarlyHints)
	w.Header().Del("Link")
	h.next.ServeHTTP(w, r)
}

// TestSanitizeEarlyHints: a 1xx's header fields are read as the final
// reply's: in mask mode a field holding a number is dropped from the 103;
// in block mode the 103 is not sent and the reply is refused.
func TestSanitizeEarlyHints(t *testing.T) {
	for _, action := range []string{"mask", "block"} {
		s, _ := newSanitize(t, &Sanitize{Action: action})
		for _, dirty := range []bool{false, true} {
			link := "</accounts/acct-1>; rel=preload"
			if dirty {
				link = "</accounts/" + card + ">; rel=preload"
			}
			rec := &infoRecorder{ResponseRecorder: httptest.NewRecorder()}
			out := serveWriter(t, s, rec.ResponseRecorder, rec, "GET", hinting{link, reply(clean)})
			switch {
			case !dirty:
				if len(rec.info) != 1 || rec.header[0].Get("Link") != link || out.w.Code != 200 {
					t.Errorf("%s, clean: %v %v %d", action, rec.info, rec.header, out.w.Code)
				}
			case action == "mask":
				if len(rec.info) != 1 || rec.header[0]["Link"] != nil || out.w.Code != 200 || out.w.Body.String() != clean {
					t.Errorf("mask: %v %v %d", rec.info, rec.header, out.w.Code)
				}
			default:
				if len(rec.info) != 0 || out.w.Code != 502 || out.w.Body.String() != refusedFor("number_in_header") {
					t.Errorf("block: %v %d %q", rec.info, out.w.Code, out.w.Body)
				}
			}
		}
	}
}

// trailing answers like reverse_proxy with trailers: it announces them,
// writes the body, flushes, and sets them after the body.
type trailing struct {
	body     string
	trailers map[string]string // a key with http.TrailerPrefix is not announced
}

func (tr trailing) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", refusal.MDXContentType)
	for k := range tr.trailers {
		if !strings.HasPrefix(k, http.TrailerPrefix) {
			w.Header().Add("Trailer", k)
		}
	}
	w.WriteHeader(200)
	_, _ = w.Write([]byte(tr.body))
	_ = http.NewResponseController(w).Flush()
	for k, v := range tr.trailers {
		w.Header()[k] = []string{v}
	}
}

// TestSanitizeTrailers: trailers are sent as trailers in every mode, and
// never as header fields; one holding a number is dropped in mask mode
// and refuses the reply in block mode.
func TestSanitizeTrailers(t *testing.T) {
	for _, action := range []string{"mask", "block", "report"} {
		s, _ := newSanitize(t, &Sanitize{Action: action})
		out := sanitizeServe(t, s, "GET", trailing{clean, map[string]string{"X-Checksum": "abc", http.TrailerPrefix + "X-Late": "def"}})
		res := out.w.Result()
		if res.StatusCode != 200 || res.Trailer.Get("X-Checksum") != "abc" || res.Trailer.Get("X-Late") != "def" ||
			res.Header.Get("X-Checksum") != "" || res.Header.Get("X-Late") != "" {
			t.Errorf("%s, clean: %d header %v trailer %v", action, res.StatusCode, res.Header, res.Trailer)
		}
		for _, k := range []string{"X-Card", http.TrailerPrefix + "X-Card"} {
			out = sanitizeServe(t, s, "GET", trailing{clean, map[string]string{"X-Checksum": "abc", k: card}})
			res = out.w.Result()
			switch action {
			case "mask":
				if res.StatusCode != 200 || res.Trailer.Get("X-Card") != "" || res.Header.Get("X-Card") != "" || res.Trailer.Get("X-Checksum") != "abc" {
					t.Errorf("mask %s: %d header %v trailer %v", k, res.StatusCode, res.Header, res.Trailer)
				}
			case "block":
				if res.StatusCode != 502 || out.w.Body.String() != refusedFor("number_in_trailer") || res.Trailer.Get("X-Card") != "" {
					t.Errorf("block %s: %d %q trailer %v", k, res.StatusCode, out.w.Body, res.Trailer)
				}
			case "report":
				if res.StatusCode != 200 || res.Trailer.Get("X-Card") != card {
					t.Errorf("report %s: %d trailer %v", k, res.StatusCode, res.Trailer)
				}
			}
		}
	}
}

func TestSanitizeAllowTypesProvision(t *testing.T) {
	for name, a := range map[string]AllowedTypes{
		"no scan":       {MediaTypes: []string{"text/plain"}},
		"bad scan":      {MediaTypes: []string{"text/plain"}, Scan: "mask"},
		"no type":       {Scan: "text"},
		"not a type":    {MediaTypes: []string{"text"}, Scan: "text"},
		"parameters":    {MediaTypes: []string{"text/plain; charset=utf-8"}, Scan: "text"},
		"every type":    {MediaTypes: []string{"*/*"}, Scan: "text"},
		"xml":           {MediaTypes: []string{"application/xml"}, Scan: "none"},
		"mdx":           {MediaTypes: []string{refusal.MDXContentType}, Scan: "none"},
		"empty subtype": {MediaTypes: []string{"text/"}, Scan: "text"},
	} {
		if err := handlertest.TryProvision(t, &Sanitize{AllowTypes: []AllowedTypes{a}}); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
	s := new(Sanitize)
	d := caddyfile.NewTestDispenser(`mdx_sanitize {
		allow_types text/plain text/html scan text
		allow_types image/* scan none
	}`)
	if err := s.UnmarshalCaddyfile(d); err != nil || len(s.AllowTypes) != 2 || s.AllowTypes[0].Scan != "text" ||
		strings.Join(s.AllowTypes[0].MediaTypes, " ") != "text/plain text/html" || s.AllowTypes[1].MediaTypes[0] != "image/*" {
		t.Fatalf("%v %+v", err, s.AllowTypes)
	}
	for _, bad := range []string{"allow_types text/plain", "allow_types scan text", "allow_types text/plain scan"} {
		if err := new(Sanitize).UnmarshalCaddyfile(caddyfile.NewTestDispenser("mdx_sanitize {\n" + bad + "\n}")); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	ws, logs := newSanitize(t, &Sanitize{})
	ws.AllowTypes = []AllowedTypes{{MediaTypes: []string{"image/png"}, Scan: "none"}}
	if err := ws.setup(); err != nil || logs.FilterMessageSnippet("scan none").Len() != 1 {
		t.Errorf("scan none is not warned of: %v", err)
	}
}
