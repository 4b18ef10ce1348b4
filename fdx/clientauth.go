package fdx

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ClientAuth authenticates the gateway, as an OAuth 2.0 client, in a
// request to the authorization server (introspection). Implementations
// are safe for concurrent use.
type ClientAuth interface {
	// Authenticate adds the client's credentials to a request's headers
	// and form. Its error holds no secret.
	Authenticate(h http.Header, form url.Values) error
	// MutualTLS reports whether the client authenticates with its TLS
	// certificate, and so uses the server's mutual-TLS endpoint aliases.
	MutualTLS() bool
}

// ClientSecretBasic is client_secret_basic (RFC 6749 §2.3.1): the client
// id and secret, form-encoded, in a Basic Authorization header.
type ClientSecretBasic struct{ ClientID, Secret string }

// Authenticate implements ClientAuth.
func (c ClientSecretBasic) Authenticate(h http.Header, _ url.Values) error {
	r := http.Request{Header: h}
	r.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.Secret))
	return nil
}

// MutualTLS implements ClientAuth.
func (ClientSecretBasic) MutualTLS() bool { return false }

// TLSClientAuth is tls_client_auth (RFC 8705 §2): the client is who its
// TLS certificate, presented by the http.Client, says; the request names
// its client_id.
type TLSClientAuth struct{ ClientID string }

// Authenticate implements ClientAuth.
func (c TLSClientAuth) Authenticate(_ http.Header, form url.Values) error {
	form.Set("client_id", c.ClientID)
	return nil
}

// MutualTLS implements ClientAuth.
func (TLSClientAuth) MutualTLS() bool { return true }

// PrivateKeyJWT is private_key_jwt (RFC 7523 §2.2, OpenID Connect Core
// §9): each request carries a fresh assertion signed with the client's
// private key, with iss and sub the client id, aud the authorization
// server's issuer identifier (which FAPI 2.0 requires servers to accept),
// a unique jti and a lifetime of a minute.
type PrivateKeyJWT struct {
	ClientID string
	Audience string
	Key      crypto.Signer
	// Algorithm is the assertion's; AlgorithmFor(Key) if empty.
	Algorithm jose.SignatureAlgorithm
	// KeyID, if set, is the assertion's kid (a server that looks keys up
	// by kid needs it; one that tries each registered key does not).
	KeyID string
	Now   func() time.Time
}

// assertionLifetime is how long a client assertion is valid.
const assertionLifetime = time.Minute

// Authenticate implements ClientAuth.
func (c PrivateKeyJWT) Authenticate(_ http.Header, form url.Values) error {
	alg := c.Algorithm
	if alg == "" {
		var err error
		if alg, err = AlgorithmFor(c.Key); err != nil {
			return err
		}
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if c.KeyID != "" {
		opts = opts.WithHeader("kid", c.KeyID)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: c.Key}, opts)
	if err != nil {
		return errors.New("fdx: the client assertion key cannot sign")
	}
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	var id [18]byte
	if _, err := rand.Read(id[:]); err != nil {
		return errors.New("fdx: no randomness for a client assertion's jti")
	}
	assertion, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: c.ClientID, Subject: c.ClientID, Audience: jwt.Audience{c.Audience},
		ID: base64.RawURLEncoding.EncodeToString(id[:]), IssuedAt: jwt.NewNumericDate(now),
		Expiry: jwt.NewNumericDate(now.Add(assertionLifetime)),
	}).Serialize()
	if err != nil {
		return errors.New("fdx: the client assertion could not be signed")
	}
	form.Set("client_id", c.ClientID)
	form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
	form.Set("client_assertion", assertion)
	return nil
}

// MutualTLS implements ClientAuth.
func (PrivateKeyJWT) MutualTLS() bool { return false }

// AlgorithmFor returns the JWS algorithm a client signs with using key:
// PS256 for RSA (2048 bits at least), ES256, ES384 or ES512 for ECDSA by
// curve, EdDSA for Ed25519.
func AlgorithmFor(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return "", errors.New("fdx: an RSA client key must have 2048 bits at least")
		}
		return jose.PS256, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
		return "", errors.New("fdx: an ECDSA client key must be on P-256, P-384 or P-521")
	case ed25519.PrivateKey:
		return jose.EdDSA, nil
	}
	return "", fmt.Errorf("fdx: a client key of type %T cannot sign assertions", key)
}

// ParsePrivateKeyPEM reads the first private key of a PEM document
// (PKCS #8, PKCS #1 or SEC 1). Its errors never hold the key.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("fdx: no PEM private key found")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("fdx: the %s does not parse", block.Type)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, errors.New("fdx: the private key cannot sign")
		}
		if _, err := AlgorithmFor(signer); err != nil {
			return nil, err
		}
		return signer, nil
	}
}
