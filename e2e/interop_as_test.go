package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// The interop tests put fdx_auth in front of a real, OpenID Certified
// authorization server, oidc-provider, run by testdata/as/as.mjs at the
// version testdata/as/package.json pins, behind a private CA, with tokens
// obtained by real protocol flows (client credentials over mutual TLS).

// interopCA is a CA made for one test: the bank's private CA for its
// authorization server, or the CA of the data recipients' certificates.
type interopCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

var interopSerial atomic.Int64

func interopCert(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(interopSerial.Add(1) + time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
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

func newInteropCA(t *testing.T, dir, name string) *interopCA {
	t.Helper()
	cert, key := interopCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil, nil)
	ca := &interopCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writeInteropPEM(t, ca.file, "CERTIFICATE", cert.Raw)
	return ca
}

// interopLeaf is a certificate, its files and its key pair.
type interopLeaf struct {
	certFile, keyFile string
	pair              tls.Certificate
}

// issue makes a certificate named CN=name for 127.0.0.1 and localhost,
// for servers and clients alike.
func (ca *interopCA) issue(t *testing.T, dir, name string) interopLeaf {
	t.Helper()
	cert, key := interopCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, ca.cert, ca.key)
	l := interopLeaf{certFile: filepath.Join(dir, name+".pem"), keyFile: filepath.Join(dir, name+"-key.pem")}
	writeInteropPEM(t, l.certFile, "CERTIFICATE", cert.Raw)
	writeInteropKey(t, l.keyFile, key)
	l.pair = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	return l
}

func (ca *interopCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func writeInteropPEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeInteropKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeInteropPEM(t, path, "PRIVATE KEY", der)
}

// signingKey is a new ES256 private JWK for the authorization server.
func signingKey(t *testing.T, kid string) map[string]any {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: "ES256", Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m
}

// oidcProvider returns the node program, with oidc-provider installed
// beside as.mjs at the version package.json pins. Under CI a missing
// Node.js or package fails the test; elsewhere it is skipped with a note.
func oidcProvider(t *testing.T) string {
	t.Helper()
	var pinned struct{ Dependencies map[string]string }
	b, err := os.ReadFile("testdata/as/package.json")
	if err == nil {
		err = json.Unmarshal(b, &pinned)
	}
	if err != nil || pinned.Dependencies["oidc-provider"] == "" {
		t.Fatalf("testdata/as/package.json pins no oidc-provider: %v", err)
	}
	node, err := exec.LookPath("node")
	var installed struct{ Version string }
	if err == nil {
		if b, err = os.ReadFile("testdata/as/node_modules/oidc-provider/package.json"); err == nil {
			err = json.Unmarshal(b, &installed)
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Node.js and testdata/as's npm packages are needed (make test installs them): %v", err)
		}
		t.Skip("Node.js or e2e/testdata/as/node_modules missing; `make test` installs them")
	}
	if want := pinned.Dependencies["oidc-provider"]; installed.Version != want {
		t.Fatalf("oidc-provider %s is installed, package.json pins %s: run npm ci --prefix e2e/testdata/as", installed.Version, want)
	}
	for name, want := range pinned.Dependencies { // dpop, the client library of the DPoP tests, too
		var dep struct{ Version string }
		if b, err := os.ReadFile("testdata/as/node_modules/" + name + "/package.json"); err != nil || json.Unmarshal(b, &dep) != nil || dep.Version != want {
			t.Fatalf("the npm package %s %s is not installed as package.json pins it: run npm ci --prefix e2e/testdata/as", name, want)
		}
	}
	return node
}

// realAS is a running oidc-provider.
type realAS struct {
	issuer string
	ca     *interopCA // its private CA
	mu     sync.Mutex
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	stderr *syncBuffer
}

// startRealAS runs as.mjs with cfg (its port and TLS files are filled in
// here) and waits until it listens.
func startRealAS(t *testing.T, node string, ca *interopCA, cfg map[string]any) *realAS {
	t.Helper()
	dir := t.TempDir()
	server := ca.issue(t, dir, "as")
	tlsCfg, _ := cfg["tls"].(map[string]any)
	if tlsCfg == nil {
		tlsCfg = map[string]any{}
	}
	tlsCfg["cert"], tlsCfg["key"] = server.certFile, server.keyFile
	cfg["tls"], cfg["port"] = tlsCfg, freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	c := exec.CommandContext(ctx, node, "as.mjs")
	c.Dir = "testdata/as"
	a := &realAS{ca: ca, stderr: &syncBuffer{}}
	c.Stderr = a.stderr
	var err error
	if a.stdin, err = c.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = a.stdin.Close()
		cancel()
		_ = c.Wait()
	})
	a.lines = bufio.NewScanner(stdout)
	a.lines.Buffer(make([]byte, 1<<20), 1<<20)
	line, _ := json.Marshal(cfg)
	if _, err := a.stdin.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		var v struct{ Issuer string }
		if a.lines.Scan() && json.Unmarshal(a.lines.Bytes(), &v) == nil {
			ready <- v.Issuer
		}
		close(ready)
	}()
	select {
	case a.issuer = <-ready:
	case <-time.After(60 * time.Second):
	}
	if a.issuer == "" {
		t.Fatalf("oidc-provider did not start:\n%s", a.stderr)
	}
	return a
}

// command sends one command and returns its answer.
func (a *realAS) command(t *testing.T, cmd map[string]any) map[string]any {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	line, _ := json.Marshal(cmd)
	if _, err := a.stdin.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if !a.lines.Scan() {
		t.Fatalf("as.mjs said nothing (%v):\n%s", a.lines.Err(), a.stderr)
	}
	if json.Unmarshal(a.lines.Bytes(), &v) != nil || v["error"] != nil {
		t.Fatalf("as.mjs: %s\n%s", a.lines.Bytes(), a.stderr)
	}
	return v
}

// hits returns how many requests reached path.
func (a *realAS) hits(t *testing.T, path string) int {
	t.Helper()
	paths, _ := a.command(t, map[string]any{"op": "stats"})["paths"].(map[string]any)
	n, _ := paths[path].(float64)
	return int(n)
}

// token obtains an access token by the client credentials grant over
// mutual TLS with cert (tls_client_auth), for scope and, if not empty,
// the resource indicator.
func (a *realAS) token(t *testing.T, cert tls.Certificate, clientID, scope, resource string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: a.ca.pool(), Certificates: []tls.Certificate{cert}}}}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "scope": {scope}}
	if resource != "" {
		form.Set("resource", resource)
	}
	resp, err := c.PostForm(a.issuer+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil || v.AccessToken == "" {
		t.Fatalf("token for %s (%s, %s): %d %s\n%s", clientID, scope, resource, resp.StatusCode, body, a.stderr)
	}
	return v.AccessToken
}

// tokenHeader decodes a JWT's header (kid, typ) to check what the
// server issued.
func tokenHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	var v map[string]any
	if err != nil || json.Unmarshal(raw, &v) != nil {
		t.Fatalf("not a JWT: %d bytes", len(tok))
	}
	return v
}

// fdxSite is one site of a gateway in front of the real authorization
// server, and the data recipients' clients of it.
type fdxSite struct {
	url string
	ca  *x509.CertPool // the gateway's server certificate's CA
}

// get sends GET path with token over mutual TLS with cert.
func (s fdxSite) get(t *testing.T, cert *tls.Certificate, path, token string) (int, string) {
	t.Helper()
	cfg := &tls.Config{RootCAs: s.ca, ServerName: "localhost"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

const interopScopes = "fdx:accountbasic:read fdx:transactions:read fdx:customercontact:read"

// interopPKI is the certificates of one interop test.
type interopPKI struct {
	dir               string
	bank              *interopCA // the authorization server's and the gateway's certificates
	clients           *interopCA // the data recipients' and the gateway's client certificates
	gateway           interopLeaf
	gatewayAsClient   interopLeaf
	recipientA        interopLeaf
	recipientB        interopLeaf
	assertionKey      *ecdsa.PrivateKey
	assertionKeyFile  string
	assertionKeyPubJW map[string]any
}

func newInteropPKI(t *testing.T) *interopPKI {
	t.Helper()
	p := &interopPKI{dir: t.TempDir()}
	p.bank, p.clients = newInteropCA(t, p.dir, "bank-private-ca"), newInteropCA(t, p.dir, "recipients-ca")
	p.gateway = p.bank.issue(t, p.dir, "localhost")
	p.gatewayAsClient = p.clients.issue(t, p.dir, "mxgate")
	p.recipientA, p.recipientB = p.clients.issue(t, p.dir, "recipient-a"), p.clients.issue(t, p.dir, "recipient-b")
	var err error
	if p.assertionKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	p.assertionKeyFile = filepath.Join(p.dir, "rs-assertion-key.pem")
	writeInteropKey(t, p.assertionKeyFile, p.assertionKey)
	raw, _ := json.Marshal(jose.JSONWebKey{Key: &p.assertionKey.PublicKey, Use: "sig"})
	_ = json.Unmarshal(raw, &p.assertionKeyPubJW)
	return p
}

// asConfig is the authorization server's registration of the recipients
// (tls_client_auth, certificate-bound tokens) and of the gateway as a
// client of its introspection endpoint (tls_client_auth or
// private_key_jwt), and its resource servers: rs.test with JWT access
// tokens, rs-opaque.test with opaque ones, other-rs.test elsewhere.
func (p *interopPKI) asConfig(keys ...map[string]any) map[string]any {
	recipient := func(id, dn string) map[string]any {
		return map[string]any{"client_id": id, "token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": dn,
			"tls_client_certificate_bound_access_tokens": true, "grant_types": []string{"client_credentials"},
			"response_types": []string{}, "redirect_uris": []string{}, "scope": interopScopes}
	}
	gateway := func(id, method string, extra map[string]any) map[string]any {
		c := map[string]any{"client_id": id, "token_endpoint_auth_method": method, "grant_types": []string{},
			"response_types": []string{}, "redirect_uris": []string{}}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	return map[string]any{
		"tls":  map[string]any{"clientCA": []string{p.clients.file}},
		"keys": keys,
		"clients": []map[string]any{
			recipient("recipient-a", "CN=recipient-a"),
			recipient("recipient-b", "CN=recipient-b"),
			recipient("recipient-short", "CN=recipient-a"),
			gateway("rs-mtls", "tls_client_auth", map[string]any{"tls_client_auth_subject_dn": "CN=mxgate"}),
			gateway("rs-pkjwt", "private_key_jwt", map[string]any{"jwks": map[string]any{"keys": []any{p.assertionKeyPubJW}}}),
		},
		"resources": map[string]any{
			"https://rs.test":        map[string]any{"scope": interopScopes, "format": "jwt", "alg": "ES256"},
			"https://rs-opaque.test": map[string]any{"scope": interopScopes, "format": "opaque"},
			"https://other-rs.test":  map[string]any{"scope": interopScopes, "format": "jwt", "alg": "ES256"},
		},
		"ttl": map[string]any{"recipient-short": 2},
	}
}

// site is a TLS site of a gateway: mutual TLS with the recipients' CA,
// fdx_auth with the given options, the upstream behind.
func (p *interopPKI) site(port int, fdxAuth, upstream string) string {
	return fmt.Sprintf(`https://localhost:%d {
	bind 127.0.0.1
	tls %s %s {
		client_auth {
			mode require_and_verify
			trust_pool file %s
		}
	}
	fdx_auth {
		%s
	}
	reverse_proxy %s
}
`, port, p.gateway.certFile, p.gateway.keyFile, p.clients.file, fdxAuth, upstream)
}

// TestInteropFDXAuthorizationServer: fdx_auth in front of oidc-provider
// behind a private CA, configured by its issuer alone and tls_trust_pool.
// Certificate-bound JWT access tokens and opaque tokens (introspected with
// tls_client_auth, and with private_key_jwt) are admitted; expired,
// wrong-audience, wrong-certificate, narrow-scope and audience-less
// tokens are refused, and none of those reaches the upstream.
func TestInteropFDXAuthorizationServer(t *testing.T) {
	t.Parallel()
	node := oidcProvider(t)
	p := newInteropPKI(t)
	as := startRealAS(t, node, p.bank, p.asConfig(signingKey(t, "k1")))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"accounts":[]}`) })
	mtlsPort, pkjwtPort, healthPort := freePort(t), freePort(t), freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	auto_https disable_redirects
	skip_install_trust
	log {
		format mxgate_redact
	}
}
%s
%s
http://127.0.0.1:%d {
	mx_health
}
`, p.site(mtlsPort, fmt.Sprintf(`issuer %s
		audience https://rs.test https://rs-opaque.test
		leeway 1s
		introspection discover rs-mtls
		introspection_auth tls_client_auth
		tls_trust_pool file %s
		tls_client_auth %s %s
		forward_claims {
			client_id X-FDX-Client
		}`, as.issuer, p.bank.file, p.gatewayAsClient.certFile, p.gatewayAsClient.keyFile), up.hostPort()),
		p.site(pkjwtPort, fmt.Sprintf(`issuer %s
		audience https://rs.test https://rs-opaque.test
		introspection discover rs-pkjwt
		introspection_auth private_key_jwt %s
		introspection_require_aud off
		tls_trust_pool file %s`, as.issuer, p.assertionKeyFile, p.bank.file), up.hostPort()),
		healthPort))
	mtls := fdxSite{url: fmt.Sprintf("https://localhost:%d", mtlsPort), ca: p.bank.pool()}
	pkjwt := fdxSite{url: fmt.Sprintf("https://localhost:%d", pkjwtPort), ca: p.bank.pool()}
	a, b := &p.recipientA.pair, &p.recipientB.pair
	reached := 0
	admitted := func(site fdxSite, cert *tls.Certificate, path, tok, what string) {
		t.Helper()
		if status, body := site.get(t, cert, path, tok); status != 200 {
			t.Fatalf("%s: %d %s\n%s", what, status, body, g.Stderr)
		}
		if reached++; len(up.Requests()) != reached {
			t.Fatalf("%s: the upstream saw %d requests, want %d", what, len(up.Requests()), reached)
		}
	}
	refused := func(site fdxSite, cert *tls.Certificate, path, tok string, status int, reason, what string) {
		t.Helper()
		got, body := site.get(t, cert, path, tok)
		if got != status || !strings.Contains(body, reason) {
			t.Fatalf("%s: %d %s, want %d %q", what, got, body, status, reason)
		}
		if len(up.Requests()) != reached {
			t.Fatalf("%s reached the upstream", what)
		}
	}

	jwt := as.token(t, p.recipientA.pair, "recipient-a", "fdx:accountbasic:read", "https://rs.test")
	if h := tokenHeader(t, jwt); h["typ"] != "at+jwt" || h["kid"] != "k1" || h["alg"] != "ES256" {
		t.Fatalf("oidc-provider issued a JWT with header %v", h)
	}
	admitted(mtls, a, "/fdx/v6/core/accounts", jwt, "a certificate-bound JWT access token")
	if got := up.Requests()[0].Header.Get("X-FDX-Client"); got != "recipient-a" {
		t.Errorf("the upstream was told client %q", got)
	}
	admitted(pkjwt, a, "/fdx/v6/core/accounts", jwt, "the same token at the private_key_jwt site")
	refused(mtls, b, "/fdx/v6/core/accounts", jwt, 401, "token is not bound to this client certificate", "the JWT from another certificate")
	refused(mtls, a, "/fdx/v6/core/accounts/a1/transactions", jwt, 403, "fdx:transactions:read", "a narrow-scope JWT")
	other := as.token(t, p.recipientA.pair, "recipient-a", "fdx:accountbasic:read", "https://other-rs.test")
	refused(mtls, a, "/fdx/v6/core/accounts", other, 401, "wrong audience", "a JWT for another resource server")

	opaque := as.token(t, p.recipientA.pair, "recipient-a", "fdx:accountbasic:read fdx:transactions:read", "https://rs-opaque.test")
	if strings.Count(opaque, ".") == 2 {
		t.Fatal("oidc-provider issued a JWT for the opaque resource server")
	}
	admitted(mtls, a, "/fdx/v6/core/accounts/a1/transactions", opaque, "an opaque token, introspected with tls_client_auth")
	admitted(pkjwt, a, "/fdx/v6/core/accounts/a1/transactions", opaque, "an opaque token, introspected with private_key_jwt")
	refused(mtls, b, "/fdx/v6/core/accounts", opaque, 401, "token is not bound to this client certificate", "the opaque token from another certificate")
	refused(mtls, a, "/fdx/v6/core/accounts/a1/contact", opaque, 403, "fdx:customercontact:read", "a narrow-scope opaque token")
	// no resource indicator: an opaque token without aud, which the
	// introspection answer does not name
	noAud := as.token(t, p.recipientA.pair, "recipient-a", "fdx:accountbasic:read", "")
	refused(mtls, a, "/fdx/v6/core/accounts", noAud, 401, "aud missing in the introspection answer", "an opaque token without audience")
	admitted(pkjwt, a, "/fdx/v6/core/accounts", noAud, "the same at introspection_require_aud off")
	refused(mtls, a, "/fdx/v6/core/accounts", "not-a-token-the-server-issued", 401, "token is not active", "an unknown opaque token")

	// expiry: a two-second token, refused once past its exp and the
	// site's leeway of a second
	short := as.token(t, p.recipientA.pair, "recipient-short", "fdx:accountbasic:read", "https://rs.test")
	admitted(mtls, a, "/fdx/v6/core/accounts", short, "a short-lived JWT before it expires")
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body := mtls.get(t, a, "/fdx/v6/core/accounts", short)
		if status == 401 && strings.Contains(body, "expired") {
			break
		}
		if status == 200 {
			reached++
		}
		if status != 200 || time.Now().After(deadline) {
			t.Fatalf("the expired token: %d %s", status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(up.Requests()) != reached {
		t.Fatal("an expired token reached the upstream")
	}

	getOK(t, fmt.Sprintf("http://127.0.0.1:%d/", healthPort), `"ready"`)
	// discovery: once per fdx_auth, at RFC 8414's well-known URI, which
	// oidc-provider serves
	if n := as.hits(t, "/.well-known/oauth-authorization-server"); n != 2 {
		t.Errorf("the metadata fetched %d times by two fdx_auth, want 2: %v", n, as.command(t, map[string]any{"op": "stats"}))
	}
	if strings.Contains(g.Stderr.String(), "could not be fetched") || strings.Contains(g.Stderr.String(), "endpoint failed") {
		t.Errorf("a fetch failed:\n%s", g.Stderr)
	}
}

// TestInteropFDXTrustPool: the same authorization server without
// tls_trust_pool, or with the wrong CA in it: every token is 503 (the
// server may well be right), the cause is logged once, with no secret,
// and readiness names it.
func TestInteropFDXTrustPool(t *testing.T) {
	t.Parallel()
	node := oidcProvider(t)
	p := newInteropPKI(t)
	as := startRealAS(t, node, p.bank, p.asConfig(signingKey(t, "k1")))
	up := newUpstream(t, nil)
	nonePort, wrongPort, healthPort := freePort(t), freePort(t), freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	auto_https disable_redirects
	skip_install_trust
	log {
		format mxgate_redact
	}
}
%s
%s
http://127.0.0.1:%d {
	mx_health
}
`, p.site(nonePort, fmt.Sprintf(`issuer %s
		audience https://rs.test`, as.issuer), up.hostPort()),
		p.site(wrongPort, fmt.Sprintf(`issuer %s
		audience https://rs.test
		introspection discover rs-basic {env.E2E_AS_SECRET}
		tls_trust_pool file %s`, as.issuer, p.clients.file), up.hostPort()),
		healthPort), "E2E_AS_SECRET=as-secret-hunter2")
	jwt := as.token(t, p.recipientA.pair, "recipient-a", "fdx:accountbasic:read", "https://rs.test")
	for _, port := range []int{nonePort, wrongPort} {
		site := fdxSite{url: fmt.Sprintf("https://localhost:%d", port), ca: p.bank.pool()}
		for range 3 {
			if status, body := site.get(t, &p.recipientA.pair, "/fdx/v6/core/accounts", jwt); status != 503 {
				t.Fatalf("port %d: %d %s", port, status, body)
			}
		}
		if status, _ := site.get(t, &p.recipientA.pair, "/fdx/v6/core/accounts", "opaque"); port == wrongPort && status != 503 {
			t.Fatalf("an opaque token: %d", status)
		}
	}
	if n := len(up.Requests()); n != 0 {
		t.Fatalf("the upstream saw %d requests", n)
	}
	logs := g.Stderr.String()
	if n := strings.Count(logs, "the authorization server's JWKS could not be fetched"); n != 2 {
		t.Errorf("the JWKS failure logged %d times for two sites, want 2:\n%s", n, logs)
	}
	if n := strings.Count(logs, "certificate signed by unknown authority"); n < 2 {
		t.Errorf("the cause logged %d times:\n%s", n, logs)
	}
	if strings.Contains(logs, "hunter2") {
		t.Error("the introspection secret reached the log")
	}
	status, _, body := do(t, mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/", healthPort)))
	if status != 503 || !strings.Contains(body, "fdx_auth JWKS: no signing key could be fetched") || !strings.Contains(body, "certificate signed by unknown authority") ||
		!strings.Contains(body, "fdx_auth introspection: the endpoint does not answer") || strings.Contains(body, "hunter2") {
		t.Fatalf("readiness: %d %s", status, body)
	}
}

// TestInteropFDXKeyRotation: the authorization server starts signing with
// a new key the moment it publishes it, twice within a second; with the
// default bounds every new token is admitted at its first use, and a key
// the server withdrew is refused after the next fetch of the set. A flood
// of tokens naming random key ids costs at most a fetch a second.
func TestInteropFDXKeyRotation(t *testing.T) {
	t.Parallel()
	node := oidcProvider(t)
	p := newInteropPKI(t)
	k1, k2, k3 := signingKey(t, "k1"), signingKey(t, "k2"), signingKey(t, "k3")
	as := startRealAS(t, node, p.bank, p.asConfig(k1))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{}`) })
	port := freePort(t)
	startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	auto_https disable_redirects
	skip_install_trust
}
%s`, p.site(port, fmt.Sprintf(`issuer %s
		audience https://rs.test
		tls_trust_pool file %s`, as.issuer, p.bank.file), up.hostPort())))
	site := fdxSite{url: fmt.Sprintf("https://localhost:%d", port), ca: p.bank.pool()}
	a := &p.recipientA.pair
	tok1 := as.token(t, *a, "recipient-a", "fdx:accountbasic:read", "https://rs.test")
	if status, body := site.get(t, a, "/fdx/v6/core/accounts", tok1); status != 200 {
		t.Fatalf("k1: %d %s", status, body)
	}
	for i, keys := range [][]map[string]any{{k2, k1}, {k3, k2}} {
		as.command(t, map[string]any{"op": "rotate", "keys": keys})
		tok := as.token(t, *a, "recipient-a", "fdx:accountbasic:read", "https://rs.test")
		if kid := tokenHeader(t, tok)["kid"]; kid != keys[0]["kid"] {
			t.Fatalf("rotation %d: the server signed with %v", i, kid)
		}
		if status, body := site.get(t, a, "/fdx/v6/core/accounts", tok); status != 200 {
			t.Fatalf("rotation %d: the first token signed with %v: %d %s", i, keys[0]["kid"], status, body)
		}
	}
	// k1 is no longer published: refused
	if status, body := site.get(t, a, "/fdx/v6/core/accounts", tok1); status != 401 || !strings.Contains(body, "unknown signing key") {
		t.Fatalf("a token of the withdrawn key: %d %s", status, body)
	}
	if n := len(up.Requests()); n != 3 {
		t.Fatalf("the upstream saw %d requests, want 3", n)
	}

	// a flood of random key ids, four a request round, for about three
	// seconds: at most one fetch a second (and one more for the round in
	// flight when a second turns)
	before := as.hits(t, "/jwks")
	start := time.Now()
	parts := strings.SplitN(tok1, ".", 2)
	sent := 0
	for time.Since(start) < 3*time.Second {
		var wg sync.WaitGroup
		for range 4 {
			var nonce [8]byte
			_, _ = rand.Read(nonce[:])
			hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "at+jwt", "kid": fmt.Sprintf("random-%x", nonce)})
			forged := base64.RawURLEncoding.EncodeToString(hdr) + "." + parts[1]
			wg.Add(1)
			go func() {
				defer wg.Done()
				if status, body := site.get(t, a, "/fdx/v6/core/accounts", forged); status != 401 || !strings.Contains(body, "unknown signing key") {
					t.Errorf("a random kid: %d %s", status, body)
				}
			}()
			sent++
		}
		wg.Wait()
	}
	elapsed := time.Since(start)
	fetched := as.hits(t, "/jwks") - before
	if most := int(elapsed/time.Second) + 2; fetched > most {
		t.Fatalf("%d tokens with random kids over %v cost %d JWKS fetches, want at most %d", sent, elapsed, fetched, most)
	}
	t.Logf("%d tokens with random kids over %v: %d JWKS fetches", sent, elapsed.Round(time.Millisecond), fetched)
	if n := len(up.Requests()); n != 3 {
		t.Fatalf("the upstream saw %d requests after the flood, want 3", n)
	}
}
