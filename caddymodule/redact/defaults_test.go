package redact

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter
)

const (
	enc        = EncoderJSON
	defaultLog = `"default":{"encoder":` + enc + `}`
)

// TestWithDefaultEncoder: every log that names no encoder gets
// mxgate_redact, a default log is added when there is none, and nothing
// else changes.
func TestWithDefaultEncoder(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     string // "" for the input itself, unchanged
		err      string // a part of the error
	}{
		{name: "empty object", in: `{}`, want: `{"logging":{"logs":{` + defaultLog + `}}}`},
		{name: "empty input", in: " \n", want: `{"logging":{"logs":{` + defaultLog + `}}}`},
		{name: "global debug", in: `{"logging":{"logs":{"default":{"level":"DEBUG"}}}}`,
			want: `{"logging":{"logs":{"default":{"level":"DEBUG","encoder":` + enc + `}}}}`},
		{name: "writer-only log with include, default with exclude",
			in: `{"logging":{"logs":{"default":{"exclude":["http.log.access.log0"]},"log0":{"writer":{"output":"file","filename":"/var/log/a.log"},"include":["http.log.access.log0"]}}}}`,
			want: `{"logging":{"logs":{"default":{"exclude":["http.log.access.log0"],"encoder":` + enc + `},` +
				`"log0":{"writer":{"output":"file","filename":"/var/log/a.log"},"include":["http.log.access.log0"],"encoder":` + enc + `}}}}`},
		{name: "named encoders kept as written", in: `{"logging":{"logs":{"default":{"encoder":{"format":"json"}},"x":{"encoder":{"format":"filter","wrap":{"format":"console"},"fields":{"request>headers>Mdx-Hmac":{"filter":"delete"}}}}}}}`},
		{name: "a named encoder beside an unnamed one",
			in:   `{"logging":{"logs":{"default":{"encoder":{"format":"console"}},"x":{"level":"ERROR"}}}}`,
			want: `{"logging":{"logs":{"default":{"encoder":{"format":"console"}},"x":{"level":"ERROR","encoder":` + enc + `}}}}`},
		{name: "mxgate_redact named", in: `{"logging":{"logs":{"default":{"encoder":{"format":"mxgate_redact","wrap":{"format":"console"}}}}}}`},
		{name: "encoder in another case is named", in: `{"logging":{"logs":{"default":{"Encoder":{"format":"json"}}}}}`},
		{name: "null encoder left to Caddy", in: `{"logging":{"logs":{"default":{"encoder":null}}}}`},
		{name: "null default log left to Caddy", in: `{"logging":{"logs":{"default":null}}}`},
		{name: "null log left, default added", in: `{"logging":{"logs":{"a":null}}}`,
			want: `{"logging":{"logs":{"a":null,` + defaultLog + `}}}`},
		{name: "null logging", in: `{"logging":null,"apps":{}}`, want: `{"logging":{"logs":{` + defaultLog + `}},"apps":{}}`},
		{name: "null logs", in: `{"logging":{"logs":null}}`, want: `{"logging":{"logs":{` + defaultLog + `}}}`},
		{name: "fields in another case", in: `{"Logging":{"LOGS":{"x":{}}}}`,
			want: `{"Logging":{"LOGS":{"x":{"encoder":` + enc + `},` + defaultLog + `}}}`},
		{name: "sink without encoder", in: `{"logging":{"sink":{"writer":{"output":"stdout"}},"logs":{"default":{"encoder":{"format":"json"}}}}}`,
			want: `{"logging":{"sink":{"writer":{"output":"stdout"},"encoder":` + enc + `},"logs":{"default":{"encoder":{"format":"json"}}}}}`},
		{name: "sink with encoder", in: `{"logging":{"sink":{"encoder":{"format":"json"}},"logs":{"default":{"encoder":{"format":"json"}}}}}`},
		{name: "a log name given twice: each is seen to",
			in:   `{"logging":{"logs":{"a":{"encoder":{"format":"json"}},"a":{"level":"INFO"}}}}`,
			want: `{"logging":{"logs":{"a":{"encoder":{"format":"json"}},"a":{"level":"INFO","encoder":` + enc + `},` + defaultLog + `}}}`},
		{name: "other members, their order, meta fields and white space in strings",
			in: "{\"admin\": {\"listen\": \"127.0.0.1:2019\"},\n\t\"logging\": {\"logs\": {\"x\": {\"@id\": \"access\", \"level\": \"INFO\"}}},\n" +
				"\"apps\": {\"http\": {\"servers\": {\"s\": {\"routes\": [{\"handle\": [{\"handler\": \"static_response\", \"body\": \"<b>a &amp;  b</b>\\n\"}]}]}}}}, \"storage\": {\"module\": \"file_system\"}}",
			want: `{"admin":{"listen":"127.0.0.1:2019"},"logging":{"logs":{"x":{"@id":"access","level":"INFO","encoder":` + enc + `},` + defaultLog + `}},` +
				`"apps":{"http":{"servers":{"s":{"routes":[{"handle":[{"handler":"static_response","body":"<b>a &amp;  b</b>\n"}]}]}}}},"storage":{"module":"file_system"}}`},
		{name: "a top level that is not an object", in: `["logging"]`},
		{name: "logging that is not an object", in: `{"logging":"everything"}`},
		{name: "logs that are not an object", in: `{"logging":{"logs":[{}]}}`},
		{name: "a log that is not an object", in: `{"logging":{"logs":{"default":{"encoder":{"format":"json"}},"x":"y"}}}`},
		{name: "logging twice", in: `{"logging":{},"Logging":{"logs":{}}}`, err: `the configuration gives "logging" twice (as "logging" and as "Logging")`},
		{name: "logs twice", in: `{"logging":{"logs":{"a":{}},"logs":{"b":{}}}}`, err: `logging gives "logs" twice`},
		{name: "sink twice", in: `{"logging":{"sink":{},"SINK":{}}}`, err: `logging gives "sink" twice`},
		{name: "not JSON", in: `{"logging":`, err: "config is not valid JSON"},
		{name: "a Caddyfile", in: ":80\nrespond ok\n", err: "config is not valid JSON"},
		{name: "two values", in: `{} {}`, err: "config is not valid JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := WithDefaultEncoder([]byte(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			if want == "" {
				want = c.in
			}
			if string(got) != want {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
			if again, err := WithDefaultEncoder(got); err != nil || !bytes.Equal(again, got) {
				t.Errorf("a second pass changes it: %s, %v", again, err)
			}
			checkDefaults(t, []byte(c.in), got)
		})
	}
}

// checkDefaults checks out, the result of WithDefaultEncoder(in), against
// Caddy's own reading of both: where Caddy reads in, it reads out the same
// but for the encoders of logs that named none, which are mxgate_redact,
// and a default log, added with it if in had none.
func checkDefaults(t testing.TB, in, out []byte) {
	t.Helper()
	var before, after *caddy.Config
	if caddy.StrictUnmarshalJSON(in, &before) != nil || before == nil {
		return // Caddy refuses it (or it is empty): nothing to compare
	}
	if err := caddy.StrictUnmarshalJSON(out, &after); err != nil {
		t.Fatalf("Caddy reads the input but not the result: %v\n%s", err, out)
	}
	if after.Logging == nil {
		t.Fatalf("no logging in the result:\n%s", out)
	}
	if before.Logging == nil {
		before.Logging = &caddy.Logging{}
	}
	if _, ok := before.Logging.Logs["default"]; !ok {
		if d := after.Logging.Logs["default"]; d == nil || string(d.EncoderRaw) != EncoderJSON || !isZeroBut(d) {
			t.Errorf("no default log with mxgate_redact alone:\n%s", out)
		}
		delete(after.Logging.Logs, "default")
	}
	same := func(what string, b, a *caddy.BaseLog) {
		if a == nil || b == nil {
			if a != b {
				t.Errorf("%s: present on one side only", what)
			}
			return
		}
		if b.EncoderRaw == nil {
			if string(a.EncoderRaw) != EncoderJSON {
				t.Errorf("%s: encoder %s, want mxgate_redact", what, a.EncoderRaw)
			}
			a.EncoderRaw = nil
		}
	}
	if (before.Logging.Sink == nil) != (after.Logging.Sink == nil) {
		t.Errorf("the sink: present on one side only")
	} else if before.Logging.Sink != nil {
		same("the sink", &before.Logging.Sink.BaseLog, &after.Logging.Sink.BaseLog)
	}
	if len(before.Logging.Logs) != len(after.Logging.Logs) {
		t.Errorf("logs %d, were %d", len(after.Logging.Logs), len(before.Logging.Logs))
	}
	for name, b := range before.Logging.Logs {
		a, ok := after.Logging.Logs[name]
		if !ok {
			t.Errorf("log %q lost", name)
			continue
		}
		if b == nil || a == nil {
			if a != b {
				t.Errorf("log %q: null on one side only", name)
			}
			continue
		}
		same("log "+name, &b.BaseLog, &a.BaseLog)
	}
	// all else, as Caddy reads it, is unchanged
	bj, _ := json.Marshal(before)
	aj, _ := json.Marshal(after)
	if !bytes.Equal(bj, aj) {
		t.Errorf("the configuration changed beyond the encoders:\n%s\n%s", bj, aj)
	}
}

// isZeroBut reports whether l sets nothing but its encoder.
func isZeroBut(l *caddy.CustomLog) bool {
	c := *l
	c.EncoderRaw = nil
	b, _ := json.Marshal(&c)
	return string(b) == "{}"
}

// TestAdapters: mxgate-caddyfile adapts as Caddy's caddyfile adapter does,
// warnings included, then gives the logs their encoder; mxgate-json
// checks the JSON and does the same.
func TestAdapters(t *testing.T) {
	caddyfile := `{
	debug
	log errors {
		output file /var/log/mxgate/errors.log
		include http.log.error
	}
}
:8480 {
	log
	respond ok
}
:8481 {
	log {
		output file /var/log/mxgate/access.log
	}
	respond ok
}
:8482 {
	log {
		format json
	}
	respond ok
}
`
	opts := map[string]any{"filename": "Caddyfile"}
	stock, stockWarnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), opts)
	if err != nil {
		t.Fatal(err)
	}
	adapter := caddyconfig.GetAdapter(CaddyfileAdapter)
	if adapter == nil {
		t.Fatal("mxgate-caddyfile is not registered")
	}
	got, warnings, err := adapter.Adapt([]byte(caddyfile), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != len(stockWarnings) {
		t.Errorf("warnings %v, want %v", warnings, stockWarnings)
	}
	var cfg struct {
		Logging struct {
			Logs map[string]struct {
				Encoder json.RawMessage `json:"encoder"`
			} `json:"logs"`
		} `json:"logging"`
	}
	if err := json.Unmarshal(got, &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"default": EncoderJSON, "errors": EncoderJSON, "log0": EncoderJSON, "log1": `{"format":"json"}`}
	if len(cfg.Logging.Logs) != len(want) {
		t.Errorf("logs %s", got)
	}
	for name, enc := range want {
		if string(cfg.Logging.Logs[name].Encoder) != enc {
			t.Errorf("log %s: encoder %s, want %s", name, cfg.Logging.Logs[name].Encoder, enc)
		}
	}
	checkDefaults(t, stock, got)

	// the Caddyfile adapter's complaints, as they are
	if _, _, err := adapter.Adapt([]byte(":8480 {\n\tnot_a_directive\n}\n"), opts); err == nil || !strings.Contains(err.Error(), "Caddyfile:2: unrecognized directive: not_a_directive") {
		t.Errorf("a bad Caddyfile: %v", err)
	}
	// unformatted input warns as it does with caddyfile
	if _, w, err := adapter.Adapt([]byte(":8480 {\nrespond ok\n}\n"), opts); err != nil || len(w) == 0 {
		t.Errorf("no warning for an unformatted Caddyfile: %v %v", w, err)
	}

	js := caddyconfig.GetAdapter(JSONAdapter)
	if js == nil {
		t.Fatal("mxgate-json is not registered")
	}
	if out, _, err := js.Adapt([]byte(`{"logging":{"logs":{"default":{"level":"DEBUG"}}}}`), nil); err != nil || string(out) != `{"logging":{"logs":{"default":{"level":"DEBUG","encoder":`+EncoderJSON+`}}}}` {
		t.Errorf("mxgate-json: %s, %v", out, err)
	}
	if _, _, err := js.Adapt([]byte(caddyfile), nil); err == nil || !strings.Contains(err.Error(), "config is not valid JSON") || !strings.Contains(err.Error(), "the --adapter flag") {
		t.Errorf("mxgate-json with a Caddyfile: %v", err)
	}
	if _, _, err := (Adapter{Inner: "no-such-adapter"}).Adapt([]byte(`{}`), nil); err == nil || !strings.Contains(err.Error(), "no-such-adapter config adapter is not in this build") {
		t.Errorf("a missing inner adapter: %v", err)
	}
}

// FuzzWithDefaultEncoder: any input, no panic; a result that Caddy reads
// as it read the input, with the encoders; a second pass changes nothing.
func FuzzWithDefaultEncoder(f *testing.F) {
	for _, s := range []string{
		`{}`, ``, `null`, `[]`, `{"logging":null}`, `{"logging":{"logs":null}}`,
		`{"logging":{"logs":{"default":{"level":"DEBUG"}}}}`,
		`{"logging":{"logs":{"default":{"exclude":["http.log.access.log0"]},"log0":{"writer":{"output":"file","filename":"a.log"},"include":["http.log.access.log0"]}}}}`,
		`{"logging":{"logs":{"a":{"encoder":{"format":"json"}},"a":{}}}}`,
		`{"Logging":{"Logs":{"x":{"Encoder":{"format":"console"}}}}}`,
		`{"logging":{"sink":{"writer":{"output":"stdout"}}}}`,
		`{"logging":{},"LOGGING":{}}`,
		`{"admin":{"listen":"127.0.0.1:2019"},"apps":{"http":{"servers":{"s":{"listen":[":80"]}}}}}`,
		`{"logging":{"logs":{"x":{"encoder":null},"y":null}}}`,
		"{\"\\u006cogging\":{\"logs\":{}}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := WithDefaultEncoder(in)
		if err != nil {
			var v any
			if json.Unmarshal(in, &v) == nil && len(bytes.TrimSpace(in)) > 0 && !strings.Contains(err.Error(), "twice") {
				t.Fatalf("valid JSON refused: %v", err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("the result is not JSON: %q", out)
		}
		if again, err := WithDefaultEncoder(out); err != nil || !bytes.Equal(again, out) {
			t.Fatalf("a second pass changes it: %q, %v", again, err)
		}
		checkDefaults(t, in, out)
	})
}
