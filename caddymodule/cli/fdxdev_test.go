package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mxgate/mxgate/fdx"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func validate(t *testing.T, dir, token string) (*fdx.Claims, error) {
	t.Helper()
	jwks := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "public"))))
	t.Cleanup(jwks.Close)
	v := &fdx.Validator{Issuer: "https://as.fdx.localhost", Audiences: []string{"https://fdx.localhost"}, Algorithms: []jose.SignatureAlgorithm{jose.ES256},
		Leeway: time.Minute, Keys: &fdx.JWKS{URL: jwks.URL + "/jwks.json"}}
	return v.Validate(context.Background(), strings.TrimSpace(token))
}

// TestFDXDev: fdx-dev writes a PKI and a token that the fdx library
// accepts, bound to client.pem and to no other certificate; run again, it
// keeps the PKI and mints a fresh token.
func TestFDXDev(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fdx")
	_, run := command(t, "fdx-dev", map[string]string{"dir": dir, "valid": "10m", "scope": "fdx:accountbasic:read fdx:transactions:read"})
	out, err := run()
	if err != nil || !strings.HasPrefix(out, "fdx-dev: "+dir+" holds the CA, certificates, keys and a token valid until ") {
		t.Fatalf("%v %q", err, out)
	}
	for name, mode := range map[string]os.FileMode{
		"ca.pem": 0o644, "server.pem": 0o644, "server-key.pem": 0o600, "client.pem": 0o644, "client-key.pem": 0o600,
		"other-client.pem": 0o644, "other-client-key.pem": 0o600, "as-key.json": 0o600, "public/jwks.json": 0o644, "token.txt": 0o600,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %v", name, fi.Mode(), err, mode)
		}
	}
	if pub, _ := os.ReadFile(filepath.Join(dir, "public", "jwks.json")); strings.Contains(string(pub), `"d"`) {
		t.Error("the public key set holds the private key")
	}

	ca, client, other, server := readCert(t, filepath.Join(dir, "ca.pem")), readCert(t, filepath.Join(dir, "client.pem")),
		readCert(t, filepath.Join(dir, "other-client.pem")), readCert(t, filepath.Join(dir, "server.pem"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client.pem does not chain to ca.pem: %v", err)
	}
	if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost"}); err != nil {
		t.Errorf("server.pem is not valid for localhost: %v", err)
	}

	token, _ := os.ReadFile(filepath.Join(dir, "token.txt"))
	claims, err := validate(t, dir, string(token))
	if err != nil {
		t.Fatalf("the token does not validate: %v", err)
	}
	if !claims.BoundTo(client) || claims.BoundTo(other) {
		t.Error("the token is not bound to client.pem alone")
	}
	if strings.Join(claims.Scopes, " ") != "fdx:accountbasic:read fdx:transactions:read" || claims.ClientID != "demo-recipient" {
		t.Errorf("claims %+v", claims)
	}
	if until := time.Until(claims.Expiry); until <= 9*time.Minute || until > 11*time.Minute {
		t.Errorf("expires in %v, want 10m", until)
	}

	// again: same PKI, a fresh token
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if _, err := run(); err != nil {
		t.Fatal(err)
	}
	caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	token2, _ := os.ReadFile(filepath.Join(dir, "token.txt"))
	if string(caAfter) != string(caBefore) || string(token2) == string(token) {
		t.Error("a second run replaced the PKI or kept the token")
	}
	if _, err := validate(t, dir, string(token2)); err != nil {
		t.Errorf("the second token does not validate: %v", err)
	}
}

func TestFDXDevErrors(t *testing.T) {
	template := t.TempDir()
	if _, err := stdout(t, func() error { return fdxDev(template, time.Hour, "s", "https://as", "https://rs") }); err != nil {
		t.Fatal(err)
	}
	fresh := func(t *testing.T) string { // a copy of the template's PKI
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(template)); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for name, c := range map[string]struct {
		spoil func(dir string)
		msg   string
	}{
		"as-key.json not JSON": {func(dir string) { _ = os.WriteFile(filepath.Join(dir, "as-key.json"), []byte("{"), 0o600) }, "as-key.json: "},
		"as-key.json gone":     {func(dir string) { _ = os.Remove(filepath.Join(dir, "as-key.json")) }, "as-key.json"},
		"client.pem not PEM":   {func(dir string) { _ = os.WriteFile(filepath.Join(dir, "client.pem"), []byte("junk"), 0o644) }, "client.pem: no certificate"},
		"client.pem gone":      {func(dir string) { _ = os.Remove(filepath.Join(dir, "client.pem")) }, "client.pem"},
		"client.pem bad DER": {func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, "client.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), 0o644)
		}, "x509"},
	} {
		dir := fresh(t)
		c.spoil(dir)
		_, err := stdout(t, func() error { return fdxDev(dir, time.Hour, "s", "https://as", "https://rs") })
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		}
	}
	// a directory that cannot be made
	file := filepath.Join(t.TempDir(), "file")
	_ = os.WriteFile(file, nil, 0o600)
	if err := fdxDev(filepath.Join(file, "dir"), time.Hour, "s", "https://as", "https://rs"); err == nil {
		t.Error("a directory under a file was made")
	}
}
