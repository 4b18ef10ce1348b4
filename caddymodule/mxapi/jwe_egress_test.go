package mxapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/jwe"
)

const secretJSON = `{"users":[{"guid":"USR-1","email":"someone@example.com"}]}`

// jweReply is an upstream's answer to one request of the sidecar.
type jweReply struct {
	status int
	ctype  string
	body   func(r *http.Request) string
}

func (rp jweReply) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	if rp.ctype != "" {
		w.Header().Set("Content-Type", rp.ctype)
	}
	w.WriteHeader(rp.status)
	if rp.body != nil {
		_, _ = io.WriteString(w, rp.body(r))
	}
	return nil
}

func text(s string) func(*http.Request) string { return func(*http.Request) string { return s } }

// encryptedTo encrypts plain to the key the request carries.
func encryptedTo(plain string) func(*http.Request) string {
	return func(r *http.Request) string {
		pub, _, err := jwe.ParsePublicKeyHeader(r.Header.Get("X-Public-Key"))
		if err != nil {
			return "no key"
		}
		c, _, _, _ := jwe.CipherFromContentType(r.Header.Get("Content-Type"))
		compact, _ := jwe.Encrypt(pub, jwe.SuiteFor(c), []byte(plain))
		return compact
	}
}

// encryptedToAnother encrypts plain to a key of the right curve that the
// request did not carry.
func encryptedToAnother(t *testing.T, plain string) func(*http.Request) string {
	k, err := jwe.GenerateKey(jwe.P384)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := jwe.ParsePublicKeyHeader(k.PublicKeyHeader())
	compact, _ := jwe.Encrypt(pub, jwe.SuiteFor(jwe.A256GCM), []byte(plain))
	return text(compact)
}

// TestDecryptRefusesDowngrade: a successful jweReply that is not a JWE this
// request's key opens never reaches the app, whatever it calls itself;
// errors pass as MX sends them; only a 2xx that admits no body passes
// without one. allow_plaintext lets through exactly the plaintext
// successes that do not claim to be encrypted.
func TestDecryptRefusesDowngrade(t *testing.T) {
	const (
		notEncrypted  = `{"error":{"message":"Bad gateway: the upstream reply was not encrypted"}}`
		undecryptable = `{"error":{"message":"Bad gateway: the upstream reply claims to be encrypted but could not be decrypted"}}`
	)
	const empty = "(empty)"
	cases := []struct {
		name   string
		method string
		up     jweReply
		strict int    // status the app gets by default
		body   string // and its body ("" for the upstream's own, empty for none)
		lax    int    // with allow_plaintext
	}{
		{"encrypted", "GET", jweReply{200, "application/jose", encryptedTo(secretJSON)}, 200, secretJSON, 200},
		{"encrypted without a media type", "GET", jweReply{200, "", encryptedTo(secretJSON)}, 200, secretJSON, 200},
		{"encrypted as jose+json", "GET", jweReply{200, "application/jose+json", encryptedTo(secretJSON)}, 200, secretJSON, 200},
		{"encrypted empty body", "GET", jweReply{200, "application/jose", encryptedTo("")}, 200, empty, 200},
		{"plaintext json", "GET", jweReply{200, "application/json", text(secretJSON)}, 502, notEncrypted, 200},
		{"plaintext vnd json", "POST", jweReply{201, "application/vnd.mx.api.v1+json", text(secretJSON)}, 502, notEncrypted, 201},
		{"plaintext as jose+json", "GET", jweReply{200, "application/jose+json", text(secretJSON)}, 502, undecryptable, 502},
		{"plaintext as JOSE in capitals", "GET", jweReply{200, "Application/JOSE; charset=utf-8", text(secretJSON)}, 502, undecryptable, 502},
		{"plaintext as encrypted type", "GET", jweReply{200, "application/encrypted.a256gcm+json", text(secretJSON)}, 502, undecryptable, 502},
		{"text/plain", "GET", jweReply{200, "text/plain", text("account 12345678")}, 502, notEncrypted, 200},
		{"no media type", "GET", jweReply{200, "", text(secretJSON)}, 502, notEncrypted, 200},
		{"empty 200", "GET", jweReply{200, "application/json", nil}, 502, notEncrypted, 200},
		{"whitespace 200", "GET", jweReply{200, "application/json", text(" \n")}, 502, notEncrypted, 200},
		{"206", "GET", jweReply{206, "application/json", text(secretJSON)}, 502, notEncrypted, 206},
		{"204", "DELETE", jweReply{204, "", nil}, 204, "", 204},
		{"205", "POST", jweReply{205, "", nil}, 205, "", 205},
		{"HEAD", "HEAD", jweReply{200, "application/json", nil}, 200, "", 200},
		{"412 passes", "GET", jweReply{412, "application/json", text(`{"error":{"message":"Invalid public key"}}`)}, 412, "", 412},
		{"404 passes", "GET", jweReply{404, "application/json", text(`{"error":{"message":"Not Found"}}`)}, 404, "", 404},
		{"encrypted 404", "GET", jweReply{404, "application/jose", encryptedTo(`{"error":{"message":"Not Found"}}`)}, 404, `{"error":{"message":"Not Found"}}`, 404},
		{"wrong key", "GET", jweReply{200, "application/jose", encryptedToAnother(t, secretJSON)}, 502, undecryptable, 502},
		{"wrong key, no media type", "GET", jweReply{200, "application/json", encryptedToAnother(t, secretJSON)}, 502, undecryptable, 502},
		{"wrong key on a 412", "GET", jweReply{412, "application/jose", encryptedToAnother(t, "{}")}, 502, undecryptable, 502},
		{"garbage jose", "GET", jweReply{200, "application/jose", text("eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9.AAAA.AAAA.AAAA.AAAA")}, 502, undecryptable, 502},
	}
	for _, allow := range []bool{false, true} {
		m := &JWEDecrypt{AllowPlaintext: allow}
		handlertest.Provision(t, m)
		logger, logs := handlertest.Logs()
		m.logger = logger
		for _, c := range cases {
			r := handlertest.Request(httptest.NewRequest(c.method, "/users", nil), "127.0.0.1")
			w := httptest.NewRecorder()
			if err := m.ServeHTTP(w, r, c.up); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			want := c.strict
			if allow {
				want = c.lax
			}
			if w.Code != want {
				t.Errorf("allow_plaintext %v, %s: %d, want %d", allow, c.name, w.Code, want)
				continue
			}
			wantBody := c.body
			switch {
			case wantBody == empty:
				wantBody = ""
			case want != c.strict || wantBody == "": // the upstream's own answer
				wantBody = ""
				if c.up.body != nil {
					wantBody = c.up.body(r)
				}
			}
			if got := w.Body.String(); got != wantBody {
				t.Errorf("allow_plaintext %v, %s: body %q, want %q", allow, c.name, got, wantBody)
			}
			if want == 502 && w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("allow_plaintext %v, %s: refusal's Content-Type %q", allow, c.name, w.Header().Get("Content-Type"))
			}
		}
		for _, e := range logs.All() {
			if !strings.Contains(e.Message, "not encrypted") && !strings.Contains(e.Message, "did not decrypt") {
				t.Errorf("unexpected log line %q", e.Message)
			}
			for _, f := range e.Context {
				if strings.Contains(f.String, "someone@example.com") || strings.Contains(f.String, "12345678") {
					t.Errorf("the log line %q carries the jweReply", e.Message)
				}
			}
		}
		if n := logs.FilterMessageSnippet("not encrypted").Len(); (n == 0) != allow {
			t.Errorf("allow_plaintext %v: %d downgrade warnings", allow, n)
		}
	}
}

// TestEncryptEveryBodiedSuccess: the serving side encrypts an empty 200 as
// it encrypts any other success, and leaves alone the answers that admit
// no body.
func TestEncryptEveryBodiedSuccess(t *testing.T) {
	m := &JWEEncrypt{}
	handlertest.Provision(t, m)
	k, err := jwe.GenerateKey(jwe.P384)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method  string
		status  int
		encrypt bool
	}{{"GET", 200, true}, {"POST", 202, true}, {"DELETE", 204, false}, {"POST", 205, false}, {"HEAD", 200, false}, {"GET", 404, false}} {
		r := handlertest.Request(httptest.NewRequest(c.method, "/users", nil), "127.0.0.1")
		r.Header.Set("Content-Type", "application/encrypted.a256gcm+json")
		r.Header.Set("X-Public-Key", k.PublicKeyHeader())
		w := httptest.NewRecorder()
		if err := m.ServeHTTP(w, r, jweReply{status: c.status}); err != nil {
			t.Fatal(err)
		}
		if w.Code != c.status {
			t.Fatalf("%s %d: answered %d", c.method, c.status, w.Code)
		}
		if got := w.Header().Get("Content-Type") == "application/jose"; got != c.encrypt {
			t.Errorf("%s %d with no body: encrypted %v", c.method, c.status, got)
			continue
		}
		if c.encrypt {
			if plain, err := jwe.Decrypt(w.Body.String(), k, []jwe.Suite{jwe.SuiteFor(jwe.A256GCM)}); err != nil || len(plain) != 0 {
				t.Errorf("%s %d: %q %v", c.method, c.status, plain, err)
			}
		}
	}
}

var _ caddyhttp.Handler = jweReply{}
