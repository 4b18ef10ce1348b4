package fdx

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// waitClock makes a JWKS's waits wait for the test's clock: a waiter
// returns once the clock has reached the time it waits for.
func waitClock(c *clock) func(ctx context.Context, d time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		until := c.Now().Add(d)
		for c.Now().Before(until) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		return nil
	}
}

// TestJWKSRotationWithinMinRefresh: keys published and used one after the
// other, faster than MinRefresh, are each accepted at their first token:
// the token that comes too soon after the last refetch waits for the next
// one instead of being refused.
func TestJWKSRotationWithinMinRefresh(t *testing.T) {
	a := newAuthServer(t)
	c := &clock{t: testNow}
	jwks := &JWKS{URL: a.URL + "/jwks", Now: c.Now}
	jwks.sleep = func(_ context.Context, d time.Duration) error { c.Add(d); return nil }
	ctx := context.Background()
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); err != nil {
		t.Fatal(err)
	}
	for i, kid := range []string{"es-2", "es-3", "es-4"} {
		a.addKey(t, kid, jose.ES256) // published and used at once
		c.Add(100 * time.Millisecond)
		if _, err := jwks.Key(ctx, kid, jose.ES256); err != nil {
			t.Fatalf("rotation %d to %s: %v", i, kid, err)
		}
		if n := jwks.Fetches(); n != i+2 {
			t.Fatalf("rotation %d: %d fetches, want %d", i, n, i+2)
		}
	}
	// with a MinRefresh far longer than the wait bound, a token too soon
	// is refused at once, as before
	long := &JWKS{URL: a.URL + "/jwks", MinRefresh: time.Minute, Now: c.Now}
	long.sleep = func(context.Context, time.Duration) error { t.Fatal("waited a minute"); return nil }
	long.Key(ctx, "es-1", jose.ES256)
	long.Key(ctx, "es-2", jose.ES256) // fetched: es-2 known already
	if _, err := long.Key(ctx, "nope", jose.ES256); !errors.Is(err, ErrUnknownKey) {
		t.Fatal(err)
	}
	if _, err := long.Key(ctx, "nope-2", jose.ES256); !errors.Is(err, ErrUnknownKey) || long.Fetches() != 2 {
		t.Fatalf("%v after %d fetches", err, long.Fetches())
	}
}

// TestJWKSKidFloodBound: a flood of random key ids, ten every 100ms for
// ten seconds of the injected clock, costs at most one fetch a second
// (plus the first), and every such token is refused as an unknown key.
func TestJWKSKidFloodBound(t *testing.T) {
	a := newAuthServer(t)
	c := &clock{t: testNow}
	jwks := &JWKS{URL: a.URL + "/jwks", Now: c.Now}
	var waiting, finished atomic.Int32
	wait := waitClock(c)
	jwks.sleep = func(ctx context.Context, d time.Duration) error {
		waiting.Add(1)
		defer waiting.Add(-1)
		return wait(ctx, d)
	}
	ctx := context.Background()
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); err != nil {
		t.Fatal(err)
	}
	const seconds = 10
	start := c.Now()
	var wg sync.WaitGroup
	var refused atomic.Int32
	for step := range seconds * 10 {
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer finished.Add(1)
				if _, err := jwks.Key(ctx, fmt.Sprintf("random-%d-%d", step, i), jose.ES256); errors.Is(err, ErrUnknownKey) {
					refused.Add(1)
				} else {
					t.Errorf("random kid: %v", err)
				}
			}()
		}
		// every lookup so far is done or waits for the clock
		for int(finished.Load()+waiting.Load()) < (step+1)*10 {
			time.Sleep(100 * time.Microsecond)
		}
		c.Add(100 * time.Millisecond)
	}
	// the clock goes on until the last waiters are done
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(time.Millisecond):
			c.Add(10 * time.Millisecond)
		}
	}
	if refused.Load() != seconds*100 {
		t.Fatalf("%d of %d random kids refused", refused.Load(), seconds*100)
	}
	// one fetch a second at most over the flood, and the first
	elapsed := c.Now().Sub(start)
	t.Logf("%d fetches over %v", jwks.Fetches(), elapsed)
	if n, most := jwks.Fetches(), int(elapsed/time.Second)+2; n > most || n < 2 {
		t.Fatalf("%d JWKS fetches for a flood of random kids over %v, want at most %d", n, elapsed, most)
	}
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); err != nil {
		t.Fatalf("the real key after the flood: %v", err)
	}
}

// TestJWKSRemovedKey: a key the server removed is accepted until the set
// is older than MaxAge; its next use then fetches the set in the
// background, and after that fetch the key is refused.
func TestJWKSRemovedKey(t *testing.T) {
	a := newAuthServer(t)
	a.addKey(t, "es-2", jose.ES256)
	c := &clock{t: testNow}
	jwks := &JWKS{URL: a.URL + "/jwks", MaxAge: time.Minute, Now: c.Now}
	ctx := context.Background()
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); err != nil {
		t.Fatal(err)
	}
	a.keys = a.keys[1:] // es-1 withdrawn
	c.Add(59 * time.Second)
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); err != nil || jwks.Fetches() != 1 {
		t.Fatalf("within MaxAge: %v, %d fetches", err, jwks.Fetches())
	}
	c.Add(time.Second)
	jwks.Key(ctx, "es-1", jose.ES256) // starts the background fetch
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, gen := jwks.value().Load(); gen == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background fetch did not finish")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a removed key after the fetch: %v", err)
	}
	if _, err := jwks.Key(ctx, "es-2", jose.ES256); err != nil {
		t.Fatalf("the remaining key: %v", err)
	}
}

// TestJWKSHostile: a JWKS larger than MaxBytes, one that does not parse,
// one with no usable key, a redirect and a server that answers too slowly
// each fail the fetch with a cause that says so and names no query; a key
// of an unknown type beside a good one is skipped, not the whole set.
func TestJWKSHostile(t *testing.T) {
	good, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	goodJWK, _ := json.Marshal(jose.JSONWebKey{Key: &good.PublicKey, KeyID: "good", Algorithm: "ES256", Use: "sig"})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/huge":
			io.WriteString(w, `{"keys":[`+strings.Repeat(`{"kty":"oct","k":"AAAA"},`, 50000)+`]}`)
		case "/garbage":
			io.WriteString(w, `<html>`)
		case "/empty":
			io.WriteString(w, `{"keys":[{"kty":"oct","k":"AAAA"},{"kty":"RSA","n":"AQAB","e":"AQAB","use":"enc"}]}`)
		case "/redirect":
			http.Redirect(w, r, "/mixed", http.StatusFound)
		case "/slow":
			w.Write([]byte(`{"keys":[`))
			w.(http.Flusher).Flush()
			<-release
		case "/mixed":
			io.WriteString(w, `{"keys":[{"kty":"AKP","alg":"ML-DSA-44","pub":"AAAA","kid":"pq"},`+string(goodJWK)+`]}`)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	ctx := context.Background()
	for path, want := range map[string]string{
		"/huge":     "larger than",
		"/garbage":  "does not parse",
		"/empty":    "no usable signing key",
		"/redirect": "status 302 (redirects are not followed)",
		"/slow":     "Client.Timeout",
	} {
		jwks := &JWKS{URL: srv.URL + path + "?secret=s3cr3t", MaxBytes: 1 << 20,
			Client: &http.Client{Timeout: 200 * time.Millisecond, CheckRedirect: NoRedirects}}
		_, err := jwks.Key(ctx, "good", jose.ES256)
		cause := Cause(jwks.Failing())
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(cause, want) || strings.Contains(cause, "s3cr3t") {
			t.Errorf("%s: %v; cause %q", path, err, cause)
		}
	}
	jwks := &JWKS{URL: srv.URL + "/mixed"}
	if _, err := jwks.Key(ctx, "good", jose.ES256); err != nil {
		t.Fatalf("a set with a key of an unknown type: %v", err)
	}
}

// TestCause: a URL in an error loses its query and user information; a
// long cause is cut.
func TestCause(t *testing.T) {
	err := fmt.Errorf("fetching: %w", &url.Error{Op: "Get", URL: "https://user:pw@as.example/jwks?key=s3cr3t#x", Err: errors.New("x509: certificate signed by unknown authority")})
	got := Cause(err)
	if got != "fetching: Get https://as.example/jwks: x509: certificate signed by unknown authority" {
		t.Fatalf("%q", got)
	}
	if got := Cause(errors.New(strings.Repeat("é", 400))); len(got) > CauseMax || !strings.HasSuffix(got, "...") {
		t.Fatalf("%d bytes", len(got))
	}
	if Cause(nil) != "" {
		t.Fatal("a cause for no error")
	}
}

// metadataServer serves discovery documents over TLS: status 404 for
// RFC 8414's well-known URI unless oauth is set.
func metadataServer(t *testing.T, doc func(base string) map[string]any, oauth bool) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch {
		case r.URL.Path == "/.well-known/oauth-authorization-server/tenant" && oauth,
			r.URL.Path == "/tenant/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(doc(srv.URL))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// TestDiscovery: RFC 8414's well-known URI first, then OpenID Connect's;
// the document's issuer must be the configured one and an https issuer's
// endpoints https; the metadata is fetched once, and again in the
// background past MaxAge.
func TestDiscovery(t *testing.T) {
	good := func(base string) map[string]any {
		return map[string]any{"issuer": base + "/tenant", "jwks_uri": base + "/jwks", "introspection_endpoint": base + "/introspect",
			"mtls_endpoint_aliases": map[string]any{"introspection_endpoint": base + "/mtls/introspect"}}
	}
	for _, oauth := range []bool{true, false} {
		srv, calls := metadataServer(t, good, oauth)
		c := &clock{t: testNow}
		d := &Discovery{Issuer: srv.URL + "/tenant", Client: srv.Client(), Now: c.Now}
		md, err := d.Metadata(context.Background())
		if err != nil || md.JWKSURI != srv.URL+"/jwks" || md.IntrospectionURL(true) != srv.URL+"/mtls/introspect" || md.IntrospectionURL(false) != srv.URL+"/introspect" {
			t.Fatalf("oauth %v: %+v %v", oauth, md, err)
		}
		want := int32(1)
		if !oauth {
			want = 2 // RFC 8414's first
		}
		for range 10 {
			d.Metadata(context.Background())
		}
		if calls.Load() != want {
			t.Fatalf("oauth %v: %d calls, want %d", oauth, calls.Load(), want)
		}
	}
	for name, tc := range map[string]struct {
		doc  func(base string) map[string]any
		want string
	}{
		"another issuer": {func(base string) map[string]any {
			return map[string]any{"issuer": "https://evil.example/tenant", "jwks_uri": base + "/jwks"}
		}, "is not the configured"},
		"http endpoint": {func(base string) map[string]any {
			return map[string]any{"issuer": base + "/tenant", "jwks_uri": "http://as.example/jwks"}
		}, "jwks_uri is not https"},
		"relative endpoint": {func(base string) map[string]any {
			return map[string]any{"issuer": base + "/tenant", "introspection_endpoint": "/introspect"}
		}, "not an absolute http(s) URL"},
		"wrong types": {func(base string) map[string]any {
			return map[string]any{"issuer": base + "/tenant", "jwks_uri": 42}
		}, "does not parse"},
	} {
		srv, _ := metadataServer(t, tc.doc, true)
		d := &Discovery{Issuer: srv.URL + "/tenant", Client: srv.Client()}
		if _, err := d.Metadata(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// none found: both URIs named in the cause
	srv, _ := metadataServer(t, good, true)
	d := &Discovery{Issuer: srv.URL + "/elsewhere", Client: srv.Client()}
	if _, err := d.Metadata(context.Background()); err == nil || !strings.Contains(err.Error(), "oauth-authorization-server/elsewhere answered 404") ||
		!strings.Contains(err.Error(), "/elsewhere/.well-known/openid-configuration answered 404") {
		t.Fatalf("nothing to discover: %v", err)
	}
	// an untrusted server: the cause says so
	d = &Discovery{Issuer: srv.URL + "/tenant"}
	if _, err := d.Metadata(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an untrusted certificate: %v", err)
	}
}

// TestDiscoveryMaxAge: past MaxAge, the metadata in hand is returned and
// fetched again in the background.
func TestDiscoveryMaxAge(t *testing.T) {
	n := atomic.Int32{}
	srv, calls := metadataServer(t, func(base string) map[string]any {
		return map[string]any{"issuer": base + "/tenant", "jwks_uri": fmt.Sprintf("%s/jwks/%d", base, n.Add(1))}
	}, true)
	c := &clock{t: testNow}
	d := &Discovery{Issuer: srv.URL + "/tenant", Client: srv.Client(), MaxAge: time.Hour, Now: c.Now}
	md, _ := d.Metadata(context.Background())
	c.Add(time.Hour)
	if md2, _ := d.Metadata(context.Background()); md2.JWKSURI != md.JWKSURI {
		t.Fatal("past MaxAge, the call waited for a new fetch")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if md2, _ := d.Metadata(context.Background()); md2.JWKSURI != md.JWKSURI {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no background fetch past MaxAge (%d calls)", calls.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWellKnownURLs(t *testing.T) {
	for issuer, want := range map[string][2]string{
		"https://as.example":         {"https://as.example/.well-known/oauth-authorization-server", "https://as.example/.well-known/openid-configuration"},
		"https://as.example/":        {"https://as.example/.well-known/oauth-authorization-server", "https://as.example/.well-known/openid-configuration"},
		"https://as.example:8443/t1": {"https://as.example:8443/.well-known/oauth-authorization-server/t1", "https://as.example:8443/t1/.well-known/openid-configuration"},
	} {
		got := WellKnownURLs(issuer)
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("%s: %q", issuer, got)
		}
	}
	for _, bad := range []string{"as.example", "https://as.example/?tenant=1", "https://as.example/#x", "ftp://as.example", "https://u:p@as.example"} {
		if CheckIssuer(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// answerServer answers every introspection request with body, status
// 200, and records the last form and headers it received.
type answerServer struct {
	*httptest.Server
	mu   sync.Mutex
	body string
	form url.Values
	hdr  http.Header
}

func newAnswerServer(t *testing.T) *answerServer {
	s := &answerServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		s.mu.Lock()
		s.form, s.hdr = r.PostForm, r.Header.Clone()
		body := s.body
		s.mu.Unlock()
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *answerServer) answer(body string) { s.mu.Lock(); s.body = body; s.mu.Unlock() }

// TestIntrospectionAnswers: iss may be absent, not wrong; aud is required
// unless AllowMissingAudience, and a wrong one is refused either way; an
// answer of the wrong shape is the endpoint failing (ErrUnavailable),
// never a token accepted.
func TestIntrospectionAnswers(t *testing.T) {
	s := newAnswerServer(t)
	exp := testNow.Add(time.Hour).Unix()
	for i, tc := range []struct {
		body       string
		allowNoAud bool
		want       string // "" accepted; "unavailable"; or the refusal's reason
	}{
		{fmt.Sprintf(`{"active":true,"aud":"https://fdx.example","exp":%d}`, exp), false, ""},
		{fmt.Sprintf(`{"active":true,"iss":"https://as.example","aud":["x","https://fdx.example"],"exp":%d}`, exp), false, ""},
		{fmt.Sprintf(`{"active":true,"iss":"https://evil.example","aud":"https://fdx.example","exp":%d}`, exp), false, "wrong issuer"},
		{fmt.Sprintf(`{"active":true,"exp":%d}`, exp), false, "aud missing"},
		{fmt.Sprintf(`{"active":true,"aud":[],"exp":%d}`, exp), false, "aud missing"},
		{fmt.Sprintf(`{"active":true,"aud":null,"exp":%d}`, exp), false, "aud missing"},
		{fmt.Sprintf(`{"active":true,"exp":%d}`, exp), true, ""},
		{fmt.Sprintf(`{"active":true,"aud":"https://other.example","exp":%d}`, exp), true, "wrong audience"},
		{fmt.Sprintf(`{"active":true,"aud":42,"exp":%d}`, exp), true, "wrong audience"},
		{`{"active":false,"aud":"https://fdx.example"}`, false, "not active"},
		{`{"active":"true","aud":"https://fdx.example"}`, false, "unavailable"},
		{`{"aud":"https://fdx.example"}`, false, "unavailable"},
		{`{"active":true,"aud":"https://fdx.example","exp":"tomorrow"}`, false, "unavailable"},
		{`{"active":true,"aud":"https://fdx.example","scope":["a","b"]}`, false, "unavailable"},
		{`{"active":true,"aud":"https://fdx.example","cnf":"x"}`, false, "unavailable"},
		{`[{"active":true}]`, false, "unavailable"},
		{`null`, false, "unavailable"},
		{`{"active":true,"aud":"https://fdx.example"`, false, "unavailable"},
		{`{"active":true,"aud":"https://fdx.example","pad":"` + strings.Repeat("x", 1<<20) + `"}`, false, "unavailable"},
	} {
		s.answer(tc.body)
		in := &Introspector{URL: s.URL, ClientID: "rs", ClientSecret: "s", Issuer: "https://as.example",
			Audiences: []string{"https://fdx.example"}, AllowMissingAudience: tc.allowNoAud, Now: func() time.Time { return testNow }}
		c, err := in.Introspect(context.Background(), "tok")
		var te *TokenError
		switch {
		case tc.want == "" && (err != nil || c == nil):
			t.Errorf("%d: refused: %v", i, err)
		case tc.want == "unavailable" && (!errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken)):
			t.Errorf("%d: %v, want unavailable", i, err)
		case tc.want != "" && tc.want != "unavailable" && (!errors.As(err, &te) || !strings.Contains(te.Reason, tc.want)):
			t.Errorf("%d: %v, want %q", i, err, tc.want)
		}
		if tc.want == "" && c.Issuer != "https://as.example" {
			t.Errorf("%d: issuer %q", i, c.Issuer)
		}
	}
}

// TestIntrospectionClientAuth: client_secret_basic sends the id and secret
// in the header only; tls_client_auth the client_id in the form and no
// secret; private_key_jwt a fresh assertion each call, signed with the
// key, for the issuer, that verifies with the public key.
func TestIntrospectionClientAuth(t *testing.T) {
	s := newAnswerServer(t)
	s.answer(`{"active":false}`)
	ctx := context.Background()
	in := &Introspector{URL: s.URL, ClientID: "rs client", ClientSecret: "p@ss:word"}
	in.Introspect(ctx, "t1")
	if id, secret, ok := (&http.Request{Header: s.hdr}).BasicAuth(); !ok || id != "rs+client" || secret != "p%40ss%3Aword" || s.form.Has("client_secret") {
		t.Fatalf("basic: %q %q %v; form %v", id, secret, ok, s.form)
	}
	in = &Introspector{URL: s.URL, Auth: TLSClientAuth{ClientID: "rs"}}
	in.Introspect(ctx, "t2")
	if s.hdr.Get("Authorization") != "" || s.form.Get("client_id") != "rs" || s.form.Has("client_assertion") {
		t.Fatalf("tls_client_auth: %v %v", s.hdr, s.form)
	}
	for _, key := range []crypto.Signer{mustEC(t), mustRSA(t)} {
		pk := PrivateKeyJWT{ClientID: "rs", Audience: "https://as.example", Key: key}
		in = &Introspector{URL: s.URL, Auth: pk}
		seen := map[string]bool{}
		for i := range 3 {
			in.Introspect(ctx, fmt.Sprintf("t3-%d", i))
			if s.form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || s.hdr.Get("Authorization") != "" {
				t.Fatalf("private_key_jwt: %v", s.form)
			}
			alg, _ := AlgorithmFor(key)
			tok, err := jwt.ParseSigned(s.form.Get("client_assertion"), []jose.SignatureAlgorithm{alg})
			if err != nil {
				t.Fatal(err)
			}
			var cl jwt.Claims
			if err := tok.Claims(key.Public(), &cl); err != nil {
				t.Fatalf("the assertion does not verify: %v", err)
			}
			if cl.Issuer != "rs" || cl.Subject != "rs" || !cl.Audience.Contains("https://as.example") || cl.ID == "" || seen[cl.ID] ||
				cl.Expiry == nil || cl.IssuedAt == nil || cl.Expiry.Time().Sub(cl.IssuedAt.Time()) != time.Minute {
				t.Fatalf("claims %+v", cl)
			}
			seen[cl.ID] = true
		}
	}
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestParsePrivateKeyPEM: PKCS #8, PKCS #1 and SEC 1 keys are read; a
// short RSA key, a certificate alone and garbage are refused.
func TestParsePrivateKeyPEM(t *testing.T) {
	ec := mustEC(t)
	p8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	rsaKey := mustRSA(t)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, tc := range map[string]struct {
		pem string
		ok  bool
	}{
		"pkcs8":     {string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})), true},
		"sec1":      {"junk\n" + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})), true},
		"pkcs1":     {string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})), true},
		"rsa 1024":  {string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)})), false},
		"no key":    {string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})), false},
		"bad bytes": {string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("s3cr3t")})), false},
	} {
		_, err := ParsePrivateKeyPEM([]byte(tc.pem))
		if (err == nil) != tc.ok || (err != nil && strings.Contains(err.Error(), "s3cr3t")) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
