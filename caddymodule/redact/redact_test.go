package redact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The secrets of the tests; none may appear in any output.
const (
	hmacSig    = "e47928dcd29e494116961ad12884c8fd7aae07f2"
	sessionKey = "2f9c4a6e8b1d3f5a7c9e0b2d4f6a8c1e-session"
	basicValue = "Basic Q0xJRU5ULTEyMzQ6QVBJLUtFWS00NTY3"
	bearer     = "Bearer eyJhbGciOiJQUzI1NiJ9.token-body.sig"
	cookie     = "session=cookie-secret-81f2"
	extraKey   = "x-api-key-secret-55c1"
)

var secrets = []string{hmacSig, sessionKey, basicValue, "Q0xJRU5ULTEyMzQ6QVBJLUtFWS00NTY3", bearer, "token-body", cookie, "cookie-secret", extraKey}

// syncBuffer is a concurrency-safe zapcore.WriteSyncer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) Sync() error { return nil }
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// newLogger provisions e and returns a DEBUG logger writing through it.
func newLogger(t *testing.T, e *Encoder) (*zap.Logger, *syncBuffer) {
	t.Helper()
	return newLoggerAt(t, e, zap.DebugLevel)
}

// newLoggerAt is newLogger at level.
func newLoggerAt(t *testing.T, e *Encoder, level zapcore.Level) (*zap.Logger, *syncBuffer) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	return zap.New(zapcore.NewCore(e, out, level)), out
}

func secretRequest() *http.Request {
	r := httptest.NewRequest("POST", "http://127.0.0.1:8480/inst1/sessions?page=1", strings.NewReader("<mdx/>"))
	h := r.Header
	h.Set("Content-Type", "application/vnd.moneydesktop.mdx.v5+xml")
	h.Set("Date", "1382975431")
	h.Set("MDX-HMAC", hmacSig)
	h.Set("MDX-Session-Key", sessionKey)
	h.Add("Authorization", basicValue)
	h.Add("Authorization", bearer) // a smuggled second value
	h.Set("Cookie", cookie)
	h.Set("Proxy-Authorization", basicValue)
	h.Set("X-Api-Key", extraKey)
	h["mdx_hmac"] = []string{hmacSig} // a key in neither canonical form nor with a hyphen
	h["MDX-SESSION-KEY"] = []string{sessionKey}
	return r
}

func assertClean(t *testing.T, out string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("a secret reached the log: %d bytes of output hold a value the encoder must redact", len(out))
			return
		}
	}
}

// TestRedactsCaddysShapes logs a request as Caddy's server, error log and
// reverse_proxy do (with log_credentials on, the worst case), and the
// shapes a module might choose, and finds no secret in the output, but
// the headers that are not secret intact.
func TestRedactsCaddysShapes(t *testing.T) {
	for _, wrap := range []string{"", "json", "console"} {
		t.Run("wrap "+cmpOr(wrap, "default"), func(t *testing.T) {
			e := &Encoder{Headers: []string{"X-Api-Key"}}
			if wrap != "" {
				e.WrappedRaw = json.RawMessage(`{"format":"` + wrap + `"}`)
			}
			log, out := newLogger(t, e)
			r := secretRequest()
			resp := http.Header{"Set-Cookie": {cookie}, "Content-Type": {"application/json"}}

			// the access log and the error log
			log.Info("handled request",
				zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: r, ShouldLogCredentials: true}),
				zap.Object("resp_headers", caddyhttp.LoggableHTTPHeader{Header: resp, ShouldLogCredentials: true}))
			// the error log adds the request lazily, through With
			log.WithLazy(zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: r, ShouldLogCredentials: true})).
				Error("dial tcp 127.0.0.1:1: connect: connection refused", zap.Int("status", 502))
			log.With(zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: r, ShouldLogCredentials: true})).
				Debug("upstream roundtrip", zap.Object("headers", caddyhttp.LoggableHTTPHeader{Header: resp, ShouldLogCredentials: true}))
			// headers by reflection, as a plain map, inside a struct, in an array
			log.Debug("reflected", zap.Any("headers", r.Header), zap.Any("map", map[string][]string(r.Header)),
				zap.Any("flat", map[string]string{"MDX-HMAC": hmacSig, "Date": "1382975431"}),
				zap.Any("nested", struct {
					Req struct{ Header http.Header }
					All []map[string]any
				}{Req: struct{ Header http.Header }{r.Header}, All: []map[string]any{{"Authorization": basicValue}}}))
			log.Debug("array", zap.Array("requests", zapcore.ArrayMarshalerFunc(func(enc zapcore.ArrayEncoder) error {
				_ = enc.AppendObject(caddyhttp.LoggableHTTPHeader{Header: r.Header, ShouldLogCredentials: true})
				return enc.AppendReflected(r.Header)
			})))
			// a value logged straight under a header's name, at the top
			log.Debug("direct", zap.String("MDX-HMAC", hmacSig), zap.String("mdx-session-key", sessionKey),
				zap.ByteString("Authorization", []byte(basicValue)), zap.Binary("cookie", []byte(cookie)),
				zap.Strings("x_api_key", []string{extraKey}))

			got := out.String()
			assertClean(t, got)
			for _, keep := range []string{"1382975431", "application/vnd.moneydesktop.mdx.v5+xml", "/inst1/sessions?page=1", "connection refused", "upstream roundtrip", Redacted} {
				if !strings.Contains(got, keep) {
					t.Errorf("the log lost %q:\n%s", keep, got)
				}
			}
			if wrap != "console" {
				for i, line := range strings.Split(strings.TrimSpace(got), "\n") {
					if !json.Valid([]byte(line)) {
						t.Errorf("line %d is not JSON: %s", i+1, line)
					}
				}
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestNames: matching ignores case and takes _ for -, and nothing else.
func TestNames(t *testing.T) {
	n, err := newNames([]string{"X-Api-Key"})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		"Authorization": true, "authorization": true, "AUTHORIZATION": true,
		"Mdx-Hmac": true, "MDX-HMAC": true, "mdx_hmac": true, "Mdx-Session-Key": true, "mdx_session_key": true,
		"Proxy-Authorization": true, "Cookie": true, "Set-Cookie": true, "x_api_key": true,
		"Authorizations": false, "Mdx-Hmac2": false, "Mdx-Job-Type": false, "Date": false, "Content-Md5": false,
		"X-Public-Key": false, "": false, "headers": false, "Mdx Hmac": false,
	} {
		if got := n.sensitive(key); got != want {
			t.Errorf("sensitive(%q) = %v", key, got)
		}
	}
	if _, err := newNames([]string{" "}); err == nil {
		t.Error("an empty header name was accepted")
	}
}

// TestNeverReadsARedactedValue: a redacted header's value is not even
// marshalled, so that a value that fails to marshal, or a probe, sees no
// read.
func TestNeverReadsARedactedValue(t *testing.T) {
	log, out := newLogger(t, &Encoder{})
	read := false
	log.Info("x", zap.Object("request", zapcore.ObjectMarshalerFunc(func(enc zapcore.ObjectEncoder) error {
		return enc.AddArray("Mdx-Hmac", zapcore.ArrayMarshalerFunc(func(zapcore.ArrayEncoder) error {
			read = true
			return errors.New("read")
		}))
	})))
	if read || !strings.Contains(out.String(), `"Mdx-Hmac":["REDACTED"]`) {
		t.Fatalf("read %v: %s", read, out)
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for input, want := range map[string]string{
		"mxgate_redact":                                                         `{}`,
		"mxgate_redact {\n}":                                                    `{}`,
		"mxgate_redact {\n wrap console\n}":                                     `{"wrap":{"format":"console"}}`,
		"mxgate_redact {\n header X-Api-Key X-Token\n}":                         `{"headers":["X-Api-Key","X-Token"]}`,
		"mxgate_redact {\n header A\n header B\n}":                              `{"headers":["A","B"]}`,
		"mxgate_redact {\n wrap json {\n time_format unix_seconds_float\n }\n}": `{"wrap":{"format":"json","time_format":"unix_seconds_float"}}`,
	} {
		e := &Encoder{}
		if err := e.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
			t.Errorf("%q: %v", input, err)
			continue
		}
		b, _ := json.Marshal(e)
		if string(b) != want {
			t.Errorf("%q: %s, want %s", input, b, want)
		}
	}
	for _, bad := range []string{
		"mxgate_redact json",
		"mxgate_redact {\n header\n}",
		"mxgate_redact {\n wrap\n}",
		"mxgate_redact {\n wrap json\n wrap console\n}",
		"mxgate_redact {\n wrap nosuchencoder\n}",
		"mxgate_redact {\n fields {\n }\n}",
	} {
		if err := (&Encoder{}).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

// TestWrapsAnyEncoder: a filter encoder inside still filters.
func TestWrapsAnyEncoder(t *testing.T) {
	e := &Encoder{Headers: []string{"X-Api-Key"}, WrappedRaw: json.RawMessage(`{"format":"filter","fields":{"request>uri":{"filter":"delete"}}}`)}
	log, out := newLogger(t, e)
	log.Info("handled request", zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: secretRequest(), ShouldLogCredentials: true}))
	got := out.String()
	assertClean(t, got)
	if strings.Contains(got, "/inst1/sessions") || !strings.Contains(got, "1382975431") {
		t.Fatalf("the wrapped filter did not run as configured: %s", got)
	}
}

var _ = logging.JSONEncoder{}

func BenchmarkAccessLogLine(b *testing.B) {
	r := secretRequest()
	for _, name := range []string{"json", "mxgate_redact"} {
		b.Run(name, func(b *testing.B) {
			log := zap.New(zapcore.NewCore(benchEncoder(b, name), zapcore.AddSync(discard{}), zap.InfoLevel))
			b.ReportAllocs()
			for b.Loop() {
				log.Info("handled request", zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: r}), zap.Int("status", 200))
			}
		})
	}
}

// BenchmarkProxyWith is what reverse_proxy's logger costs on every
// proxied request when nothing is logged: With, given the request.
func BenchmarkProxyWith(b *testing.B) {
	r := secretRequest()
	for _, name := range []string{"json", "mxgate_redact"} {
		b.Run(name, func(b *testing.B) {
			log := zap.New(zapcore.NewCore(benchEncoder(b, name), zapcore.AddSync(discard{}), zap.ErrorLevel))
			b.ReportAllocs()
			for b.Loop() {
				l := log.With(zap.String("upstream", "127.0.0.1:8491"), zap.Duration("duration", time.Millisecond),
					zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: r}))
				l.Debug("upstream roundtrip")
			}
		})
	}
}

// benchEncoder returns Caddy's json encoder ("json") or mxgate_redact
// around it, provisioned.
func benchEncoder(b *testing.B, name string) zapcore.Encoder {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	var enc interface {
		zapcore.Encoder
		caddy.Provisioner
	} = &Encoder{}
	if name == "json" {
		enc = &logging.JSONEncoder{}
	}
	if err := enc.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	return enc
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// countingObject counts how often it is encoded.
type countingObject struct{ n *int }

func (c countingObject) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	*c.n++
	enc.AddString("MDX-HMAC", hmacSig)
	enc.AddString("seen", "yes")
	return nil
}

// TestWithEncodesOnlyWhatIsWritten: reverse_proxy hands every request to
// With; the object is encoded once per entry written, never for a logger
// that writes nothing, still redacted, and one child's fields never reach
// another's.
func TestWithEncodesOnlyWhatIsWritten(t *testing.T) {
	log, out := newLoggerAt(t, &Encoder{}, zap.ErrorLevel)

	n := 0
	for range 100 {
		child := log.With(zap.Object("request", countingObject{&n}), zap.String("upstream", "127.0.0.1:1"))
		child.Debug("upstream roundtrip") // below the level: nothing written
	}
	if n != 0 {
		t.Fatalf("With encoded its object %d times for 100 loggers that wrote nothing", n)
	}

	a := log.With(zap.Object("a", countingObject{&n}))
	b := a.With(zap.Array("b", zapcore.ArrayMarshalerFunc(func(enc zapcore.ArrayEncoder) error {
		enc.AppendString("only-b")
		return nil
	})))
	a.Error("from a")
	if n != 1 {
		t.Fatalf("one entry written, object encoded %d times", n)
	}
	b.Error("from b")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %d:\n%s", len(lines), out)
	}
	if strings.Contains(lines[0], "only-b") || strings.Contains(lines[0], `"upstream"`) {
		t.Errorf("a's entry carries another logger's field: %s", lines[0])
	}
	for _, want := range []string{`"a":{`, `"seen":"yes"`, "only-b"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("b's entry lacks %s: %s", want, lines[1])
		}
	}
	assertClean(t, out.String())
	if !strings.Contains(out.String(), Redacted) {
		t.Errorf("the deferred object's credential was not redacted:\n%s", out)
	}
}

// TestWithKeepsEveryKind: every kind of field given to With comes out as
// zap's own encoder writes it, redacted by name, and a byte
// slice changed after With is written as it was.
func TestWithKeepsEveryKind(t *testing.T) {
	log, out := newLoggerAt(t, &Encoder{}, zap.InfoLevel)
	raw := []byte("bytes-before")
	at := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	fields := []zap.Field{zap.Binary("bin", []byte{1, 2}), zap.ByteString("bs", raw), zap.Bool("b", true),
		zap.Complex128("c128", 1+2i), zap.Complex64("c64", 3+4i), zap.Duration("d", time.Second),
		zap.Float64("f64", 1.5), zap.Float32("f32", 2.5), zap.Int("i", -1), zap.Int64("i64", -2), zap.Int32("i32", -3),
		zap.Int16("i16", -4), zap.Int8("i8", -5), zap.String("MDX-HMAC", hmacSig), zap.Time("t", at),
		zap.Uint("u", 1), zap.Uint64("u64", 2), zap.Uint32("u32", 3), zap.Uint16("u16", 4), zap.Uint8("u8", 5),
		zap.Uintptr("up", 6), zap.Reflect("r", map[string]string{"Authorization": basicValue}), zap.Namespace("ns"), zap.String("inner", "x")}
	log.With(fields...).Info("all kinds")
	copy(raw, "BYTES-CHANGED")

	want := &syncBuffer{}
	wantEnc := &logging.JSONEncoder{}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := wantEnc.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	plain := fields[:]
	plain[1] = zap.ByteString("bs", []byte("bytes-before"))
	plain[13] = zap.String("MDX-HMAC", Redacted)
	plain[21] = zap.Reflect("r", map[string]string{"Authorization": Redacted})
	zap.New(zapcore.NewCore(wantEnc, want, zap.InfoLevel)).With(plain...).Info("all kinds")

	strip := func(s string) string { // the timestamps differ
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("not JSON: %s", s)
		}
		delete(m, "ts")
		b, _ := json.Marshal(m)
		return string(b)
	}
	if got, exp := strip(out.String()), strip(want.String()); got != exp {
		t.Errorf("With's fields came out as\n%s\nwant\n%s", got, exp)
	}
	assertClean(t, out.String())
}
