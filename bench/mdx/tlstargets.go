package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mxgate/mxgate/bench/internal/harness"
)

// The TLS targets: the MDX site as examples/production/mdx-ingress.Caddyfile
// serves it (its listener wrappers, strict_sni_host, protocols h1 h2 and
// TLS settings, with the tuned chain's handlers), bare Caddy and the nginx
// gateway with the same certificate, each measured with a TLS 1.3 and a
// TLS 1.2 client; and the FDX site over mutual TLS as
// examples/production/fdx-resource-server.Caddyfile builds it, bare Caddy
// with the same mutual TLS, and nginx with ssl_verify_client on.
var tlsTargetNames = []string{
	"nginx-tls13", "caddy-tls13", "mxgate-tls13",
	"nginx-tls12", "caddy-tls12", "mxgate-tls12",
	"nginx-fdx", "caddy-fdx", "mxgate-fdx",
}

// targetGroups are names -targets takes for several targets.
var targetGroups = map[string][]string{
	"tls": {"nginx-tls13", "caddy-tls13", "mxgate-tls13", "nginx-tls12", "caddy-tls12", "mxgate-tls12"},
	"fdx": {"nginx-fdx", "caddy-fdx", "mxgate-fdx"},
}

func init() {
	targetNames = append(targetNames, tlsTargetNames...)
	for _, v := range []tlsVersion{tls13, tls12} {
		suffix := "-tls13"
		if v == tls12 {
			suffix = "-tls12"
		}
		targetTitles["nginx"+suffix] = "nginx + njs MDX gateway over " + v.String()
		targetTitles["caddy"+suffix] = "bare Caddy `reverse_proxy` over " + v.String()
		targetTitles["mxgate"+suffix] = "mxgate MDX site over " + v.String() + " (production server settings)"
	}
	targetTitles["nginx-fdx"] = "nginx, mutual TLS 1.3 (`ssl_verify_client on`, no token check)"
	targetTitles["caddy-fdx"] = "bare Caddy `reverse_proxy`, mutual TLS 1.3 (no token check)"
	targetTitles["mxgate-fdx"] = "mxgate FDX site, mutual TLS 1.3 + `fdx_auth` with a certificate-bound token (examples/production)"
}

// tlsName splits a TLS target's name: its kind (nginx, caddy, mxgate),
// whether it is an FDX one, and the client's TLS version.
func tlsName(name string) (kind string, fdx bool, v tlsVersion, ok bool) {
	kind, rest, found := strings.Cut(name, "-")
	if !found {
		return "", false, 0, false
	}
	switch rest {
	case "tls13":
		return kind, false, tls13, true
	case "tls12":
		return kind, false, tls12, true
	case "fdx":
		return kind, true, tls13, true
	}
	return "", false, 0, false
}

// pki is what fdx-dev wrote for the run: a CA, a server certificate for
// localhost and 127.0.0.1, a client certificate, an authorization
// server's key and a token bound to the client certificate; and the
// stand-in authorization server when an FDX target needs it.
type pki struct {
	dir        string
	etc        string // a fake /etc/mxgate for the production examples
	ca         string
	cert, key  string
	client     tls.Certificate
	token      string
	issuer     string
	audience   string
	serverName string
}

var runPKI *pki

// setupPKI runs `mxgate fdx-dev` into dir/pki and starts the stand-in
// authorization server (RFC 8414 metadata and the key set, over TLS with
// the same server certificate), once.
func setupPKI(dir, bin string) *pki {
	if runPKI != nil {
		return runPKI
	}
	p := &pki{dir: filepath.Join(dir, "pki"), etc: filepath.Join(dir, "etc"), audience: "https://fdx.localhost", serverName: benchServerName}
	as, err := net.Listen("tcp", "127.0.0.1:0")
	harness.Check(err)
	p.issuer = "https://" + as.Addr().String()
	out, err := harness.Command(bin, "fdx-dev", "--dir", p.dir, "--issuer", p.issuer, "--audience", p.audience, "--valid", "24h").CombinedOutput()
	if err != nil {
		harness.Fatalf("fdx-dev: %v\n%s", err, out)
	}
	path := func(f string) string { return filepath.Join(p.dir, f) }
	p.ca, p.cert, p.key = path("ca.pem"), path("server.pem"), path("server-key.pem")
	p.client, err = tls.LoadX509KeyPair(path("client.pem"), path("client-key.pem"))
	harness.Check(err)
	tok, err := os.ReadFile(path("token.txt"))
	harness.Check(err)
	p.token = strings.TrimSpace(string(tok))
	for name, from := range map[string]string{
		"tls/mdx.crt": "server.pem", "tls/mdx.key": "server-key.pem",
		"tls/fdx.crt": "server.pem", "tls/fdx.key": "server-key.pem",
		"tls/fdx-clients-ca.pem": "ca.pem", "tls/as-ca.pem": "ca.pem",
	} {
		b, err := os.ReadFile(path(from))
		harness.Check(err)
		harness.Check(os.MkdirAll(filepath.Join(p.etc, "tls"), 0o700))
		harness.Check(os.WriteFile(filepath.Join(p.etc, name), b, 0o600))
	}

	serverCert, err := tls.LoadX509KeyPair(p.cert, p.key)
	harness.Check(err)
	files := http.FileServer(http.Dir(path("public")))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/.well-known/oauth-authorization-server" {
				_ = json.NewEncoder(w).Encode(map[string]string{"issuer": p.issuer, "jwks_uri": p.issuer + "/jwks.json"})
				return
			}
			files.ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert}},
	}
	go func() { _ = srv.ServeTLS(as, "", "") }()
	harness.OnExit(func() { srv.Close() })
	runPKI = p
	return p
}

// hostHeader is what a request to t names in Host: its address, or for a
// TLS target the certificate's name and its port.
func (t *target) hostHeader() string {
	if t.host != "" {
		return t.host
	}
	return t.addr
}

// build returns n requests of kind k for t: pre-signed MDX requests, or
// t's one fixed request (an FDX GET with its token) n times.
func (b *bench) build(t *target, k traffic, n int) [][]byte {
	if t.fixed != nil {
		out := make([][]byte, n)
		for i := range out {
			out[i] = t.fixed
		}
		return out
	}
	return b.gen.build(k, t.hostHeader(), n)
}

// startTLSTarget starts the TLS target t names, proxying to the upstream
// on port up.
func startTLSTarget(t *target, dir, peer, bin string, up int) {
	kind, fdx, v, ok := tlsName(t.name)
	if !ok {
		harness.Fatalf("%s is not a TLS target", t.name)
	}
	p := setupPKI(dir, bin)
	port := harness.FreePort()
	t.addr = fmt.Sprintf("127.0.0.1:%d", port)
	t.host = fmt.Sprintf("%s:%d", benchServerName, port)
	t.tls = &v
	var cert *tls.Certificate
	if fdx {
		cert = &p.client
		t.getOnly = true
		t.fixed = fdxRequest(t.host, p.token)
	}
	cfg, err := clientConfig(p.ca, v, cert)
	harness.Check(err)
	tlsClients[t.addr] = cfg
	switch {
	case kind == "nginx" && !fdx:
		js, err := os.ReadFile(filepath.Join(peer, "mdx.js"))
		harness.Check(err)
		harness.Check(os.WriteFile(filepath.Join(dir, "mdx.js"), js, 0o644))
		tmpl := filepath.Join(dir, t.name+".conf.tmpl")
		harness.Check(os.WriteFile(tmpl, []byte(nginxPeerTLS(peer, t.name, p)), 0o644))
		t.pids = []int{startNginx(dir, t.name, tmpl, up, port).pid()}
		t.verifies = true
	case kind == "nginx":
		tmpl := filepath.Join(dir, t.name+".conf.tmpl")
		harness.Check(os.WriteFile(tmpl, []byte(nginxFDX(t.name, p)), 0o644))
		t.pids = []int{startNginx(dir, t.name, tmpl, up, port).pid()}
	case kind == "caddy":
		g := harness.Start(bin, dir, port, caddyBareTLS(port, up, p, fdx))
		t.pids = []int{g.Pid()}
	case kind == "mxgate" && !fdx:
		g := harness.Start(bin, dir, port, tlsChainCaddyfile(port, up, p, chainOptions{}))
		t.pids, t.admin = []int{g.Pid()}, g.Admin
		t.unique, t.verifies = true, true
	case kind == "mxgate":
		run := filepath.Join(dir, "run-"+strconv.Itoa(port))
		harness.Check(os.MkdirAll(run, 0o700))
		cf, err := productionFDX(productionDir, port, up, p)
		harness.Check(err)
		g := harness.Start(bin, dir, port, cf,
			"FDX_ISSUER="+p.issuer, "FDX_AUDIENCE="+p.audience, "RUNTIME_DIRECTORY="+run)
		t.pids = []int{g.Pid()}
		t.refuse, t.refuseStatus = fdxRequest(t.host, ""), 401
	default:
		harness.Fatalf("unknown TLS target %s", t.name)
	}
}

// fdxRequest is an FDX GET with token as its bearer ("" for none).
func fdxRequest(host, token string) []byte {
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	return []byte("GET /fdx/v6/core/accounts HTTP/1.1\r\nHost: " + host + "\r\n" + auth + "Accept: application/json\r\n\r\n")
}

// The TLS settings nginx gets, as Caddy's: TLS 1.2 with ECDHE AES-GCM
// suites (FAPI's, which the FDX example names) or TLS 1.3; session
// tickets on (nginx's default, and Caddy's), no server-side session
// cache on either; keep-alive connections never closed for their count
// of requests (nginx's keepalive_requests would otherwise close one
// every 1000 requests, a new handshake Caddy never asks for).
const nginxTLSCommon = `    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384;
    ssl_session_tickets on;
    keepalive_requests 1000000;
`

// nginxPeerTLS is the peer's gateway template listening with TLS.
func nginxPeerTLS(peer, name string, p *pki) string {
	b, err := os.ReadFile(filepath.Join(peer, "nginx-peer.conf.tmpl"))
	harness.Check(err)
	conf := string(b)
	for _, r := range [][2]string{
		{"    listen 127.0.0.1:@PORT@;\n", "    listen 127.0.0.1:@PORT@ ssl;\n" +
			"    ssl_certificate " + p.cert + ";\n    ssl_certificate_key " + p.key + ";\n" + nginxTLSCommon},
		{"@DIR@/nginx-peer.pid", "@DIR@/" + name + ".pid"},
		{"@DIR@/nginx-peer.err", "@DIR@/" + name + ".err"},
	} {
		if !strings.Contains(conf, r[0]) {
			harness.Fatalf("the peer's nginx-peer.conf.tmpl no longer holds %q", r[0])
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	return conf
}

// nginxFDX is nginx in front of the upstream with mutual TLS: a client
// without a certificate from the CA is refused in the handshake. It
// checks no token.
func nginxFDX(name string, p *pki) string {
	return fmt.Sprintf(`worker_processes 1;
pid @DIR@/%[1]s.pid;
error_log @DIR@/%[1]s.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server 127.0.0.1:@UP@; keepalive 64; }
  server {
    listen 127.0.0.1:@PORT@ ssl;
    ssl_certificate %[2]s;
    ssl_certificate_key %[3]s;
    ssl_client_certificate %[4]s;
    ssl_verify_client on;
%[5]s    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`, name, p.cert, p.key, p.ca, nginxTLSCommon)
}

// fapiCiphers are the FDX example's TLS 1.2 suites.
const fapiCiphers = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"

// caddyBareTLS is bare Caddy over the same TLS: the certificate, TLS 1.2
// and 1.3, for FDX the example's suites and client authentication; no
// handler but reverse_proxy, no listener wrapper. It runs with the
// binary's own collector settings, as the mxgate sites do, so that the
// difference between them is the handlers and the wrappers.
func caddyBareTLS(port, up int, p *pki, fdx bool) string {
	tlsBlock := "protocols tls1.2 tls1.3"
	if fdx {
		tlsBlock += "\n\t\tciphers " + fapiCiphers + "\n\t\tclient_auth {\n\t\t\tmode require_and_verify\n\t\t\ttrust_pool file " + p.ca + "\n\t\t}"
	}
	return fmt.Sprintf(`{
	admin off
	auto_https disable_redirects
	skip_install_trust
	servers {
		protocols h1 h2
	}
	log {
		level ERROR
	}
}
https://%[1]s:%[2]d {
	bind 127.0.0.1
	tls %[3]s %[4]s {
		%[5]s
	}
	reverse_proxy 127.0.0.1:%[6]d {
		transport http {
			keepalive_idle_conns_per_host 128
		}
	}
}
`, p.serverName, port, p.cert, p.key, tlsBlock, up)
}

// tlsChainCaddyfile is the MDX site with the server settings of
// examples/production/mdx-ingress.Caddyfile (tcp-handover; listener
// wrappers mx_ip_allow, mx_conn_limit with answer close, mx_server_name
// and tls; strict_sni_host; protocols h1 h2; its timeouts; TLS 1.2 and
// 1.3 with the FI's certificate) and the tuned chain's handlers (as
// chainCaddyfile; no access log, as no other target writes one; the
// example's mdx_sanitize left out, as the nginx gateway does not
// sanitize). o.store and o.getLimit as chainCaddyfile's.
func tlsChainCaddyfile(port, up int, p *pki, o chainOptions) string {
	bindIP := o.bind
	if bindIP == "" {
		bindIP = "127.0.0.1"
	}
	storeLine := ""
	if o.store != "" {
		storeLine = "\n\t\tstore redis " + o.store
	}
	get := "100000000/s"
	if o.getLimit != "" {
		get = o.getLimit
	}
	return fmt.Sprintf(`{
	admin {ADMIN}
	default_bind tcp-handover/%[10]s
	auto_https disable_redirects
	skip_install_trust
	servers {
		listener_wrappers {
			mx_ip_allow mdx 127.0.0.0/8
			mx_conn_limit {
				max 4096
				answer close
			}
			mx_server_name
			tls
		}
		strict_sni_host on
		protocols h1 h2
		timeouts {
			read_header 10s
			read_body 30s
			write 60s
			idle 2m
		}
	}
	log {
		level ERROR
		format mxgate_redact
	}
}
https://%[1]s:%[2]d {
	tls %[3]s %[4]s {
		protocols tls1.2 tls1.3
	}
	mx_shed %[5]d
	mx_ip_allow mdx {
		ranges 127.0.0.0/8 ::1
	}
	mdx_hmac verify {
		key %[6]s
		algorithm sha1
		max_skew 5m
		replay_window 10m
		replay_cache_size 8000000%[7]s
	}
	mx_rate_limit {
		get %[8]s
		write 100000000/s%[7]s
	}
	reverse_proxy 127.0.0.1:%[9]d {
		transport http {
			keepalive_idle_conns_per_host 128
		}
	}
}
`, p.serverName, port, p.cert, p.key, tunedMaxInFlight, demoKey, storeLine, get, up, bindIP)
}

// productionFDX is examples/production/fdx-resource-server.Caddyfile with
// only what ties it to a production host replaced, as the e2e tests do:
// /etc/mxgate, the public address and name, the data provider (the
// upstream), the loopback ports of metrics and readiness; and its
// access log left out, as no other target writes one.
func productionFDX(dir string, port, up int, p *pki) (string, error) {
	name := filepath.Join(dir, "fdx-resource-server.Caddyfile")
	b, err := os.ReadFile(name)
	if err != nil {
		return "", err
	}
	cf := string(b)
	for _, r := range [][2]string{
		{"/etc/mxgate/", p.etc + "/"},
		{"tcp-handover/0.0.0.0", "tcp-handover/127.0.0.1"},
		{":443", fmt.Sprintf(":%d", port)},
		{"fdx.bank.example", p.serverName},
		{"https://fdx-api.internal:8443", fmt.Sprintf("http://127.0.0.1:%d", up)},
		{":2022", fmt.Sprintf(":%d", harness.FreePort())},
		{":9182", fmt.Sprintf(":%d", harness.FreePort())},
		{"\tlog {\n\t\tformat mxgate_redact\n\t}\n\t# a refusal's directive", "\t# a refusal's directive"},
	} {
		if !strings.Contains(cf, r[0]) {
			return "", fmt.Errorf("%s no longer holds %q", name, r[0])
		}
		cf = strings.ReplaceAll(cf, r[0], r[1])
	}
	return cf, nil
}

// productionDir holds the production examples, relative to the
// repository's root, where the command runs.
var productionDir = filepath.Join("examples", "production")

// logTLS logs what a TLS target's connection negotiated.
func logTLS(t *target, c *conn) {
	if tc, ok := c.nc.(*tls.Conn); ok {
		t.negotiated = describeTLS(tc.ConnectionState())
		log.Printf("%-12s %s", t.name, t.negotiated)
	}
}
