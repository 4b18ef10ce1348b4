package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The hostile suite of TLS server names. Caddy reads the name a client
// sends (SNI) three ways: its connection-policy matcher punycodes it
// without mapping, its certificate lookup lower-cases it (and trims
// spaces), and strict_sni_host compares it with the Host by Unicode case
// folding. A name that the first reads as "not this site" but the other
// two read as "this site" (fdx.ban\u212a.example, the KELVIN SIGN for k;
// \u017f, the long s, for s under a wildcard certificate) used to get the
// FDX certificate from the catch-all policy, with no client certificate
// asked for, and a request through to fdx_auth. Every attempt below runs
// against a real mxgate with mutual TLS, over HTTP/1.1 and HTTP/2, with
// no client certificate and with a valid one, and asserts that the
// handshake or the request is refused and that nothing reached the data
// provider; the ordinary spellings (ASCII, any case) still pass.

// sniVariant is one gateway the attacks run against.
type sniVariant struct {
	name      string
	wildcard  bool // the certificate is *.bank.example and the site fdxs.bank.example
	certBound bool
	// bare is the FDX site alone, as an operator may have written it:
	// no listener wrapper, no catch-all policy of ours, only fdx_auth.
	bare bool
}

// sniGateway is a running FDX gateway on a name of its own.
type sniGateway struct {
	site   string
	addr   string
	up     *upstream
	client tls.Certificate
	token  string
	roots  *x509.CertPool // trusts the site's certificate
}

// writeServerCert writes a self-signed server certificate for names to
// certFile and keyFile, and returns a pool that trusts it.
func writeServerCert(t *testing.T, certFile, keyFile string, names ...string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// startSNIGateway runs the production FDX example (or, for a bare
// variant, the FDX site alone) on a free loopback port under its own
// names, with fdx-dev's client CA, client certificate and bound token.
func startSNIGateway(t *testing.T, v sniVariant) *sniGateway {
	t.Helper()
	e := newProdEnv(t)
	g := &sniGateway{site: "fdx.bank.example"}
	names := []string{g.site}
	if v.wildcard {
		g.site, names = "fdxs.bank.example", []string{"*.bank.example"}
	}
	certFile, keyFile := filepath.Join(e.etc, "tls/fdx.crt"), filepath.Join(e.etc, "tls/fdx.key")
	g.roots = writeServerCert(t, certFile, keyFile, names...)
	var err error
	if g.client, err = tls.LoadX509KeyPair(filepath.Join(e.dev, "client.pem"), filepath.Join(e.dev, "client-key.pem")); err != nil {
		t.Fatal(err)
	}
	var env []string
	if v.bare {
		jwks := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(e.dev, "public"))))
		t.Cleanup(jwks.Close)
		env = []string{"FDX_JWKS_URL=" + jwks.URL + "/jwks.json", "FDX_ISSUER=https://as.fdx.localhost", "FDX_AUDIENCE=https://fdx.localhost"}
	} else { // the example discovers its keys from the issuer
		env = []string{"FDX_ISSUER=" + prodAuthorizationServer(t, e), "FDX_AUDIENCE=https://fdx.localhost"}
	}
	tok, err := os.ReadFile(filepath.Join(e.dev, "token.txt"))
	if err != nil {
		t.Fatal(err)
	}
	g.token = strings.TrimSpace(string(tok))
	g.up = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"accounts":[]}`)
	})
	port := freePort(t)
	g.addr = fmt.Sprintf("127.0.0.1:%d", port)
	bound := map[bool]string{true: "on", false: "off"}[v.certBound]
	var cf string
	if v.bare {
		cf = fmt.Sprintf(`{
	admin {ADMIN}
	auto_https disable_redirects
	skip_install_trust
	servers {
		protocols h1 h2
	}
}
https://%s:%d {
	bind 127.0.0.1
	tls %s %s {
		protocols tls1.2 tls1.3
		client_auth {
			mode require_and_verify
			trust_pool file %s
		}
	}
	fdx_auth {
		issuer {env.FDX_ISSUER}
		audience {env.FDX_AUDIENCE}
		jwks_url {env.FDX_JWKS_URL}
		cert_bound %s
	}
	reverse_proxy %s
}
`, g.site, port, certFile, keyFile, filepath.Join(e.etc, "tls/fdx-clients-ca.pem"), bound, g.up.hostPort())
	} else {
		repl := []string{
			"tcp-handover/0.0.0.0", "tcp-handover/127.0.0.1",
			":443", fmt.Sprintf(":%d", port),
			"https://fdx-api.internal:8443", g.up.URL,
			":2022", fmt.Sprintf(":%d", freePort(t)),
			":9182", fmt.Sprintf(":%d", freePort(t)),
			"cert_bound on", "cert_bound " + bound,
		}
		if v.wildcard {
			repl = append(repl, "fdx.bank.example", g.site)
		}
		cf = prodConfig(t, "fdx-resource-server.Caddyfile", e, repl...)
	}
	startGateway(t, cf, env...)
	return g
}

// sniTry is one connection and request.
type sniTry struct {
	sni  string // "" sends none
	host string // the Host (:authority) asked for
	h2   bool
	cert bool // present the valid client certificate
	// rewrite replaces, in the ClientHello as written, rewrite[0] by
	// rewrite[1] (as long), to send a name crypto/tls would not.
	rewrite [2]string
}

type sniResult struct {
	status int
	proto  int
	err    error
	body   string
}

func (r sniResult) String() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return fmt.Sprintf("HTTP/%d %d", r.proto, r.status)
}

// helloRewriter rewrites the first write of a client connection, its
// ClientHello.
type helloRewriter struct {
	net.Conn
	from, to []byte
	done     bool
}

func (c *helloRewriter) Write(p []byte) (int, error) {
	if !c.done {
		c.done = true
		if !bytes.Contains(p, c.from) {
			return 0, fmt.Errorf("the ClientHello does not hold %q", c.from)
		}
		p = bytes.Replace(p, c.from, c.to, 1)
	}
	return c.Conn.Write(p)
}

// try makes one fresh TLS connection as c says and sends one bound,
// well-formed FDX request over it.
func (g *sniGateway) try(t *testing.T, c sniTry) sniResult {
	t.Helper()
	if len(c.rewrite[0]) != len(c.rewrite[1]) {
		t.Fatal("a rewrite must keep the length")
	}
	cfg := &tls.Config{ServerName: c.sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}} // an attacker checks nothing
	if c.h2 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	if c.cert {
		cfg.Certificates = []tls.Certificate{g.client}
	}
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", g.addr)
			if err != nil {
				return nil, err
			}
			var conn net.Conn = raw
			if c.rewrite[0] != "" {
				conn = &helloRewriter{Conn: raw, from: []byte(c.rewrite[0]), to: []byte(c.rewrite[1])}
			}
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = raw.Close()
				return nil, err
			}
			return tc, nil
		},
		ForceAttemptHTTP2: c.h2,
		DisableKeepAlives: true,
	}
	if !c.h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+g.addr+"/fdx/v6/core/accounts", nil)
	req.Host = c.host
	req.Header.Set("Authorization", "Bearer "+g.token)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return sniResult{err: err}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return sniResult{status: resp.StatusCode, proto: resp.ProtoMajor}
}

// rawH1 sends target as the request-target of an HTTP/1.1 request over a
// TLS connection with the site's own name and the valid certificate.
func (g *sniGateway) rawH1(t *testing.T, target, host string) sniResult {
	t.Helper()
	cfg := &tls.Config{ServerName: g.site, RootCAs: g.roots, NextProtos: []string{"http/1.1"}, Certificates: []tls.Certificate{g.client}}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", g.addr, cfg)
	if err != nil {
		return sniResult{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", target, host, g.token)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return sniResult{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return sniResult{status: resp.StatusCode, proto: resp.ProtoMajor, body: string(b)}
}

// spell rewrites the first letter of name that is from into to.
func spell(name string, from byte, to string) string {
	i := strings.IndexByte(name, from)
	if i < 0 {
		panic(fmt.Sprintf("%q has no %q", name, from))
	}
	return name[:i] + to + name[i+1:]
}

// sniCase is one attack (or one ordinary spelling).
type sniCase struct {
	name  string
	try   sniTry
	admit bool // with the valid certificate (never without)
	// listener: the production configuration refuses it in the
	// handshake, as an unrecognized name
	listener bool
}

func TestHostileServerName(t *testing.T) {
	t.Parallel()
	variants := []sniVariant{
		{name: "production/cert_bound-on", certBound: true},
		{name: "production/cert_bound-off"},
		{name: "production-wildcard/cert_bound-on", wildcard: true, certBound: true},
		{name: "production-wildcard/cert_bound-off", wildcard: true},
		{name: "fdx_auth-alone/cert_bound-off", bare: true},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			g := startSNIGateway(t, v)
			site := g.site
			kelvin := spell(site, 'k', "\u212a") // fdx.ban\u212a.example
			idnaKelvin := map[string]string{     // what Caddy's SNI matcher makes of it
				"fdx.bank.example":  "fdx.xn--ban-0k1a.example",
				"fdxs.bank.example": "fdxs.xn--ban-0k1a.example",
			}[site]
			cases := []sniCase{
				{name: "ascii-sni-equal-to-host", try: sniTry{sni: site, host: site}, admit: true},
				{name: "ascii-sni-host-with-port", try: sniTry{sni: site, host: site + ":443"}, admit: true},
				{name: "kelvin-sign-sni", try: sniTry{sni: kelvin, host: site}, listener: true},
				{name: "kelvin-sign-sni-and-host-of-another-name", try: sniTry{sni: kelvin, host: "other.bank.example"}, listener: true},
				{name: "mixed-case-sni", try: sniTry{sni: strings.ToUpper(site[:3]) + site[3:], host: site}, admit: true},
				{name: "mixed-case-host", try: sniTry{sni: site, host: strings.ToUpper(site)}, admit: true},
				{name: "trailing-dot-sni", try: sniTry{sni: site + "Z", host: site, rewrite: [2]string{site + "Z", site + "."}}, listener: true},
				{name: "trailing-dot-host", try: sniTry{sni: site, host: site + "."}},
				{name: "idna-form-of-the-kelvin-spelling-as-sni", try: sniTry{sni: idnaKelvin, host: site}},
				{name: "idna-form-of-the-kelvin-spelling-as-host", try: sniTry{sni: site, host: idnaKelvin}},
				{name: "sni-of-another-name", try: sniTry{sni: "other.bank.example", host: site}},
				{name: "no-sni", try: sniTry{host: site}},
				{name: "leading-space-sni", try: sniTry{sni: " " + site, host: site}, listener: true},
				{name: "nul-in-sni", try: sniTry{sni: site + "\x00.evil", host: site}, listener: true},
			}
			if v.wildcard {
				longS := spell(site, 's', "\u017f") // fdx\u017f.bank.example
				cases = append(cases,
					sniCase{name: "long-s-sni", try: sniTry{sni: longS, host: site}, listener: true},
					sniCase{name: "idna-form-of-the-long-s-spelling-as-sni", try: sniTry{sni: "xn--fdx-i3a.bank.example", host: site}},
				)
			}
			for _, c := range cases {
				for _, h2 := range []bool{false, true} {
					for _, cert := range []bool{false, true} {
						name := fmt.Sprintf("%s/%s/%s", c.name, map[bool]string{false: "h1", true: "h2"}[h2], map[bool]string{false: "no-cert", true: "valid-cert"}[cert])
						t.Run(name, func(t *testing.T) {
							try := c.try
							try.h2, try.cert = h2, cert
							before := len(g.up.Requests())
							got := g.try(t, try)
							reached := len(g.up.Requests()) - before
							if c.admit && cert {
								if got.err != nil || got.status != 200 || reached != 1 || got.proto != map[bool]int{false: 1, true: 2}[h2] {
									t.Fatalf("the ordinary spelling was not served: %v, %d request(s) upstream", got, reached)
								}
								return
							}
							if reached != 0 || (got.err == nil && got.status == 200) {
								t.Fatalf("admitted: %v, %d request(s) reached the data provider", got, reached)
							}
							if c.listener && !v.bare && (got.err == nil || !strings.Contains(got.err.Error(), "unrecognized name")) {
								t.Fatalf("not refused in the handshake as an unrecognized name: %v", got)
							}
							// the production configuration asks every
							// handshake for a verified certificate: without
							// one, nothing is answered
							if !cert && !v.bare && got.err == nil {
								t.Fatalf("a client without a certificate got an answer: %v", got)
							}
						})
					}
				}
			}
			// A Host spelled with the Kelvin sign reaches the server only
			// in an absolute-form request target (net/http checks Host
			// headers and :authority for ASCII, not this).
			t.Run("kelvin-sign-host-in-an-absolute-form-target/h1/valid-cert", func(t *testing.T) {
				before := len(g.up.Requests())
				got := g.rawH1(t, "https://"+kelvin+"/fdx/v6/core/accounts", site)
				if reached := len(g.up.Requests()) - before; reached != 0 || (got.err == nil && got.status == 200) {
					t.Fatalf("admitted: %v, %d request(s) reached the data provider", got, reached)
				}
			})
		})
	}
}
