package sni

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// serverCert is a self-signed certificate for every name a test asks for.
func serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"fdx.bank.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testServer is an HTTP server behind the wrapper, as Caddy stacks it:
// the wrapper on the socket, TLS over the wrapper (unless plaintext or
// misplaced after it).
type testServer struct {
	addr   string
	served atomic.Int32
	mu     sync.Mutex
	names  []string // the TLS server name of each request served
}

type stacking int

const (
	beforeTLS stacking = iota // as configured: mx_server_name, tls
	plaintext                 // no TLS at all
	afterTLS                  // misplaced: tls, mx_server_name
)

func startServer(t *testing.T, how stacking) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &ServerName{logger: zap.NewNop()}
	cfg := &tls.Config{Certificates: []tls.Certificate{serverCert(t)}, NextProtos: []string{"h2", "http/1.1"}}
	var served net.Listener
	switch how {
	case beforeTLS:
		served = tls.NewListener(s.WrapListener(ln), cfg)
	case plaintext:
		served = s.WrapListener(ln)
	case afterTLS:
		served = s.WrapListener(tls.NewListener(ln, cfg))
	}
	ts := &testServer{addr: ln.Addr().String()}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ts.served.Add(1)
			name := "(no TLS)"
			if r.TLS != nil {
				name = r.TLS.ServerName
			}
			ts.mu.Lock()
			ts.names = append(ts.names, name)
			ts.mu.Unlock()
			fmt.Fprintf(w, "HTTP/%d %s", r.ProtoMajor, name)
		})}
	go func() { _ = srv.Serve(served) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ts
}

// get makes one TLS connection naming sni (none when empty) and one
// request; dial may wrap the client's socket.
func (ts *testServer) get(t *testing.T, sni string, h2 bool, dial func(net.Conn) net.Conn) (string, error) {
	t.Helper()
	cfg := &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
	if h2 {
		cfg.NextProtos = []string{"h2"}
	}
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", ts.addr)
			if err != nil {
				return nil, err
			}
			c := raw
			if dial != nil {
				c = dial(raw)
			}
			tc := tls.Client(c, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = raw.Close()
				return nil, err
			}
			return tc, nil
		},
		ForceAttemptHTTP2: h2,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ts.addr+"/", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// count reads mxgate_listener_server_name_refused_total{reason}.
func count(t *testing.T, reason string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(refused); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("gather: %v", err)
	}
	for _, m := range mfs[0].GetMetric() {
		if l := m.GetLabel(); len(l) == 1 && l[0].GetValue() == reason {
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series for reason %q", reason)
	return 0
}

func TestServesHostNames(t *testing.T) {
	ts := startServer(t, beforeTLS)
	for _, sni := range []string{"fdx.bank.example", "FDX.Bank.Example", "xn--ban-0k1a.example", "localhost", ""} {
		for _, h2 := range []bool{false, true} {
			got, err := ts.get(t, sni, h2, nil)
			want := fmt.Sprintf("HTTP/%d %s", map[bool]int{false: 1, true: 2}[h2], sni)
			if err != nil || got != want {
				t.Errorf("%q (h2 %v): %q, %v; want %q", sni, h2, got, err, want)
			}
		}
	}
}

func TestRefusesNamesReadOtherwise(t *testing.T) {
	ts := startServer(t, beforeTLS)
	for _, c := range []struct {
		sni, reason string
	}{
		{"fdx.ban\u212a.example", "not_ascii"},  // KELVIN SIGN
		{"fdx\u017f.bank.example", "not_ascii"}, // long s
		{"fdx.bank.example\u3002", "not_ascii"}, // ideographic full stop
		{" fdx.bank.example", "malformed"},      // certificate lookup trims it
		{"fdx.bank.example\x00", "malformed"},
		{"fdx..bank.example", "malformed"},
		{".fdx.bank.example", "malformed"},
		{"fdx.bank.example:443", "malformed"},
	} {
		for _, h2 := range []bool{false, true} {
			before := count(t, c.reason)
			_, err := ts.get(t, c.sni, h2, nil)
			if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
				t.Errorf("%q (h2 %v): %v, want an unrecognized_name alert", c.sni, h2, err)
			}
			if d := count(t, c.reason) - before; d != 1 {
				t.Errorf("%q: counted %v times", c.sni, d)
			}
		}
	}
	if n := ts.served.Load(); n != 0 {
		t.Fatalf("%d request(s) served", n)
	}
}

// trickle writes one byte at a time, each write its own segment, so that
// the ClientHello arrives in as many reads as the server makes of it.
type trickle struct{ net.Conn }

func (c trickle) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

func TestHelloInPieces(t *testing.T) {
	ts := startServer(t, beforeTLS)
	tr := func(c net.Conn) net.Conn {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		return trickle{c}
	}
	if got, err := ts.get(t, "fdx.bank.example", true, tr); err != nil || got != "HTTP/2 fdx.bank.example" {
		t.Fatalf("a good name in pieces: %q, %v", got, err)
	}
	if _, err := ts.get(t, "fdx.ban\u212a.example", true, tr); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("a bad name in pieces: %v", err)
	}
	if n := ts.served.Load(); n != 1 {
		t.Fatalf("%d request(s) served, want 1", n)
	}
}

func TestPlaintextPassesThrough(t *testing.T) {
	ts := startServer(t, plaintext)
	resp, err := http.Get("http://" + ts.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/1 (no TLS)" {
		t.Fatalf("plaintext: %q", b)
	}
}

// rawExchange writes b on a new connection and reads what comes back
// until the server closes it.
func rawExchange(t *testing.T, addr string, b []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server neither answered nor closed")
	}
	return got
}

func TestHandshakeRecordWithoutHelloRefused(t *testing.T) {
	ts := startServer(t, beforeTLS)
	for name, b := range map[string][]byte{
		"not a handshake message":  {22, 3, 1, 0, 4, 99, 0, 0, 0},
		"a record over the limit":  append([]byte{22, 3, 1, 0xff, 0xff}, make([]byte, 1024)...),
		"a message over the limit": append([]byte{22, 3, 1, 0, 8, 1, 0xff, 0xff, 0xff}, make([]byte, 4)...),
		"a malformed hello":        {22, 3, 1, 0, 8, 1, 0, 0, 4, 3, 3, 0, 0},
	} {
		before := count(t, "no_client_hello")
		got := rawExchange(t, ts.addr, b)
		if string(got) != string(alertUnrecognizedName) {
			t.Errorf("%s: got %x, want the unrecognized_name alert", name, got)
		}
		if d := count(t, "no_client_hello") - before; d != 1 {
			t.Errorf("%s: counted %v times", name, d)
		}
	}
	if n := ts.served.Load(); n != 0 {
		t.Fatalf("%d request(s) served", n)
	}
}

// TestSilentClientHoldsNoOneElse: a client that opens a connection and
// sends the first byte of a handshake, then nothing, does not stop the
// next client being served: the name is read on each connection's own
// goroutine, not at accept.
func TestSilentClientHoldsNoOneElse(t *testing.T) {
	ts := startServer(t, beforeTLS)
	for range 4 {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{22}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := ts.get(t, "fdx.bank.example", false, nil); err != nil || got != "HTTP/1 fdx.bank.example" {
		t.Fatalf("behind silent clients: %q, %v", got, err)
	}
}

func TestAfterTLSRefusesEverything(t *testing.T) {
	ts := startServer(t, afterTLS)
	before := count(t, "misplaced")
	if _, err := ts.get(t, "fdx.bank.example", false, nil); err == nil {
		t.Fatal("served through a misplaced wrapper")
	}
	if d := count(t, "misplaced") - before; d != 1 {
		t.Fatalf("counted %v times", d)
	}
}

// clientHello returns the first flight of a TLS client naming sni.
func clientHello(t testing.TB, sni string) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		_ = tls.Client(client, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake()
		_ = client.Close()
	}()
	buf := make([]byte, 64<<10)
	n, err := server.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestReplayIsExact: what the check reads (the ClientHello, and whatever
// arrived with it) is handed on byte for byte, whatever the sizes of the
// reads that follow.
func TestReplayIsExact(t *testing.T) {
	stream := append(clientHello(t, "fdx.bank.example"), "and what came right behind it"...)
	for _, size := range []int{1, 7, 512, 64 << 10} {
		client, server := net.Pipe()
		go func() {
			_, _ = client.Write(stream)
			_ = client.Close()
		}()
		c := &conn{Conn: server, s: &ServerName{logger: zap.NewNop()}}
		var got []byte
		buf := make([]byte, size)
		for {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if string(got) != string(stream) {
			t.Fatalf("reads of %d: got %d bytes, want the %d sent", size, len(got), len(stream))
		}
	}
}
