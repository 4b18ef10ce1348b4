package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"
)

// tlsClients holds the client's TLS configuration for each TLS target's
// address. It is filled while the targets start, before any load runs,
// and only read afterwards.
var tlsClients = map[string]*tls.Config{}

// handshake returns nc itself for a plaintext target, or a TLS client
// connection over it, shaken hands with by deadline, for a TLS one. On a
// failure nc is closed.
func handshake(nc net.Conn, addr string, deadline time.Time) (net.Conn, error) {
	cfg := tlsClients[addr]
	if cfg == nil {
		return nc, nil
	}
	tc := tls.Client(nc, cfg)
	_ = tc.SetDeadline(deadline)
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// tlsVersion is a TLS client's setting: the version it offers and, for
// TLS 1.2, the one cipher suite.
type tlsVersion int

const (
	tls13 tlsVersion = iota
	tls12
)

func (v tlsVersion) String() string {
	if v == tls12 {
		return "TLS 1.2"
	}
	return "TLS 1.3"
}

// benchServerName is the name the targets' certificate holds and the
// client asks for (SNI and Host).
const benchServerName = "localhost"

// clientConfig is the load generator's TLS configuration: only version v
// (for TLS 1.2 only ECDHE-ECDSA-AES128-GCM-SHA256), X25519 for the key
// exchange (Go's client would offer the hybrid X25519MLKEM768 first,
// which Caddy takes and nginx's OpenSSL 3.0 does not know: the two would
// not do the same work; P-256 is offered second, as TLS 1.2 requires the
// curve of an ECDSA certificate among the client's groups), HTTP/1.1 by ALPN, and the client certificate
// when cert is not nil. No session cache: a connection of the closed
// loop shakes hands once and is kept.
func clientConfig(ca string, v tlsVersion, cert *tls.Certificate) (*tls.Config, error) {
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", ca)
	}
	cfg := &tls.Config{
		RootCAs:          pool,
		ServerName:       benchServerName,
		NextProtos:       []string{"http/1.1"},
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
	}
	if v == tls12 {
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

// describeTLS names what a connection negotiated: version, cipher suite,
// key exchange and ALPN protocol.
func describeTLS(cs tls.ConnectionState) string {
	alpn := cs.NegotiatedProtocol
	if alpn == "" {
		alpn = "no ALPN"
	}
	return fmt.Sprintf("%s %s %s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.CurveID, alpn)
}
