package fdx

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ErrInvalidToken matches every token failure (errors.Is); errors.As with
// a *TokenError gives its reason.
var ErrInvalidToken = errors.New("invalid token")

// ErrUnavailable is wrapped when a token cannot be checked because the
// authorization server cannot be reached: the introspection endpoint is
// down or answers wrongly, or the JWKS cannot be fetched and holds no key
// for the token. The token may be valid; the caller should answer 503.
var ErrUnavailable = errors.New("fdx: authorization server unavailable")

// TokenError is a token failure. Its Reason (expired, wrong audience, …)
// is safe to show: it never holds the token.
type TokenError struct{ Reason string }

func (e *TokenError) Error() string { return "invalid token: " + e.Reason }

// Is makes every TokenError match ErrInvalidToken.
func (e *TokenError) Is(target error) bool { return target == ErrInvalidToken }

func invalid(reason string) error { return &TokenError{Reason: reason} }

// Claims are what a valid access token says.
type Claims struct {
	Issuer, Subject, ClientID string
	Scopes                    []string
	Expiry                    time.Time
	// CertThumbprint is cnf.x5t#S256: base64url, unpadded, of the SHA-256
	// of the client certificate the token is bound to; empty if unbound.
	CertThumbprint string
	// KeyThumbprint is cnf.jkt: the RFC 7638 SHA-256 thumbprint of the
	// public key a DPoP-bound token is bound to (RFC 9449 §6); empty if
	// the token is not DPoP-bound.
	KeyThumbprint string
	// All holds every claim, for forwarding.
	All map[string]any
}

// Thumbprint returns the RFC 8705 x5t#S256 of a certificate.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// BoundTo reports, in constant time, whether the token is bound to cert.
func (c *Claims) BoundTo(cert *x509.Certificate) bool {
	if c.CertThumbprint == "" || cert == nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.CertThumbprint), []byte(Thumbprint(cert))) == 1
}

// KeySource finds the public key a token names.
type KeySource interface {
	Key(ctx context.Context, kid string, alg jose.SignatureAlgorithm) (any, error)
}

// Algorithms allowed for access tokens. None and the HMAC family never are.
var asymmetric = []jose.SignatureAlgorithm{jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512, jose.EdDSA}

// ParseAlgorithm accepts an asymmetric JWS algorithm; none and HS* are
// refused.
func ParseAlgorithm(s string) (jose.SignatureAlgorithm, error) {
	a := jose.SignatureAlgorithm(s)
	if slices.Contains(asymmetric, a) {
		return a, nil
	}
	return "", fmt.Errorf("fdx: algorithm %q refused: only asymmetric JWS algorithms (PS256, ES256, …) are allowed", s)
}

// Validator checks RFC 9068 JWT access tokens. It is safe for concurrent
// use once configured.
type Validator struct {
	Issuer     string
	Audiences  []string // the token's aud must hold one of them
	Algorithms []jose.SignatureAlgorithm
	Leeway     time.Duration
	Keys       KeySource
	Now        func() time.Time
}

type accessClaims struct {
	jwt.Claims
	ClientID string          `json:"client_id"`
	Scope    json.RawMessage `json:"scope"`
	Scp      []string        `json:"scp"`
}

// LooksLikeJWT reports whether tok has the three-part shape of a JWS.
func LooksLikeJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// Validate checks a JWT access token and returns its claims.
func (v *Validator) Validate(ctx context.Context, raw string) (*Claims, error) {
	tok, err := jwt.ParseSigned(raw, v.Algorithms)
	if err != nil {
		if strings.Contains(err.Error(), "unexpected signature algorithm") {
			return nil, invalid("signature algorithm not allowed")
		}
		return nil, invalid("malformed token")
	}
	if len(tok.Headers) != 1 {
		return nil, invalid("malformed token")
	}
	h := tok.Headers[0]
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if t := strings.ToLower(typ); t != "at+jwt" && t != "application/at+jwt" {
		return nil, invalid("typ must be at+jwt")
	}
	key, err := v.Keys.Key(ctx, h.KeyID, jose.SignatureAlgorithm(h.Algorithm))
	if err != nil {
		return nil, err
	}
	var c accessClaims
	var all map[string]any
	if err := tok.Claims(key, &c, &all); err != nil {
		return nil, invalid("signature does not verify")
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	switch {
	case c.Expiry == nil:
		return nil, invalid("exp missing")
	case c.IssuedAt == nil:
		return nil, invalid("iat missing")
	case c.Subject == "":
		return nil, invalid("sub missing")
	case c.ClientID == "":
		return nil, invalid("client_id missing")
	case len(c.Audience) == 0:
		return nil, invalid("aud missing")
	}
	err = c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: v.Issuer, AnyAudience: v.Audiences, Time: now}, v.Leeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return nil, invalid("wrong issuer")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, invalid("wrong audience")
	case errors.Is(err, jwt.ErrExpired):
		return nil, invalid("expired")
	case errors.Is(err, jwt.ErrNotValidYet):
		return nil, invalid("not yet valid")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, invalid("issued in the future")
	case err != nil:
		return nil, invalid("claims do not validate")
	}
	scopes, err := parseScopes(c.Scope, c.Scp)
	if err != nil {
		return nil, err
	}
	x5t, jkt, err := confirmation(all)
	if err != nil {
		return nil, err
	}
	return &Claims{
		Issuer: c.Issuer, Subject: c.Subject, ClientID: c.ClientID, Scopes: scopes,
		Expiry: c.Expiry.Time(), CertThumbprint: x5t, KeyThumbprint: jkt, All: all,
	}, nil
}

// confirmation reads a token's cnf claim (RFC 7800): the certificate
// thumbprint of RFC 8705 (x5t#S256) and the key thumbprint of RFC 9449
// (jkt). A cnf that is not an object, a member of either that is not a
// non-empty string, or any other confirmation method (jwk, kid, jku, …)
// makes the token invalid: a token bound by a method the gateway does not
// check must not pass as a bearer token.
func confirmation(all map[string]any) (x5t, jkt string, err error) {
	raw, ok := all["cnf"]
	if !ok || raw == nil {
		return "", "", nil
	}
	cnf, ok := raw.(map[string]any)
	if !ok {
		return "", "", invalid("cnf is not an object")
	}
	for name, v := range cnf {
		s, isStr := v.(string)
		switch {
		case name != "x5t#S256" && name != "jkt":
			return "", "", invalid("cnf names a confirmation method other than x5t#S256 and jkt")
		case !isStr || s == "":
			return "", "", invalid("cnf." + name + " is not a thumbprint")
		case name == "jkt":
			jkt = s
		default:
			x5t = s
		}
	}
	return x5t, jkt, nil
}

// parseScopes reads scope (a space-separated string, RFC 9068) or scp.
func parseScopes(scope json.RawMessage, scp []string) ([]string, error) {
	if len(scope) == 0 || string(scope) == "null" {
		return scp, nil
	}
	var s string
	if err := json.Unmarshal(scope, &s); err == nil {
		return strings.Fields(s), nil
	}
	var list []string
	if err := json.Unmarshal(scope, &list); err == nil {
		return list, nil
	}
	return nil, invalid("scope is neither a string nor a list")
}
