package mxapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/jwe"
)

const plainJSON = `{"users":[{"guid":"USR-1","email":"someone@example.com"}]}`

// encryptingUpstream answers as MX does to a request for an encrypted
// reply: the JSON, encrypted to the request's X-Public-Key with suite.
type encryptingUpstream struct {
	suite    jwe.Suite
	before   func() // runs after the request's key is read, before encrypting
	received http.Header
}

func (u *encryptingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.received = r.Header.Clone()
	pub, _, err := jwe.ParsePublicKeyHeader(r.Header.Get("X-Public-Key"))
	if err != nil {
		return err
	}
	if u.before != nil {
		u.before()
	}
	compact, err := jwe.Encrypt(pub, u.suite, []byte(plainJSON))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/jose")
	w.Header().Set("Content-Length", strconv.Itoa(len(compact)))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write([]byte(compact))
	return err
}

func newDecrypt(t *testing.T, m *JWEDecrypt) *JWEDecrypt {
	t.Helper()
	handlertest.Provision(t, m)
	m.logger, _ = handlertest.Logs()
	return m
}

func TestJWEDecrypt(t *testing.T) {
	for name, c := range map[string]struct {
		m     JWEDecrypt
		suite jwe.Suite
		ctype string
	}{
		"p384, a256gcm":        {JWEDecrypt{}, jwe.SuiteFor(jwe.A256GCM), "application/encrypted.a256gcm+json"},
		"p256, a128gcm":        {JWEDecrypt{Curve: "p256", Cipher: "a128gcm"}, jwe.SuiteFor(jwe.A128GCM), "application/encrypted.a128gcm+json"},
		"a128gcm, direct ECDH": {JWEDecrypt{Cipher: "a128gcm", A128KeyAlgorithm: "ECDH-ES"}, jwe.Suite{Key: jose.ECDH_ES, Content: jose.A128GCM}, "application/encrypted.a128gcm+json"},
	} {
		m := newDecrypt(t, &c.m)
		up := &encryptingUpstream{suite: c.suite}
		r := httptest.NewRequest("GET", "/users", nil)
		r.Header.Set("Accept-Encoding", "gzip")
		w, err := handlertest.Serve(t, m, r, up)
		if err != nil || w.Code != 200 || w.Body.String() != plainJSON {
			t.Errorf("%s: %d %v %q", name, w.Code, err, w.Body)
			continue
		}
		if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Content-Length") != strconv.Itoa(len(plainJSON)) {
			t.Errorf("%s: reply headers %v", name, w.Header())
		}
		if up.received.Get("Content-Type") != c.ctype || up.received.Get("Accept-Encoding") != "identity" {
			t.Errorf("%s: request headers %v", name, up.received)
		}
	}
}

// TestJWEDecryptAcrossRotation: a reply is decrypted with the pair its
// request carried, even when the pair is rotated meanwhile.
func TestJWEDecryptAcrossRotation(t *testing.T) {
	m := newDecrypt(t, &JWEDecrypt{})
	first := m.key.Load()
	up := &encryptingUpstream{suite: jwe.SuiteFor(jwe.A256GCM), before: func() {
		if err := m.rotate(); err != nil {
			t.Error(err)
		}
	}}
	w, err := handlertest.Serve(t, m, httptest.NewRequest("GET", "/users", nil), up)
	if err != nil || w.Code != 200 || w.Body.String() != plainJSON {
		t.Fatalf("%d %v %q", w.Code, err, w.Body)
	}
	if m.key.Load() == first {
		t.Fatal("the pair was not rotated")
	}
}

func TestJWEDecryptRefuses(t *testing.T) {
	other, _ := jwe.GenerateKey(jwe.P384)
	otherPub, _, _ := jwe.ParsePublicKeyHeader(other.PublicKeyHeader())
	foreign, _ := jwe.Encrypt(otherPub, jwe.SuiteFor(jwe.A256GCM), []byte(plainJSON))
	m := newDecrypt(t, &JWEDecrypt{})
	logger, logs := handlertest.Logs()
	m.logger = logger
	for name, next := range map[string]*handlertest.Next{
		"garbage, jose type":        {Header: http.Header{"Content-Type": {"application/jose"}, "X-Upstream": {"1"}}, Body: "not.a.jwe.at.all"},
		"encrypted to another key":  {Header: http.Header{"Content-Type": {"application/json"}}, Body: foreign},
		"encrypted type, JSON body": {Header: http.Header{"Content-Type": {"application/encrypted.a256gcm+json"}}, Body: `{"a":1}`},
	} {
		w, err := handlertest.Serve(t, m, httptest.NewRequest("GET", "/users", nil), next)
		if err != nil || w.Code != 502 || w.Body.String() != `{"error":{"message":"Bad gateway: the upstream reply claims to be encrypted but could not be decrypted"}}` {
			t.Errorf("%s: %d %v %q", name, w.Code, err, w.Body)
		}
		if w.Header().Get("X-Upstream") != "" || strings.Contains(w.Body.String(), plainJSON) {
			t.Errorf("%s: the upstream's reply leaked: %v", name, w.Header())
		}
	}
	if n := logs.FilterMessageSnippet("did not decrypt").Len(); n != 3 {
		t.Errorf("%d warnings", n)
	}

	small := newDecrypt(t, &JWEDecrypt{MaxBody: 16})
	w, err := handlertest.Serve(t, small, httptest.NewRequest("GET", "/users", nil), &handlertest.Next{Header: http.Header{"Content-Type": {"application/jose"}}, Body: foreign})
	if err != nil || w.Code != 502 || !strings.Contains(w.Body.String(), "larger than max_body") {
		t.Errorf("overflow: %d %v %q", w.Code, err, w.Body)
	}
}

// TestJWEDecryptPassesPlaintext: an unencrypted reply (MX's own 412, say)
// reaches the app unchanged; the chain's errors are returned.
func TestJWEDecryptPassesPlaintext(t *testing.T) {
	m := newDecrypt(t, &JWEDecrypt{})
	next := &handlertest.Next{Status: 412, Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"error":{"message":"Invalid public key"}}`}
	w, err := handlertest.Serve(t, m, httptest.NewRequest("GET", "/users", nil), next)
	if err != nil || w.Code != 412 || w.Body.String() != next.Body || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("%d %v %q", w.Code, err, w.Body)
	}
	boom := errors.New("upstream down")
	if _, err := handlertest.Serve(t, m, httptest.NewRequest("GET", "/users", nil), failing{boom}); !errors.Is(err, boom) {
		t.Errorf("error %v", err)
	}
}

type failing struct{ err error }

func (f failing) ServeHTTP(http.ResponseWriter, *http.Request) error { return f.err }

func TestJWEDecryptProvisionErrors(t *testing.T) {
	for name, m := range map[string]*JWEDecrypt{
		"negative max_body": {MaxBody: -1},
		"a128 algorithm":    {A128KeyAlgorithm: "RSA-OAEP"},
		"curve":             {Curve: "p521"},
		"cipher":            {Cipher: "a192gcm"},
		"rotate":            {Rotate: 1},
	} {
		if err := handlertest.TryProvision(t, m); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
	if err := new(JWEDecrypt).Cleanup(); err != nil {
		t.Errorf("cleanup of an unprovisioned handler: %v", err)
	}
}

func publicKeyHeader(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func TestJWEEncryptRefusals(t *testing.T) {
	m := &JWEEncrypt{}
	handlertest.Provision(t, m)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	good, _ := jwe.GenerateKey(jwe.P384)
	for _, c := range []struct {
		ctype, key, msg string
	}{
		{"application/encrypted.a512gcm+json", good.PublicKeyHeader(), "Unsupported cipher: a512gcm"},
		{"application/encrypted.a256gcm+json", "", "Error processing parameters"},
		{"application/json", good.PublicKeyHeader(), "Error processing parameters"},
		{"application/encrypted.a256gcm+json", "not base64!", "Invalid public key"},
		{"application/encrypted.a256gcm+json", publicKeyHeader(t, &rsaKey.PublicKey), "Invalid public key"},
		{"application/encrypted.a256gcm+json", publicKeyHeader(t, &p521.PublicKey), "Unsupported curve: secp521r1"},
	} {
		r := httptest.NewRequest("POST", "/users", strings.NewReader(`{}`))
		r.Header.Set("Content-Type", c.ctype)
		if c.key != "" {
			r.Header.Set("X-Public-Key", c.key)
		}
		next := &handlertest.Next{}
		w, err := handlertest.Serve(t, m, r, next)
		if err != nil || w.Code != 412 || w.Body.String() != `{"error":{"message":"`+c.msg+`"}}` || next.Calls != 0 {
			t.Errorf("%s / %.12q: %d %v %q", c.ctype, c.key, w.Code, err, w.Body)
		}
	}
}

func TestJWEEncrypt(t *testing.T) {
	m := &JWEEncrypt{}
	handlertest.Provision(t, m)
	for _, c := range []struct {
		curve  jwe.Curve
		cipher jwe.Cipher
	}{{jwe.P384, jwe.A256GCM}, {jwe.P256, jwe.A128GCM}} {
		key, _ := jwe.GenerateKey(c.curve)
		r := httptest.NewRequest("POST", "/users", strings.NewReader(`{"user":{"email":"x@example.com"}}`))
		r.Header.Set("Content-Type", c.cipher.ContentType())
		r.Header.Set("X-Public-Key", key.PublicKeyHeader())
		next := &handlertest.Next{Status: 201, Header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"identity"}}, Body: plainJSON}
		w, err := handlertest.Serve(t, m, r, next)
		if err != nil || w.Code != 201 || w.Header().Get("Content-Type") != "application/jose" || w.Header().Get("Content-Encoding") != "" {
			t.Fatalf("%v: %d %v %v", c.cipher, w.Code, err, w.Header())
		}
		if w.Header().Get("Content-Length") != strconv.Itoa(w.Body.Len()) {
			t.Errorf("%v: Content-Length %q for %d bytes", c.cipher, w.Header().Get("Content-Length"), w.Body.Len())
		}
		plain, err := jwe.Decrypt(w.Body.String(), key, []jwe.Suite{jwe.SuiteFor(c.cipher)})
		if err != nil || string(plain) != plainJSON {
			t.Errorf("%v: decrypted %q %v", c.cipher, plain, err)
		}
		// the application saw an ordinary JSON request
		if next.Received.Get("Content-Type") != "application/json" || next.Received.Get("X-Public-Key") != "" || string(next.Got) != `{"user":{"email":"x@example.com"}}` {
			t.Errorf("%v: the application saw %v", c.cipher, next.Received)
		}
	}
}

func TestJWEEncryptPassesOn(t *testing.T) {
	m := &JWEEncrypt{ResponseType: "application/jwt", MaxBody: 64}
	handlertest.Provision(t, m)
	key, _ := jwe.GenerateKey(jwe.P384)
	req := func(method string) *http.Request {
		r := httptest.NewRequest(method, "/users/USR-1", nil)
		r.Header.Set("Content-Type", "application/encrypted.a256gcm+json")
		r.Header.Set("X-Public-Key", key.PublicKeyHeader())
		return r
	}
	// no encryption asked for
	next := &handlertest.Next{Body: plainJSON}
	if w, _ := handlertest.Serve(t, m, httptest.NewRequest("GET", "/users", nil), next); w.Body.String() != plainJSON {
		t.Errorf("plain request: %q", w.Body)
	}
	// errors and empty answers go unencrypted
	for _, next := range []*handlertest.Next{{Status: 404, Body: `{"error":{"message":"Not found"}}`}, {Status: 204}} {
		w, err := handlertest.Serve(t, m, req("DELETE"), next)
		if err != nil || w.Code != next.Status || w.Body.String() != next.Body {
			t.Errorf("%d: %d %q", next.Status, w.Code, w.Body)
		}
		if next.Received.Get("Content-Type") != "" {
			t.Errorf("a bodiless request kept Content-Type %q", next.Received.Get("Content-Type"))
		}
	}
	// too large to hold
	w, err := handlertest.Serve(t, m, req("GET"), &handlertest.Next{Body: strings.Repeat("x", 65)})
	if err != nil || w.Code != 502 || !strings.Contains(w.Body.String(), "the response is larger than max_body") {
		t.Errorf("overflow: %d %v %q", w.Code, err, w.Body)
	}
	// the configured response type
	w, _ = handlertest.Serve(t, m, req("GET"), &handlertest.Next{Body: `{}`})
	if w.Header().Get("Content-Type") != "application/jwt" {
		t.Errorf("response type %q", w.Header().Get("Content-Type"))
	}
	boom := errors.New("app down")
	if _, err := handlertest.Serve(t, m, req("GET"), failing{boom}); !errors.Is(err, boom) {
		t.Errorf("error %v", err)
	}
}

func TestJWEEncryptProvisionErrors(t *testing.T) {
	for name, m := range map[string]*JWEEncrypt{
		"negative max_body": {MaxBody: -1},
		"a128 algorithm":    {A128KeyAlgorithm: "dir"},
	} {
		if err := handlertest.TryProvision(t, m); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
}
