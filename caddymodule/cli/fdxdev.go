package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/fdx"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "fdx-dev",
		Usage: "--dir <dir> [--valid <duration>] [--scope <scopes>]",
		Short: "Makes certificates, keys and a bound access token for trying fdx_auth locally",
		Long: `
Writes, into --dir, everything needed to try an FDX site of mxgate on this
machine, for development only:

  ca.pem                      a certificate authority (trust pool and client CA)
  server.pem, server-key.pem  a server certificate for localhost, 127.0.0.1, ::1
  client.pem, client-key.pem  a client certificate
  other-client.pem, other-client-key.pem   another one, to show token binding
  as-key.json                 the signing key of a stand-in authorization server
  public/jwks.json            its public key set (serve this directory alone)
  token.txt                   an at+jwt access token bound to client.pem

Run again, it keeps the certificates and keys and mints a fresh token.
`,
		CobraFunc: func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.String("dir", ".dev/fdx", "output directory")
			f.Duration("valid", time.Hour, "token lifetime")
			f.String("scope", "fdx:accountbasic:read fdx:accountdetailed:read fdx:transactions:read fdx:customercontact:read fdx:customerpersonal:read fdx:paymentsupport:read fdx:notifications:subscribe", "token scopes")
			f.String("issuer", "https://as.fdx.localhost", "token issuer")
			f.String("audience", "https://fdx.localhost", "token audience")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fs caddycmd.Flags) (int, error) {
				if err := fdxDev(fs.String("dir"), fs.Duration("valid"), fs.String("scope"), fs.String("issuer"), fs.String("audience")); err != nil {
					return 1, err
				}
				return 0, nil
			})
		},
	})
}

func fdxDev(dir string, valid time.Duration, scope, issuer, audience string) error {
	if err := os.MkdirAll(filepath.Join(dir, "public"), 0o700); err != nil {
		return err
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	if _, err := os.Stat(path("ca.pem")); errors.Is(err, os.ErrNotExist) {
		if err := makePKI(path); err != nil {
			return err
		}
	}
	keyJSON, err := os.ReadFile(path("as-key.json"))
	if err != nil {
		return err
	}
	var key jose.JSONWebKey
	if err := json.Unmarshal(keyJSON, &key); err != nil {
		return fmt.Errorf("as-key.json: %w", err)
	}
	certPEM, err := os.ReadFile(path("client.pem"))
	if err != nil {
		return err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return errors.New("client.pem: no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	now := time.Now()
	tok, err := MintAccessToken(key, map[string]any{
		"iss": issuer, "aud": audience, "sub": "demo-user", "client_id": "demo-recipient",
		"iat": now.Unix(), "exp": now.Add(valid).Unix(), "jti": uuid.NewString(), "scope": scope,
		"cnf": map[string]string{"x5t#S256": fdx.Thumbprint(cert)},
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(path("token.txt"), []byte(tok+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Printf("fdx-dev: %s holds the CA, certificates, keys and a token valid until %s\n", dir, now.Add(valid).Format(time.RFC3339))
	return nil
}

// MintAccessToken signs claims as an RFC 9068 at+jwt with key (a private
// JSON Web Key with kid and alg).
func MintAccessToken(key jose.JSONWebKey, claims map[string]any) (string, error) {
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("kid", key.KeyID)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key.Key}, opts)
	if err != nil {
		return "", err
	}
	return jwt.Signed(s).Claims(claims).Serialize()
}

func makePKI(path func(string) string) error {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "mxgate fdx-dev CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePEM(path("ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	leaf := func(name string, server bool) error {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		t := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(0, 3, 0),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if server {
			t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			t.DNSNames = []string{"localhost"}
			t.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		der, err := x509.CreateCertificate(rand.Reader, t, ca, &k.PublicKey, caKey)
		if err != nil {
			return err
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(k)
		file := strings.ReplaceAll(name, " ", "-")
		if err := writePEM(path(file+".pem"), "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		return writePEM(path(file+"-key.pem"), "PRIVATE KEY", kder, 0o600)
	}
	for _, l := range []struct {
		name   string
		server bool
	}{{"server", true}, {"client", false}, {"other-client", false}} {
		if err := leaf(l.name, l.server); err != nil {
			return err
		}
	}
	asKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk := jose.JSONWebKey{Key: asKey, KeyID: "fdx-dev-" + uuid.NewString()[:8], Algorithm: string(jose.ES256), Use: "sig"}
	priv, _ := json.MarshalIndent(jwk, "", "  ")
	if err := os.WriteFile(path("as-key.json"), priv, 0o600); err != nil {
		return err
	}
	pub, _ := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}}, "", "  ")
	return os.WriteFile(path(filepath.Join("public", "jwks.json")), pub, 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}
