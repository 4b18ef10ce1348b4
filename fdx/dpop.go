package fdx

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mxgate/mxgate/replay"
)

// DPoP (RFC 9449) at a resource server: a DPoP-bound access token
// (cnf.jkt) is accepted only with a proof, a JWT the client signs for each
// request with the private key whose public half the token is bound to.
//
// ParseProof does the work that needs nothing but the proof, bounded by
// its size, before the access token is looked at; ProofChecker.Check does
// the rest once the token is known to be valid: the signature, the
// request the proof names, its age, the token's hash, the server nonce,
// the key the token is bound to and, last, the proof's jti, recorded once.

// MaxProofSize bounds a DPoP header, in bytes.
const MaxProofSize = 8 << 10

// ErrInvalidProof matches every proof failure (errors.Is); errors.As with
// a *ProofError gives its challenge code and reason.
var ErrInvalidProof = errors.New("fdx: invalid DPoP proof")

// The error codes of a DPoP challenge (RFC 9449 §7.1, §9).
const (
	// CodeInvalidProof: the proof is missing, malformed or not made for
	// this request.
	CodeInvalidProof = "invalid_dpop_proof"
	// CodeUseNonce: a server nonce is required, and the proof has none
	// or a stale one; a fresh one goes in the DPoP-Nonce header.
	CodeUseNonce = "use_dpop_nonce"
	// CodeInvalidToken: the proof is good but signed with another key
	// than the one the token is bound to.
	CodeInvalidToken = "invalid_token"
)

// ProofError is a proof failure. Its Reason is safe to show: it never
// holds the proof, the token or a key.
type ProofError struct {
	Code   string // CodeInvalidProof, CodeUseNonce or CodeInvalidToken
	Reason string
}

func (e *ProofError) Error() string { return "invalid DPoP proof: " + e.Reason }

// Is makes every ProofError match ErrInvalidProof.
func (e *ProofError) Is(target error) bool { return target == ErrInvalidProof }

func badProof(reason string) error { return &ProofError{Code: CodeInvalidProof, Reason: reason} }

// DefaultProofAlgorithms are the algorithms a proof may use unless told
// otherwise: those of FAPI 2.0 that every client library has.
var DefaultProofAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.PS256}

// Proof is a DPoP proof whose form has been checked but not yet its
// signature nor what it says.
type Proof struct {
	// Thumbprint is the RFC 7638 SHA-256 thumbprint of the proof's key,
	// base64url without padding: what a token's cnf.jkt names.
	Thumbprint string
	jws        *jose.JSONWebSignature
	key        *jose.JSONWebKey
}

// refusedHeaders locate or qualify a key otherwise than by the jwk, or
// change how the proof is read: a proof's key is its jwk and nothing else
// is ever fetched or trusted.
var refusedHeaders = []string{"jku", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64"}

// privateMembers of a JWK; refusedKeyMembers also tie a key to
// certificates, which a proof has no use for.
var (
	privateMembers    = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}
	refusedKeyMembers = []string{"x5c", "x5u", "x5t", "x5t#S256"}
)

// ParseProof checks the form of a DPoP proof, as it came in the DPoP
// header: at most MaxProofSize bytes; a compact JWS with typ dpop+jwt,
// signed with one of algs (none and HMAC algorithms are never accepted,
// whatever algs says), whose header carries the public key as jwk (an EC,
// RSA of 2048 to 4096 bits, or Ed25519 key, with no private member) and
// no jku, x5u, x5c, x5t or crit. The signature is checked by
// ProofChecker.Check.
func ParseProof(raw string, algs []jose.SignatureAlgorithm) (*Proof, error) {
	if len(raw) > MaxProofSize {
		return nil, badProof("the proof is larger than 8 KiB")
	}
	if strings.Count(raw, ".") != 2 {
		return nil, badProof("the proof is not a compact JWS")
	}
	h, _, _ := strings.Cut(raw, ".")
	hb, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return nil, badProof("the proof's header is not base64url")
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr == nil {
		return nil, badProof("the proof's header is not a JSON object")
	}
	for _, name := range refusedHeaders {
		if _, ok := hdr[name]; ok {
			return nil, badProof("the proof's header has " + name + ": its key must be the jwk alone")
		}
	}
	jwkRaw, ok := hdr["jwk"]
	if !ok {
		return nil, badProof("the proof's header has no jwk")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(jwkRaw, &members); err != nil || members == nil {
		return nil, badProof("the proof's jwk is not a JSON object")
	}
	for _, name := range privateMembers {
		if _, ok := members[name]; ok {
			return nil, badProof("the proof's jwk holds private key material")
		}
	}
	for _, name := range refusedKeyMembers {
		if _, ok := members[name]; ok {
			return nil, badProof("the proof's jwk has " + name + ": a proof's key is a bare public key")
		}
	}
	var alg struct {
		Alg string `json:"alg"`
	}
	_ = json.Unmarshal(hb, &alg)
	if !allowedProofAlgorithm(alg.Alg, algs) {
		return nil, badProof("the proof's algorithm is not allowed")
	}
	jws, err := jose.ParseSignedCompact(raw, algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, badProof("the proof is not a well-formed JWS")
	}
	sig := jws.Signatures[0].Header
	if typ, _ := sig.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "dpop+jwt") {
		return nil, badProof("the proof's typ is not dpop+jwt")
	}
	key := sig.JSONWebKey
	if key == nil || !key.IsPublic() {
		return nil, badProof("the proof's header has no public jwk")
	}
	switch k := key.Key.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > 4096 {
			return nil, badProof("the proof's RSA key is not of 2048 to 4096 bits")
		}
	default:
		return nil, badProof("the proof's jwk is not an EC, RSA or Ed25519 public key")
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, badProof("the proof's jwk has no thumbprint")
	}
	return &Proof{Thumbprint: base64.RawURLEncoding.EncodeToString(tp), jws: jws, key: key}, nil
}

// allowedProofAlgorithm reports whether alg is one of algs and asymmetric.
func allowedProofAlgorithm(alg string, algs []jose.SignatureAlgorithm) bool {
	if _, err := ParseAlgorithm(alg); err != nil {
		return false
	}
	for _, a := range algs {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// ProofRequest is the request a proof must have been made for.
type ProofRequest struct {
	// Method is the request's method, compared with htm exactly.
	Method string
	// URL is the request's URL as the client addressed it, without query
	// or fragment, in the form NormalizeHTU gives (RequestHTU makes it).
	URL string
	// AccessToken is the token sent with the proof: ath must be its hash.
	AccessToken string
	// KeyThumbprint is the token's cnf.jkt: the proof's key must be that
	// key.
	KeyThumbprint string
}

// ProofChecker checks DPoP proofs against the requests they come with.
// Fill its fields, then use it; it is safe for concurrent use.
type ProofChecker struct {
	// MaxAge is how old (by its iat) a proof may be. Default: 60s.
	MaxAge time.Duration
	// Leeway is how far in the future a proof's iat may be (clock skew).
	Leeway time.Duration
	// Nonces, if set, requires each proof to carry a nonce it issued
	// (RFC 9449 §9).
	Nonces *Nonces
	// Replay records each proof's jti, scoped by the proof's key, for at
	// least ReplayWindow; a jti seen before is refused. Nil checks no
	// replay (tests only).
	Replay replay.Store
}

// DefaultProofMaxAge is ProofChecker.MaxAge's default.
const DefaultProofMaxAge = 60 * time.Second

// maxJTI bounds a proof's jti.
const maxJTI = 256

func (c *ProofChecker) maxAge() time.Duration {
	if c.MaxAge > 0 {
		return c.MaxAge
	}
	return DefaultProofMaxAge
}

// ReplayWindow is how long a jti must be remembered: as long as a proof
// carrying it could be accepted, and a second more for iat's rounding.
func (c *ProofChecker) ReplayWindow() time.Duration {
	return c.maxAge() + c.Leeway + time.Second
}

// CheckResult is what a good proof tells the caller.
type CheckResult struct {
	// StaleNonce: the proof's nonce is from an earlier period than the
	// current one; the response should carry a fresh one (DPoP-Nonce) so
	// that the client moves on before it expires.
	StaleNonce bool
}

// Check verifies p for req at now: its signature; htm and htu; iat no
// older than MaxAge nor later than Leeway ahead; ath; the nonce, when
// Nonces is set; the key, which must be the token's; and, last, that its
// jti was not used before with this key (recorded now). Failures are
// *ProofError; a replay store that cannot answer is its own error
// (replay.ErrUnavailable, replay.ErrFull), and the proof is not accepted.
func (c *ProofChecker) Check(ctx context.Context, p *Proof, req ProofRequest, now time.Time) (CheckResult, error) {
	var res CheckResult
	payload, err := p.jws.Verify(p.key)
	if err != nil {
		return res, badProof("the proof's signature does not verify")
	}
	var cl struct {
		JTI   *string  `json:"jti"`
		HTM   *string  `json:"htm"`
		HTU   *string  `json:"htu"`
		IAT   *float64 `json:"iat"`
		ATH   *string  `json:"ath"`
		Nonce *string  `json:"nonce"`
	}
	if err := json.Unmarshal(payload, &cl); err != nil {
		return res, badProof("the proof's claims are not a JSON object of RFC 9449's types")
	}
	switch {
	case cl.JTI == nil || *cl.JTI == "":
		return res, badProof("the proof has no jti")
	case len(*cl.JTI) > maxJTI:
		return res, badProof("the proof's jti is longer than 256 bytes")
	case cl.HTM == nil:
		return res, badProof("the proof has no htm")
	case *cl.HTM != req.Method:
		return res, badProof("the proof's htm is not the request's method")
	case cl.HTU == nil:
		return res, badProof("the proof has no htu")
	case cl.IAT == nil:
		return res, badProof("the proof has no iat")
	}
	htu, err := NormalizeHTU(*cl.HTU)
	if err != nil {
		return res, badProof("the proof's htu is not an absolute http(s) URL")
	}
	if htu != req.URL {
		return res, badProof("the proof's htu is not the request's URL")
	}
	iat := *cl.IAT
	nowS := float64(now.UnixNano()) / 1e9
	switch {
	case iat > nowS+c.Leeway.Seconds():
		return res, badProof("the proof's iat is in the future")
	case iat < nowS-c.maxAge().Seconds():
		return res, badProof("the proof is older than its maximum age (iat)")
	}
	if req.AccessToken != "" {
		if cl.ATH == nil {
			return res, badProof("the proof has no ath")
		}
		if subtle.ConstantTimeCompare([]byte(*cl.ATH), []byte(TokenHash(req.AccessToken))) != 1 {
			return res, badProof("the proof's ath is not the access token's hash")
		}
	}
	if c.Nonces != nil {
		if cl.Nonce == nil || *cl.Nonce == "" {
			return res, &ProofError{Code: CodeUseNonce, Reason: "a server nonce is required"}
		}
		ok, current := c.Nonces.Check(*cl.Nonce, now)
		if !ok {
			return res, &ProofError{Code: CodeUseNonce, Reason: "the nonce is not one this server issued, or has expired"}
		}
		res.StaleNonce = !current
	}
	if subtle.ConstantTimeCompare([]byte(p.Thumbprint), []byte(req.KeyThumbprint)) != 1 {
		return res, &ProofError{Code: CodeInvalidToken, Reason: "the proof's key is not the one the token is bound to"}
	}
	if c.Replay != nil {
		fresh, err := c.Replay.Check(ctx, JTIKey(p.Thumbprint, *cl.JTI), now)
		if err != nil {
			return res, err
		}
		if !fresh {
			return res, badProof("the proof's jti was used before")
		}
	}
	return res, nil
}

// TokenHash is a proof's ath for token: base64url, unpadded, of the
// SHA-256 of its ASCII bytes.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// JTIKey is the replay key of a proof's jti: a hash of the key's
// thumbprint and the jti, so that a client can spend only its own jtis.
func JTIKey(thumbprint, jti string) replay.Key {
	s := sha256.New()
	s.Write([]byte("mxgate-dpop-jti\x00"))
	s.Write([]byte(thumbprint))
	s.Write([]byte{0})
	s.Write([]byte(jti))
	var k replay.Key
	copy(k[:], s.Sum(nil))
	return k
}

// NormalizeHTU puts an htu in the form compared with the request's URL,
// as RFC 9449 §4.3 says (RFC 3986's syntax- and scheme-based
// normalisation): scheme and host in lower case, the scheme's default
// port removed, percent-encoding in upper case and undone for unreserved
// characters, dot segments removed, an empty path made "/", and the query
// and fragment dropped. It refuses what is not an absolute http or https
// URL with a host, and a URL with user information.
func NormalizeHTU(raw string) (string, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", errors.New("fdx: htu does not parse")
	case u.Opaque != "" || u.User != nil:
		return "", errors.New("fdx: htu has user information or no authority")
	}
	origin, err := NormalizeOrigin(u.Scheme, u.Host)
	if err != nil {
		return "", err
	}
	return origin + normalizePath(u.EscapedPath()), nil
}

// RequestHTU is the URL of a request as NormalizeHTU puts it: origin (as
// NormalizeOrigin gives it) and the path as the client sent it.
func RequestHTU(origin, path string) string { return origin + normalizePath(path) }

// NormalizeOrigin returns scheme://host[:port] in lower case, without the
// scheme's default port. scheme must be http or https; hostport a host
// name, an IPv4 address or a bracketed IPv6 address, and a port of 1 to
// 65535, with nothing else (no user information, path or
// percent-encoding).
func NormalizeOrigin(scheme, hostport string) (string, error) {
	scheme = strings.ToLower(scheme)
	if scheme != "http" && scheme != "https" {
		return "", errors.New("fdx: the scheme is not http or https")
	}
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", errors.New("fdx: an unclosed IPv6 literal")
		}
		host, port = hostport[:end+1], hostport[end+1:]
		if port != "" && port[0] != ':' {
			return "", errors.New("fdx: a bad host")
		}
		port = strings.TrimPrefix(port, ":")
	} else if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		host, port = hostport[:i], hostport[i+1:]
	}
	if host == "" || host == "[]" {
		return "", errors.New("fdx: no host")
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == '~'
		if !ok && (host[0] != '[' || (c != ':' && c != '[' && c != ']')) {
			return "", errors.New("fdx: a character not allowed in a host")
		}
	}
	host = strings.ToLower(host)
	if port == "" {
		return scheme + "://" + host, nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '-' {
		return "", fmt.Errorf("fdx: a bad port")
	}
	if (scheme == "https" && n == 443) || (scheme == "http" && n == 80) {
		return scheme + "://" + host, nil
	}
	return scheme + "://" + host + ":" + strconv.Itoa(n), nil
}

// normalizePath normalises a path's percent-encoding (upper-case hex;
// unreserved characters decoded) and removes its dot segments (RFC 3986
// §6.2.2); an empty path is "/".
func normalizePath(p string) string {
	if p == "" {
		return "/"
	}
	if !strings.Contains(p, "%") && !strings.Contains(p, "/.") && p[0] == '/' {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) && isHexDigit(p[i+1]) && isHexDigit(p[i+2]) {
			d := unhexDigit(p[i+1])<<4 | unhexDigit(p[i+2])
			if isUnreservedByte(d) {
				b.WriteByte(d)
			} else {
				b.WriteByte('%')
				b.WriteByte(upperHex(p[i+1]))
				b.WriteByte(upperHex(p[i+2]))
			}
			i += 2
			continue
		}
		b.WriteByte(c)
	}
	return removeDotSegments(b.String())
}

// removeDotSegments is RFC 3986 §5.2.4 for a path that begins with "/"
// (any other is made to).
func removeDotSegments(p string) string {
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "")
		}
	}
	return "/" + strings.Join(out, "/")
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhexDigit(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

func isUnreservedByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == '-' || b == '.' || b == '_' || b == '~'
}
