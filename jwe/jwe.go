package jwe

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Errors. ErrDecrypt is the only error Decrypt returns for a JWE that does
// not decrypt, whatever the reason, so that a failure tells an attacker
// nothing.
var (
	ErrDecrypt          = errors.New("jwe: cannot decrypt")
	ErrInvalidPublicKey = errors.New("jwe: invalid public key")
	ErrUnsupportedCurve = errors.New("jwe: unsupported curve")
	ErrUnknownCipher    = errors.New("jwe: unsupported cipher")
)

// Curve is an ECDH curve MX accepts.
type Curve uint8

// The curves. P384 is MX's recommendation.
const (
	P384 Curve = iota + 1
	P256
)

// ParseCurve accepts p384, p-384, secp384r1, p256, p-256, secp256r1 and
// prime256v1, in any case.
func ParseCurve(s string) (Curve, error) {
	switch strings.ToLower(s) {
	case "p384", "p-384", "secp384r1":
		return P384, nil
	case "p256", "p-256", "secp256r1", "prime256v1":
		return P256, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrUnsupportedCurve, s)
}

func (c Curve) elliptic() elliptic.Curve {
	if c == P256 {
		return elliptic.P256()
	}
	return elliptic.P384()
}

// String returns the curve's SEC name, as MX's error messages use it.
func (c Curve) String() string {
	switch c {
	case P384:
		return "secp384r1"
	case P256:
		return "secp256r1"
	}
	return "unknown"
}

// Cipher is the content cipher a client names in its Content-Type.
type Cipher uint8

// The ciphers. A256GCM is MX's recommendation.
const (
	A256GCM Cipher = iota + 1
	A128GCM
)

// ParseCipher accepts a256gcm and a128gcm, in any case.
func ParseCipher(s string) (Cipher, error) {
	switch strings.ToLower(s) {
	case "a256gcm":
		return A256GCM, nil
	case "a128gcm":
		return A128GCM, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrUnknownCipher, s)
}

// String returns the cipher's name as in the Content-Type: a256gcm or a128gcm.
func (c Cipher) String() string {
	switch c {
	case A256GCM:
		return "a256gcm"
	case A128GCM:
		return "a128gcm"
	}
	return "unknown"
}

// ContentType is the request Content-Type that asks for c.
func (c Cipher) ContentType() string { return "application/encrypted." + c.String() + "+json" }

// CipherFromContentType returns the cipher named by a Content-Type of the
// form application/encrypted.<cipher>+json; ok is false when ct is not of
// that form at all, err is ErrUnknownCipher (wrapped, naming it) when it
// names another cipher.
func CipherFromContentType(ct string) (c Cipher, name string, ok bool, err error) {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	rest, ok := strings.CutPrefix(mt, "application/encrypted.")
	if !ok {
		return 0, "", false, nil
	}
	name, ok = strings.CutSuffix(rest, "+json")
	if !ok {
		return 0, "", false, nil
	}
	c, err = ParseCipher(name)
	return c, name, true, err
}

// Suite is a key algorithm and a content encryption.
type Suite struct {
	Key     jose.KeyAlgorithm
	Content jose.ContentEncryption
}

// SuiteFor returns the suite MX uses for c: ECDH-ES+A256KW with A256GCM,
// or ECDH-ES+A128KW with A128GCM.
func SuiteFor(c Cipher) Suite {
	if c == A128GCM {
		return Suite{jose.ECDH_ES_A128KW, jose.A128GCM}
	}
	return Suite{jose.ECDH_ES_A256KW, jose.A256GCM}
}

// ParseKeyAlgorithm accepts the ECDH-ES key algorithms: ECDH-ES,
// ECDH-ES+A128KW, ECDH-ES+A192KW and ECDH-ES+A256KW.
func ParseKeyAlgorithm(s string) (jose.KeyAlgorithm, error) {
	for _, a := range []jose.KeyAlgorithm{jose.ECDH_ES, jose.ECDH_ES_A128KW, jose.ECDH_ES_A192KW, jose.ECDH_ES_A256KW} {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("jwe: key algorithm %q is not an ECDH-ES algorithm", s)
}

// PrivateKey is an ephemeral ECDH key pair of the requesting side. Its
// String never reveals the private key.
type PrivateKey struct {
	curve  Curve
	priv   *ecdsa.PrivateKey
	header string // X-Public-Key
}

// GenerateKey makes a fresh key pair on c.
func GenerateKey(c Curve) (*PrivateKey, error) {
	priv, err := ecdsa.GenerateKey(c.elliptic(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{curve: c, priv: priv, header: base64.StdEncoding.EncodeToString(der)}, nil
}

// PublicKeyHeader is the X-Public-Key value: base64 DER SubjectPublicKeyInfo.
func (k *PrivateKey) PublicKeyHeader() string { return k.header }

// Curve returns the key's curve.
func (k *PrivateKey) Curve() Curve { return k.curve }

// String implements fmt.Stringer without revealing the key.
func (k *PrivateKey) String() string { return "jwe.PrivateKey(" + k.curve.String() + ", redacted)" }

// GoString implements fmt.GoStringer without revealing the key.
func (k *PrivateKey) GoString() string { return k.String() }

// ParsePublicKeyHeader decodes an X-Public-Key value. It returns
// ErrInvalidPublicKey for anything that is not a base64 DER EC public key,
// and an error wrapping ErrUnsupportedCurve, whose CurveName is the SEC name
// of the curve, for an EC key on a curve other than P-384 or P-256.
func ParsePublicKeyHeader(s string) (*ecdsa.PublicKey, Curve, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(der) == 0 {
		return nil, 0, ErrInvalidPublicKey
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, 0, ErrInvalidPublicKey
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, 0, ErrInvalidPublicKey
	}
	switch ec.Curve {
	case elliptic.P384():
		return ec, P384, nil
	case elliptic.P256():
		return ec, P256, nil
	}
	return nil, 0, &UnsupportedCurveError{Name: secName(ec.Curve)}
}

// UnsupportedCurveError names a curve MX does not use.
type UnsupportedCurveError struct{ Name string }

func (e *UnsupportedCurveError) Error() string { return "jwe: unsupported curve " + e.Name }

// Unwrap makes errors.Is(err, ErrUnsupportedCurve) true.
func (e *UnsupportedCurveError) Unwrap() error { return ErrUnsupportedCurve }

func secName(c elliptic.Curve) string {
	if c == elliptic.P224() {
		return "secp224r1"
	}
	if c == elliptic.P521() {
		return "secp521r1"
	}
	return c.Params().Name
}

// Encrypt encrypts plaintext to pub with suite, as compact serialization.
// Compression is never used.
func Encrypt(pub *ecdsa.PublicKey, suite Suite, plaintext []byte) (string, error) {
	enc, err := jose.NewEncrypter(suite.Content, jose.Recipient{Algorithm: suite.Key, Key: pub}, nil)
	if err != nil {
		return "", err
	}
	obj, err := enc.Encrypt(plaintext)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// protectedHeader is what Decrypt checks before any cryptography.
type protectedHeader struct {
	Alg  string          `json:"alg"`
	Enc  string          `json:"enc"`
	Zip  *string         `json:"zip"`
	Crit json.RawMessage `json:"crit"`
	Epk  *struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
	} `json:"epk"`
}

// LooksCompact reports whether s has the shape of a compact JWE: five
// base64url segments (the second may be empty, as with ECDH-ES) separated
// by dots, with nothing else.
func LooksCompact(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 5 || parts[0] == "" || parts[2] == "" || parts[4] == "" {
		return false
	}
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Decrypt decrypts a compact JWE with key, accepting only the suites in
// allowed. A JSON-serialised JWE, compression, a critical header, an
// ephemeral key on another curve, an algorithm outside the list, or any
// cryptographic failure all give ErrDecrypt.
func Decrypt(compact string, key *PrivateKey, allowed []Suite) ([]byte, error) {
	if !LooksCompact(compact) {
		return nil, ErrDecrypt
	}
	hdr, _, _ := strings.Cut(compact, ".")
	raw, err := base64.RawURLEncoding.DecodeString(hdr)
	if err != nil {
		return nil, ErrDecrypt
	}
	var ph protectedHeader
	if err := json.Unmarshal(raw, &ph); err != nil {
		return nil, ErrDecrypt
	}
	suite := Suite{jose.KeyAlgorithm(ph.Alg), jose.ContentEncryption(ph.Enc)}
	if ph.Zip != nil || len(ph.Crit) != 0 || ph.Epk == nil || ph.Epk.Kty != "EC" ||
		!slices.Contains(allowed, suite) || !curveMatches(ph.Epk.Crv, key.curve) {
		return nil, ErrDecrypt
	}
	obj, err := jose.ParseEncryptedCompact(compact, []jose.KeyAlgorithm{suite.Key}, []jose.ContentEncryption{suite.Content})
	if err != nil {
		return nil, ErrDecrypt
	}
	out, err := obj.Decrypt(key.priv)
	if err != nil {
		return nil, ErrDecrypt
	}
	return out, nil
}

func curveMatches(crv string, c Curve) bool {
	return (c == P384 && crv == "P-384") || (c == P256 && crv == "P-256")
}
