package fdxauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mxgate/mxgate/caddymodule/internal/readiness"
	"github.com/mxgate/mxgate/fdx"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

var serial atomic.Int64

// issue makes a certificate for tmpl signed by parent (self-signed when
// nil) and returns it with its key.
func issue(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
}

// writeKeyPair writes a self-signed certificate and its key to dir.
func writeKeyPair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	cert, key := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}}, nil, nil)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", cert.Raw)
	writeKey(t, keyFile, key)
	return certFile, keyFile
}

// privateCA is a CA of the bank's own, its PEM file, and a leaf it issued.
type privateCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newPrivateCA(t *testing.T, dir, name string) *privateCA {
	t.Helper()
	cert, key := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	ca := &privateCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.file, "CERTIFICATE", cert.Raw)
	return ca
}

// leaf issues a certificate for 127.0.0.1 (server and client use).
func (ca *privateCA) leaf(t *testing.T, name string) tls.Certificate {
	t.Helper()
	cert, key := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, ca.cert, ca.key)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// leafFiles writes a leaf's certificate and key to dir.
func (ca *privateCA) leafFiles(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	l := ca.leaf(t, name)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", l.Certificate[0])
	writeKey(t, keyFile, l.PrivateKey.(*ecdsa.PrivateKey))
	return certFile, keyFile
}

// tlsAS is a stand-in authorization server over TLS with a certificate
// from a private CA: metadata at OpenID Connect's well-known URI (with
// mutual-TLS aliases), its JWKS, and an introspection endpoint that
// records how each caller authenticated. Client certificates from
// clientCA are verified when given.
type tlsAS struct {
	*httptest.Server
	key      *ecdsa.PrivateKey
	mu       sync.Mutex
	answer   map[string]any
	form     url.Values
	header   http.Header
	peer     *x509.Certificate // the verified client certificate of the last introspection
	path     string            // the last introspection path
	metadata atomic.Int32
}

func newTLSAS(t *testing.T, ca *privateCA, clientCA *privateCA) *tlsAS {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	as := &tlsAS{key: k}
	as.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			as.metadata.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": as.URL, "jwks_uri": as.URL + "/jwks",
				"introspection_endpoint": as.URL + "/introspect", "token_endpoint": as.URL + "/token",
				"mtls_endpoint_aliases": map[string]any{"introspection_endpoint": as.URL + "/mtls/introspect"}})
		case "/jwks":
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		case "/introspect", "/mtls/introspect":
			_ = r.ParseForm()
			as.mu.Lock()
			as.form, as.header, as.path, as.peer = r.PostForm, r.Header.Clone(), r.URL.Path, nil
			if len(r.TLS.VerifiedChains) > 0 {
				as.peer = r.TLS.VerifiedChains[0][0]
			}
			answer := as.answer
			as.mu.Unlock()
			if answer == nil {
				answer = map[string]any{"active": false}
			}
			_ = json.NewEncoder(w).Encode(answer)
		default:
			http.NotFound(w, r)
		}
	}))
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, "as")}}
	if clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCA.cert)
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	as.TLS = cfg
	as.StartTLS()
	t.Cleanup(as.Close)
	return as
}

func (as *tlsAS) token(t *testing.T, cert *x509.Certificate) string {
	t.Helper()
	now := time.Now()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: as.key},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(map[string]any{"iss": as.URL, "aud": audience, "sub": "user-1", "client_id": "recipient-1",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": "fdx:accountbasic:read",
		"cnf": map[string]string{"x5t#S256": fdx.Thumbprint(cert)}}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (as *tlsAS) last() (url.Values, http.Header, *x509.Certificate, string) {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.form, as.header, as.peer, as.path
}

// unready returns the readiness failures that name fdx_auth.
func unready(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	for _, f := range readiness.Check(ctx) {
		if strings.HasPrefix(f, "fdx_auth") {
			out = append(out, f)
		}
	}
	return strings.Join(out, "\n")
}

func filePool(files ...string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"provider": "file", "pem_files": files})
	return b
}

// TestFDXAuthTrustPool: an authorization server whose certificate comes
// from a private CA is trusted through tls_trust_pool, for these
// connections only (http.DefaultTransport is untouched); without the pool,
// or with another CA's, each request is 503, the failure is logged once
// with its cause, and readiness names the cause.
func TestFDXAuthTrustPool(t *testing.T) {
	dir := t.TempDir()
	ca, other := newPrivateCA(t, dir, "as-ca"), newPrivateCA(t, dir, "other-ca")
	as := newTLSAS(t, ca, nil)
	cert := clientCert(t, "recipient-1")
	tok := as.token(t, cert)
	certEnv := os.Getenv("SSL_CERT_FILE")

	for name, pool := range map[string]json.RawMessage{"no pool": nil, "another CA": filePool(other.file)} {
		a, logs := newFDXAuth(t, &FDXAuth{Issuer: as.URL, JWKSURL: as.URL + "/jwks?tenant=s3cr3t", TLSTrustPoolRaw: pool})
		for range 3 {
			w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", tok, cert), &handlertest.Next{})
			if w.Code != 503 {
				t.Fatalf("%s: %d %s", name, w.Code, w.Body)
			}
		}
		lines := logs.FilterMessageSnippet("JWKS could not be fetched").All()
		if len(lines) != 1 {
			t.Fatalf("%s: the failure logged %d times", name, len(lines))
		}
		cause, _ := lines[0].ContextMap()["cause"].(string)
		if !strings.Contains(cause, "certificate signed by unknown authority") || strings.Contains(cause, "s3cr3t") || !strings.Contains(cause, as.URL+"/jwks") {
			t.Errorf("%s: cause %q", name, cause)
		}
		if r := unready(t); !strings.Contains(r, "fdx_auth JWKS: no signing key could be fetched: ") || !strings.Contains(r, "certificate signed by unknown authority") || strings.Contains(r, "s3cr3t") {
			t.Errorf("%s: readiness %q", name, r)
		}
		_ = a.Cleanup()
	}

	a, _ := newFDXAuth(t, &FDXAuth{Issuer: as.URL, JWKSURL: as.URL + "/jwks", TLSTrustPoolRaw: filePool(ca.file)})
	if w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", tok, cert), &handlertest.Next{}); w.Code != 200 {
		t.Fatalf("with the private CA: %d %s", w.Code, w.Body)
	}
	if r := unready(t); r != "" {
		t.Errorf("readiness %q", r)
	}
	if c := http.DefaultTransport.(*http.Transport).TLSClientConfig; (c != nil && (c.RootCAs != nil || len(c.Certificates) > 0)) || os.Getenv("SSL_CERT_FILE") != certEnv {
		t.Fatal("the process-wide transport or environment changed")
	}
	// the process's default client still does not trust the private CA
	if resp, err := http.Get(as.URL + "/jwks"); err == nil {
		resp.Body.Close()
		t.Fatal("the private CA became trusted process-wide")
	}
}

// TestFDXAuthDiscoveryAndMutualTLS: with the issuer alone (and the
// private CA), the JWKS and introspection endpoints are discovered;
// introspection with tls_client_auth presents the client certificate, uses
// the server's mutual-TLS alias, names the client and sends no secret.
func TestFDXAuthDiscoveryAndMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, clients := newPrivateCA(t, dir, "as-ca"), newPrivateCA(t, dir, "clients-ca")
	as := newTLSAS(t, ca, clients)
	certFile, keyFile := clients.leafFiles(t, dir, "gateway")
	cert := clientCert(t, "recipient-1")
	on := true
	a, _ := newFDXAuth(t, &FDXAuth{Issuer: as.URL, TLSTrustPoolRaw: filePool(ca.file),
		TLSClientAuth: &FDXClientCertificate{CertFile: certFile, KeyFile: keyFile},
		Introspection: &FDXIntrospection{ClientID: "rs-gateway", Auth: AuthTLSClientAuth, RequireAudience: &on}})
	if w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", as.token(t, cert), cert), &handlertest.Next{}); w.Code != 200 {
		t.Fatalf("a JWT through the discovered JWKS: %d %s", w.Code, w.Body)
	}
	as.mu.Lock()
	as.answer = map[string]any{"active": true, "aud": audience, "client_id": "recipient-1", "scope": "fdx:accountbasic:read",
		"exp": time.Now().Add(time.Hour).Unix(), "cnf": map[string]string{"x5t#S256": fdx.Thumbprint(cert)}}
	as.mu.Unlock()
	if w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-1", cert), &handlertest.Next{}); w.Code != 200 {
		t.Fatalf("an opaque token through the discovered introspection endpoint: %d %s", w.Code, w.Body)
	}
	form, hdr, peer, path := as.last()
	if path != "/mtls/introspect" || peer == nil || peer.Subject.CommonName != "gateway" || form.Get("client_id") != "rs-gateway" ||
		hdr.Get("Authorization") != "" || form.Has("client_secret") || form.Has("client_assertion") {
		t.Fatalf("introspection: path %s, peer %v, form %v, header %v", path, peer, form, hdr)
	}
	if n := as.metadata.Load(); n != 1 {
		t.Errorf("the metadata fetched %d times", n)
	}
	if r := unready(t); r != "" {
		t.Errorf("readiness %q", r)
	}
}

// TestFDXAuthPrivateKeyJWT: introspection with private_key_jwt sends an
// assertion the authorization server verifies with the client's public
// key, for the issuer, and no secret.
func TestFDXAuthPrivateKeyJWT(t *testing.T) {
	dir := t.TempDir()
	ca := newPrivateCA(t, dir, "as-ca")
	as := newTLSAS(t, ca, nil)
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "rs-key.pem")
	writeKey(t, keyFile, clientKey)
	a, _ := newFDXAuth(t, &FDXAuth{Issuer: as.URL, JWKSURL: as.URL + "/jwks", TLSTrustPoolRaw: filePool(ca.file),
		Introspection: &FDXIntrospection{URL: as.URL + "/introspect", ClientID: "rs-gateway", Auth: AuthPrivateKeyJWT, KeyFile: keyFile, KeyID: "rs-1"}})
	handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-1", clientCert(t, "r")), &handlertest.Next{})
	form, hdr, _, _ := as.last()
	assertion, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || hdr.Get("Authorization") != "" || form.Get("client_id") != "rs-gateway" {
		t.Fatalf("%v: form %v", err, form)
	}
	var c jwt.Claims
	if err := assertion.Claims(&clientKey.PublicKey, &c); err != nil || c.Issuer != "rs-gateway" || c.Subject != "rs-gateway" ||
		!c.Audience.Contains(as.URL) || assertion.Headers[0].KeyID != "rs-1" {
		t.Fatalf("assertion %+v %v", c, err)
	}
}

// TestFDXAuthIntrospectionAudience: an active answer without aud is
// refused by default and accepted with introspection_require_aud off; one
// without iss is accepted.
func TestFDXAuthIntrospectionAudience(t *testing.T) {
	dir := t.TempDir()
	ca := newPrivateCA(t, dir, "as-ca")
	as := newTLSAS(t, ca, nil)
	cert := clientCert(t, "recipient-1")
	as.answer = map[string]any{"active": true, "client_id": "recipient-1", "scope": "fdx:accountbasic:read",
		"exp": time.Now().Add(time.Hour).Unix(), "cnf": map[string]string{"x5t#S256": fdx.Thumbprint(cert)}}
	off := false
	for _, require := range []*bool{nil, &off} {
		a, _ := newFDXAuth(t, &FDXAuth{Issuer: as.URL, TLSTrustPoolRaw: filePool(ca.file),
			Introspection: &FDXIntrospection{URL: as.URL + "/introspect", ClientID: "rs", ClientSecret: "s", RequireAudience: require}})
		w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-1", cert), &handlertest.Next{})
		switch {
		case require == nil && (w.Code != 401 || !strings.Contains(w.Body.String(), "aud missing")):
			t.Errorf("default: %d %s", w.Code, w.Body)
		case require != nil && w.Code != 200:
			t.Errorf("introspection_require_aud off: %d %s", w.Code, w.Body)
		}
		if a.validator != nil {
			t.Error("JWTs checked locally though introspection has a URL and no jwks_url is given")
		}
	}
}

// TestFDXAuthIntrospectionFailureLogged: an introspection endpoint that
// refuses the gateway's credentials is logged once with its status, never
// with the secret; readiness names it.
func TestFDXAuthIntrospectionFailureLogged(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	a, logs := newFDXAuth(t, &FDXAuth{Introspection: &FDXIntrospection{URL: srv.URL + "/introspect?key=s3cr3t", ClientID: "rs", ClientSecret: "hunter2"}})
	cert := clientCert(t, "recipient-1")
	for i := range 3 {
		w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-"+string(rune('a'+i)), cert), &handlertest.Next{})
		if w.Code != 503 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	lines := logs.FilterMessageSnippet("introspection endpoint failed").All()
	if len(lines) != 1 {
		t.Fatalf("logged %d times", len(lines))
	}
	cause, _ := lines[0].ContextMap()["cause"].(string)
	if !strings.Contains(cause, "answered 401") || strings.Contains(cause, "s3cr3t") || strings.Contains(cause, "hunter2") {
		t.Errorf("cause %q", cause)
	}
	if r := unready(t); !strings.Contains(r, "fdx_auth introspection: the endpoint does not answer: ") || !strings.Contains(r, "answered 401") {
		t.Errorf("readiness %q", r)
	}
	for _, e := range logs.All() {
		if b, _ := json.Marshal(e.ContextMap()); strings.Contains(string(b)+e.Message, "hunter2") {
			t.Fatalf("a secret in the log: %s", e.Message)
		}
	}
}

// TestFDXAuthJWKSMaxAgeDefault: the defaults of the key set's bounds.
func TestFDXAuthJWKSDefaults(t *testing.T) {
	a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: "https://as.example/jwks"})
	if a.jwks.MinRefresh != 0 || a.jwks.MaxAge != 0 || a.discovery != nil {
		t.Errorf("%+v", a.jwks)
	}
	b, _ := newFDXAuth(t, &FDXAuth{JWKSMinRefresh: caddy.Duration(3 * time.Second), JWKSMaxAge: caddy.Duration(time.Hour)})
	if b.jwks.MinRefresh != 3*time.Second || b.jwks.MaxAge != time.Hour || b.jwks.URL != "" || b.jwks.Locate == nil || b.discovery == nil || b.introspect != nil {
		t.Errorf("%+v", b.jwks)
	}
}
