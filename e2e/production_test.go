package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// The configurations of examples/production are tested as written, with
// only what ties them to a production host replaced: /etc/mxgate by a
// temporary directory of fake keys and fdx-dev certificates, and, to run
// them, public addresses and ports by free loopback ports, upstreams by
// recording test servers, the sidecar's socket by one in a temporary
// directory. They name no admin endpoint: each runs on mxgate's default, a
// socket in the harness's $RUNTIME_DIRECTORY, as under systemd.

const prodDir = "../examples/production/"

// prodEnv is a fake /etc/mxgate: keys, and fdx-dev's certificates under
// the names the configurations use.
type prodEnv struct {
	etc, dev string
	keyNext  string // the second MDX-HMAC key, base64
}

func newProdEnv(t *testing.T) *prodEnv {
	t.Helper()
	e := &prodEnv{etc: t.TempDir(), dev: filepath.Join(t.TempDir(), "fdx")}
	if out, err := exec.Command(binary, "fdx-dev", "--dir", e.dev).CombinedOutput(); err != nil {
		t.Fatalf("fdx-dev: %v\n%s", err, out)
	}
	e.keyNext = base64.StdEncoding.EncodeToString([]byte("the next MDX-HMAC key, 32+ bytes long"))
	files := map[string]string{
		"keys/mdx-hmac.key":      base64.StdEncoding.EncodeToString([]byte("the current MDX-HMAC key, 32+ bytes")) + "\n",
		"keys/mdx-hmac-next.key": e.keyNext + "\n",
		"keys/mx-client-id":      "CLIENT-1234\n",
		"keys/mx-api-key":        "API-KEY-4567\n",
	}
	for name, from := range map[string]string{
		"tls/mdx.crt": "server.pem", "tls/mdx.key": "server-key.pem",
		"tls/fdx.crt": "server.pem", "tls/fdx.key": "server-key.pem",
		"tls/fdx-clients-ca.pem": "ca.pem",
		"tls/as-ca.pem":          "ca.pem",
	} {
		b, err := os.ReadFile(filepath.Join(e.dev, from))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	for name, content := range files {
		p := filepath.Join(e.etc, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// prodConfig reads a production configuration with /etc/mxgate/ moved to
// e.etc and each pair of replacements applied; a replacement whose text
// is gone from the file fails the test.
func prodConfig(t *testing.T, name string, e *prodEnv, replace ...string) string {
	t.Helper()
	raw, err := os.ReadFile(prodDir + name)
	if err != nil {
		t.Fatal(err)
	}
	cf := string(raw)
	if strings.Contains(cf, "{$") {
		t.Errorf("%s reads {$VAR} (adapt-time) placeholders: use {env.*} or {file.*}", name)
	}
	replace = append([]string{"/etc/mxgate/", e.etc + "/"}, replace...)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(cf, replace[i]) {
			t.Fatalf("%s no longer holds %q", name, replace[i])
		}
		cf = strings.ReplaceAll(cf, replace[i], replace[i+1])
	}
	return cf
}

// validateProd runs `mxgate validate` and `mxgate adapt` on cf with env.
func validateProd(t *testing.T, name, cf string, env ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	for _, cmd := range []string{"validate", "adapt"} {
		c := exec.Command(binary, cmd, "--config", path, "--adapter", "caddyfile")
		c.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
		c.Env = append(c.Env, env...)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("mxgate %s %s: %v\n%s", cmd, name, err, out)
		}
		if strings.Contains(string(out), "input is not formatted") {
			t.Errorf("%s is not formatted: run `mxgate fmt --overwrite` on it", name)
		}
		if strings.Contains(string(out), "SECRETS WILL BE LOGGED") {
			t.Errorf("%s: a log does not redact:\n%s", name, out)
		}
	}
	// and with one secret missing, it must not pass
	if len(env) > 0 {
		c := exec.Command(binary, "validate", "--config", path, "--adapter", "caddyfile")
		c.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
		c.Env = append(c.Env, env[1:]...)
		if out, err := c.CombinedOutput(); err == nil {
			t.Errorf("%s validated without %s:\n%s", name, strings.SplitN(env[0], "=", 2)[0], out)
		}
	}
}

// adaptedServer is what the server-name checks read of a server in
// `mxgate adapt`'s JSON.
type adaptedServer struct {
	Listen           []string `json:"listen"`
	ListenerWrappers []struct {
		Wrapper string `json:"wrapper"`
	} `json:"listener_wrappers"`
	StrictSNIHost *bool    `json:"strict_sni_host"`
	Protocols     []string `json:"protocols"`
	Policies      []struct {
		Match                map[string]json.RawMessage `json:"match"`
		ClientAuthentication *struct {
			Mode string `json:"mode"`
			CA   struct {
				Provider string   `json:"provider"`
				PEMFiles []string `json:"pem_files"`
			} `json:"ca"`
		} `json:"client_authentication"`
	} `json:"tls_connection_policies"`
}

// adaptedServers runs `mxgate adapt` on cf with env and returns its HTTP
// servers.
func adaptedServers(t *testing.T, cf string, env ...string) map[string]adaptedServer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	c := exec.Command(binary, "adapt", "--config", path, "--adapter", "caddyfile")
	c.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	c.Env = append(c.Env, env...)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("mxgate adapt: %v", err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]adaptedServer `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.Apps.HTTP.Servers
}

// checkServerNames fails unless every server of servers that speaks TLS
// has mx_server_name before tls in its listener wrappers, strict_sni_host
// on, and no HTTP/3 (which runs beside the listener wrappers); it
// returns those servers by their listen address.
func checkServerNames(t *testing.T, name string, servers map[string]adaptedServer) map[string]adaptedServer {
	t.Helper()
	tlsServers := map[string]adaptedServer{}
	for _, srv := range servers {
		if len(srv.Policies) == 0 {
			continue
		}
		tlsServers[strings.Join(srv.Listen, " ")] = srv
		var wrappers []string
		for _, w := range srv.ListenerWrappers {
			wrappers = append(wrappers, w.Wrapper)
		}
		i, j := slices.Index(wrappers, "mx_server_name"), slices.Index(wrappers, "tls")
		if i < 0 || j < i {
			t.Errorf("%s, %v: listener wrappers %v, want mx_server_name before tls", name, srv.Listen, wrappers)
		}
		if srv.StrictSNIHost == nil || !*srv.StrictSNIHost {
			t.Errorf("%s, %v: strict_sni_host is not on", name, srv.Listen)
		}
		if !slices.Equal(srv.Protocols, []string{"h1", "h2"}) {
			t.Errorf("%s, %v: protocols %v, want h1 h2", name, srv.Listen, srv.Protocols)
		}
	}
	if len(tlsServers) == 0 {
		t.Errorf("%s: no server speaks TLS", name)
	}
	return tlsServers
}

// tlsAnswer makes one TLS connection to addr naming sni (with cert, when
// not nil) and sends one GET for host; it returns the status, or the
// error of the handshake or the exchange.
func tlsAnswer(t *testing.T, addr, sni, host string, cert *tls.Certificate) (int, error) {
	t.Helper()
	cfg := &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// getOK fetches url and fails unless it answers 200 with want in the body.
func getOK(t *testing.T, url, want string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	status, _, body := do(t, req)
	if status != 200 || !strings.Contains(body, want) {
		t.Fatalf("GET %s: %d\n%s", url, status, body)
	}
}

func devTLS(t *testing.T, dev string, client string) *http.Client {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(dev, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if client != "" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dev, client+".pem"), filepath.Join(dev, client+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestProductionMDXIngress: validated with a fake environment; run on
// loopback with 127.0.0.1 standing for the load balancer (in place of
// 10.0.1.0/24, in the listener wrapper and in trusted_proxies), a request
// signed with the second (next) key from an MX address, as the balancer
// declares it, is accepted through TLS and reaches the FI's application;
// the same request again is a replay (Redis-shared cache); a request the
// balancer declares from no MX address is refused; readiness and metrics
// answer on loopback.
func TestProductionMDXIngress(t *testing.T) {
	t.Parallel()
	const name = "mdx-ingress.Caddyfile"
	e := newProdEnv(t)
	redis := redistest.Start(t)
	redisEnv := fmt.Sprintf("MXGATE_REDIS_URL=redis://127.0.0.1:%d/0", redis.Port)
	validateProd(t, name, prodConfig(t, name, e), redisEnv)
	checkServerNames(t, name, adaptedServers(t, prodConfig(t, name, e), redisEnv))

	app := newUpstream(t, nil)
	port, health, metrics := freePort(t), freePort(t), freePort(t)
	cf := prodConfig(t, name, e,
		"tcp-handover/0.0.0.0", "tcp-handover/127.0.0.1",
		":443", fmt.Sprintf(":%d", port),
		"mdx.bank.example", "localhost",
		"10.0.1.0/24", "127.0.0.1", // the test is the load balancer
		"https://fi-app.internal:8443", app.URL,
		":2020", fmt.Sprintf(":%d", health),
		":9180", fmt.Sprintf(":%d", metrics),
	)
	g := startGateway(t, cf, redisEnv)
	client := devTLS(t, e.dev, "")
	url := fmt.Sprintf("https://localhost:%d/inst1/accounts", port)

	sign := exec.Command(binary, "mdx-sign", "--url", url, "--algorithm", "sha256", "--session-key", "2f9c4a6e8b1d3f5a")
	sign.Env = append(os.Environ(), "MDX_HMAC_KEY="+e.keyNext)
	headers, err := sign.Output()
	if err != nil {
		t.Fatalf("mdx-sign: %v", err)
	}
	send := func(xff string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for _, line := range strings.Split(strings.TrimSpace(string(headers)), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			req.Header.Set(k, v)
		}
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := client.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.TLS == nil {
			t.Fatal("the answer did not come over TLS")
		}
		return resp.StatusCode, string(body)
	}
	// a spoofed left-most entry is the client's own writing: never read
	if status, body := send("64.77.254.40, 198.51.100.7"); status != 403 {
		t.Fatalf("from a non-MX address: %d\n%s", status, body)
	}
	if status, body := send("198.51.100.7, 64.77.254.40"); status != 200 || !strings.Contains(body, "<ok/>") {
		t.Fatalf("signed request from MX via the balancer: %d\n%s", status, body)
	}
	if n := len(app.Requests()); n != 1 {
		t.Fatalf("the FI's application saw %d requests, want 1", n)
	}
	if status, body := send("64.77.254.40"); status == 200 {
		t.Fatalf("the same signature again was admitted:\n%s", body)
	}
	// a server name that is not plain ASCII is refused in the handshake;
	// a Host that is not the server name, before any site (421)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := tlsAnswer(t, addr, "localho\u017ft", "localhost", nil); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("a long s in the server name: %v", err)
	}
	if status, err := tlsAnswer(t, addr, "localhost", "other.bank.example", nil); err != nil || status != 421 {
		t.Fatalf("a Host other than the server name: %d %v", status, err)
	}
	if n := len(app.Requests()); n != 1 {
		t.Fatalf("the FI's application saw %d requests, want 1", n)
	}
	getOK(t, fmt.Sprintf("http://127.0.0.1:%d/", health), `"ready"`)
	getOK(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics), "mxgate_store_up")
	if strings.Contains(g.Stderr.String(), e.keyNext) {
		t.Fatal("the key reached the logs")
	}
}

// TestProductionEgressSidecar: validated with a fake environment; run with
// its socket in a temporary directory and MX replaced by a recording
// upstream, a request over the Unix socket reaches the upstream with the
// client's Basic credentials attached and asking for an encrypted answer,
// and nothing listens on the socket for other users.
func TestProductionEgressSidecar(t *testing.T) {
	t.Parallel()
	const name = "egress-sidecar.Caddyfile"
	e := newProdEnv(t)
	redis := redistest.Start(t)
	redisEnv := fmt.Sprintf("MXGATE_REDIS_URL=redis://127.0.0.1:%d/0", redis.Port)
	validateProd(t, name, prodConfig(t, name, e), redisEnv)

	mx := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.mx.api.v1+json")
		w.WriteHeader(404)
		_, _ = io.WriteString(w, `{"error":{"message":"Not Found"}}`)
	})
	sock := filepath.Join(t.TempDir(), "sidecar.sock")
	health, metrics := freePort(t), freePort(t)
	cf := prodConfig(t, name, e,
		"/run/mxgate/sidecar.sock", sock,
		"https://api.mx.com", mx.URL,
		":2021", fmt.Sprintf(":%d", health),
		":9181", fmt.Sprintf(":%d", metrics),
	)
	startGateway(t, cf, redisEnv)
	if fi, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm()&0o007 != 0 {
		t.Fatalf("the socket is open to others: %v", fi.Mode())
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get("http://sidecar/users/USR-1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(body), "Not Found") {
		t.Fatalf("through the socket: %d\n%s", resp.StatusCode, body)
	}
	reqs := mx.Requests()
	if len(reqs) != 1 {
		t.Fatalf("MX's stand-in saw %d requests, want 1", len(reqs))
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("CLIENT-1234:API-KEY-4567"))
	if got := reqs[0].Header.Get("Authorization"); got != want {
		t.Errorf("Authorization at MX: %q, want the client's Basic credentials", got)
	}
	if reqs[0].URI != "/users/USR-1" {
		t.Errorf("path at MX: %q", reqs[0].URI)
	}
	if reqs[0].Header.Get("MX-Require-Encryption") == "" && !strings.Contains(reqs[0].Header.Get("Accept"), "jose") {
		t.Logf("headers at MX: %v", reqs[0].Header)
	}
	getOK(t, fmt.Sprintf("http://127.0.0.1:%d/", health), `"ready"`)
	getOK(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics), "mxgate_store_up")
}

// TestProductionFDX: validated with a fake environment (an issuer on
// loopback over TLS, whose metadata names its JWKS, and the audience);
// run on loopback, a request over mutual TLS without a token is refused
// with 401, the bound token from fdx-dev is admitted and reaches the data
// provider with the subject forwarded, and a client without a certificate
// gets no answer.
// prodAuthorizationServer serves the production FDX example's
// authorization server: its RFC 8414 metadata and fdx-dev's keys, over TLS
// with fdx-dev's server certificate (the CA the example trusts as
// as-ca.pem). fdx-dev mints e's token again for its issuer, which it
// returns.
func prodAuthorizationServer(t *testing.T, e *prodEnv) string {
	t.Helper()
	files := http.FileServer(http.Dir(filepath.Join(e.dev, "public")))
	var as *httptest.Server
	as = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/oauth-authorization-server" {
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": as.URL, "jwks_uri": as.URL + "/jwks.json"})
			return
		}
		files.ServeHTTP(w, r)
	}))
	asCert, err := tls.LoadX509KeyPair(filepath.Join(e.dev, "server.pem"), filepath.Join(e.dev, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	as.TLS = &tls.Config{Certificates: []tls.Certificate{asCert}}
	as.StartTLS()
	t.Cleanup(as.Close)
	if out, err := exec.Command(binary, "fdx-dev", "--dir", e.dev, "--issuer", as.URL).CombinedOutput(); err != nil {
		t.Fatalf("fdx-dev: %v\n%s", err, out)
	}
	return as.URL
}

func TestProductionFDX(t *testing.T) {
	t.Parallel()
	const name = "fdx-resource-server.Caddyfile"
	e := newProdEnv(t)
	issuer := prodAuthorizationServer(t, e)
	env := []string{"FDX_ISSUER=" + issuer, "FDX_AUDIENCE=https://fdx.localhost"}
	validateProd(t, name, prodConfig(t, name, e), env...)
	// Every handshake on the public port asks for a certificate from the
	// recipients' CA: the catch-all policy the Caddyfile adapter would add
	// for other names, which asks for none, is the example's own and asks
	// too, so that no policy without client authentication can hand out
	// the FDX certificate.
	public, ok := checkServerNames(t, name, adaptedServers(t, prodConfig(t, name, e), env...))["tcp-handover/0.0.0.0:443"]
	if !ok {
		t.Fatalf("%s: no TLS server on tcp-handover/0.0.0.0:443", name)
	}
	catchAll := 0
	for i, p := range public.Policies {
		ca := p.ClientAuthentication
		if ca == nil || ca.Mode != "require_and_verify" || ca.CA.Provider != "file" || !slices.Equal(ca.CA.PEMFiles, []string{e.etc + "/tls/fdx-clients-ca.pem"}) {
			t.Errorf("%s: TLS connection policy %d (match %v) does not require a certificate from the recipients' CA: %+v", name, i, p.Match, ca)
		}
		if len(p.Match) == 0 {
			catchAll++
		}
	}
	if len(public.Policies) != 2 || catchAll != 1 {
		t.Errorf("%s: %d TLS connection policies, %d of them catch-all; want the FDX site's and one catch-all", name, len(public.Policies), catchAll)
	}

	provider := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"accounts":[]}`)
	})
	port, health, metrics := freePort(t), freePort(t), freePort(t)
	cf := prodConfig(t, name, e,
		"tcp-handover/0.0.0.0", "tcp-handover/127.0.0.1",
		":443", fmt.Sprintf(":%d", port),
		"fdx.bank.example", "localhost",
		"https://fdx-api.internal:8443", provider.URL,
		":2022", fmt.Sprintf(":%d", health),
		":9182", fmt.Sprintf(":%d", metrics),
	)
	startGateway(t, cf, env...)
	url := fmt.Sprintf("https://localhost:%d/fdx/v6/core/accounts", port)
	client := devTLS(t, e.dev, "client")

	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatalf("no token: %d\n%s", resp.StatusCode, body)
	}
	if n := len(provider.Requests()); n != 0 {
		t.Fatalf("the data provider saw %d requests without a token", n)
	}

	tok, err := os.ReadFile(filepath.Join(e.dev, "token.txt"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("bound token: %d\n%s", resp.StatusCode, body)
	}
	if reqs := provider.Requests(); len(reqs) != 1 || reqs[0].Header.Get("X-FDX-Subject") == "" {
		t.Fatalf("the data provider saw %v", reqs)
	}

	if _, err := devTLS(t, e.dev, "").Get(url); err == nil {
		t.Fatal("a client without a certificate got an answer")
	}
	// whatever name it asks for: the KELVIN SIGN spelling of the site's
	// (here a long s, localhost having no k) in the handshake, any other
	// name at the catch-all, which asks for a certificate too
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := tlsAnswer(t, addr, "localho\u017ft", "localhost", nil); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("a long s in the server name: %v", err)
	}
	for _, sni := range []string{"other.localhost", ""} {
		if status, err := tlsAnswer(t, addr, sni, "localhost", nil); err == nil {
			t.Fatalf("server name %q, no certificate: answered %d", sni, status)
		}
	}
	client2, err := tls.LoadX509KeyPair(filepath.Join(e.dev, "client.pem"), filepath.Join(e.dev, "client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if status, err := tlsAnswer(t, addr, "localhost", "other.localhost", &client2); err != nil || status != 421 {
		t.Fatalf("a Host other than the server name: %d %v", status, err)
	}
	if n := len(provider.Requests()); n != 1 {
		t.Fatalf("the data provider saw %d requests, want 1", n)
	}
	getOK(t, fmt.Sprintf("http://127.0.0.1:%d/", health), `"ready"`)
	getOK(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics), "go_goroutines")
}
