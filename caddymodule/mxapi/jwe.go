package mxapi

import (
	"bytes"
	"cmp"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mxgate/mxgate/caddymodule/internal/bodies"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/jwe"
)

func init() {
	caddy.RegisterModule(JWEDecrypt{})
	caddy.RegisterModule(JWEEncrypt{})
}

// DefaultJWEMaxBody bounds the responses mx_jwe buffers.
const DefaultJWEMaxBody = 10 << 20

// JWEDecrypt (the egress sidecar) asks the upstream for an encrypted
// response (Content-Type application/encrypted.<cipher>+json and
// X-Public-Key with an ephemeral ECDH key), decrypts the JWE reply and
// hands the app plain JSON.
//
// MX encrypts every answer to a request whose encryption headers are
// valid, so a successful (2xx) reply that is not a JWE this request's key
// opens is a downgrade and becomes a 502, whatever its media type: the
// app never takes plaintext for what MX sent encrypted. Only a 2xx that
// cannot carry a body (204, 205, the answer to HEAD) and carries none
// passes as it is. An error reply (MX's 412 to bad encryption headers,
// a 404) passes unchanged when it is not encrypted; one that claims to be
// (a JOSE or encrypted media type, or the shape of a compact JWE) but does
// not decrypt is a 502 too.
type JWEDecrypt struct {
	// Curve is p384 or p256. Default: p384.
	Curve string `json:"curve,omitempty"`

	// Cipher is a256gcm or a128gcm. Default: a256gcm.
	Cipher string `json:"cipher,omitempty"`

	// A128KeyAlgorithm is the key algorithm accepted with a128gcm, which
	// MX's documents leave open. Default: ECDH-ES+A128KW.
	A128KeyAlgorithm string `json:"a128_key_algorithm,omitempty"`

	// Rotate is how often a fresh ephemeral key pair is made; a reply is
	// always decrypted with the pair its request carried. Default: 1h.
	Rotate caddy.Duration `json:"rotate,omitempty"`

	// MaxBody is the largest response body buffered to decrypt.
	// Default: 10 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// AllowPlaintext hands the app a successful reply that does not claim
	// to be encrypted as it is, instead of a 502 (a reply that claims to
	// be encrypted must still decrypt). For an upstream that does not
	// encrypt; never for MX. A warning says so at start. Default: off.
	AllowPlaintext bool `json:"allow_plaintext,omitempty"`

	cipher  jwe.Cipher
	curve   jwe.Curve
	allowed []jwe.Suite
	key     *atomic.Pointer[jwe.PrivateKey]
	stop    chan struct{}
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (JWEDecrypt) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_jwe_decrypt",
		New: func() caddy.Module { return new(JWEDecrypt) },
	}
}

// a128Suite is the suite used with A128GCM: MX's documents leave its key
// algorithm open.
func a128Suite(alg string) (jwe.Suite, error) {
	s := jwe.SuiteFor(jwe.A128GCM)
	if alg != "" {
		k, err := jwe.ParseKeyAlgorithm(alg)
		if err != nil {
			return s, err
		}
		s.Key = k
	}
	return s, nil
}

// Provision sets defaults and makes the first key pair.
func (m *JWEDecrypt) Provision(ctx caddy.Context) (err error) {
	defer provision.NameDirective(&err, "mx_jwe decrypt")
	m.logger = ctx.Logger()
	if m.MaxBody == 0 {
		m.MaxBody = DefaultJWEMaxBody
	}
	if m.MaxBody < 0 {
		return errors.New("max_body must be positive")
	}
	a128, err := a128Suite(m.A128KeyAlgorithm)
	if err != nil {
		return err
	}
	if m.curve, err = jwe.ParseCurve(cmp.Or(m.Curve, "p384")); err != nil {
		return err
	}
	if m.cipher, err = jwe.ParseCipher(cmp.Or(m.Cipher, "a256gcm")); err != nil {
		return err
	}
	m.allowed = []jwe.Suite{jwe.SuiteFor(jwe.A256GCM)}
	if m.cipher == jwe.A128GCM {
		m.allowed = []jwe.Suite{a128}
	}
	if m.Rotate == 0 {
		m.Rotate = caddy.Duration(time.Hour)
	}
	if m.Rotate < caddy.Duration(time.Second) {
		return errors.New("rotate must be at least 1s")
	}
	m.key = new(atomic.Pointer[jwe.PrivateKey])
	if err := m.rotate(); err != nil {
		return err
	}
	if m.AllowPlaintext {
		m.logger.Warn("allow_plaintext: successful replies that are not encrypted reach the app as plaintext; MX encrypts every reply, so use this only for an upstream that never does")
	}
	m.stop = make(chan struct{})
	go m.rotateEvery(time.Duration(m.Rotate), m.stop)
	return metrics.Register(ctx.GetMetricsRegistry())
}

func (m *JWEDecrypt) rotate() error {
	k, err := jwe.GenerateKey(m.curve)
	if err != nil {
		return fmt.Errorf("generating a key pair: %w", err)
	}
	m.key.Store(k)
	return nil
}

func (m *JWEDecrypt) rotateEvery(d time.Duration, stop chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := m.rotate(); err != nil {
				m.logger.Error("key rotation failed; keeping the current pair", zap.Error(err))
			}
		}
	}
}

// Cleanup stops key rotation.
func (m *JWEDecrypt) Cleanup() error {
	if m.stop != nil {
		close(m.stop)
	}
	return nil
}

var (
	refuseReplyTooLarge = refusal.Refusal{Status: http.StatusBadGateway, Reason: "reply_too_large", Message: "Bad gateway: the upstream reply is larger than max_body"}
	refuseUndecryptable = refusal.Refusal{Status: http.StatusBadGateway, Reason: "reply_undecryptable", Message: "Bad gateway: the upstream reply claims to be encrypted but could not be decrypted"}
	refuseNotEncrypted  = refusal.Refusal{Status: http.StatusBadGateway, Reason: "reply_not_encrypted", Message: "Bad gateway: the upstream reply was not encrypted"}
	refuseBodyTooLarge  = refusal.Refusal{Status: http.StatusBadGateway, Reason: "body_too_large", Message: "Bad gateway: the response is larger than max_body"}
)

// ServeHTTP asks for an encrypted reply and decrypts it.
func (m *JWEDecrypt) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	key := m.key.Load() // this request's pair, whatever rotation does meanwhile
	r.Header.Set("Content-Type", m.cipher.ContentType())
	r.Header.Set("X-Public-Key", key.PublicKeyHeader())
	r.Header.Set("Accept-Encoding", "identity") // a JWE must arrive as sent
	rec, err := bodies.BufferResponse(w, r, next, m.MaxBody)
	if err != nil {
		return err
	}
	if rec.Overflow() {
		bodies.ClearHeader(w.Header())
		return refusal.Refuse(w, r, "mx_jwe", refusal.FormatJSON, refuseReplyTooLarge)
	}
	status := cmp.Or(rec.Status(), http.StatusOK)
	body := bytes.TrimSpace(rec.Body())
	ctype := w.Header().Get("Content-Type")
	if !claimsEncrypted(ctype, body) {
		success := status >= 200 && status <= 299
		if !success || m.AllowPlaintext || (len(rec.Body()) == 0 && bodiless(r.Method, status)) {
			return rec.WriteResponse()
		}
		m.logger.Warn("upstream reply was not encrypted; refused as a downgrade",
			zap.Int("upstream_status", status), zap.String("upstream_content_type", ctype), zap.Int("upstream_body_bytes", len(rec.Body())))
		bodies.ClearHeader(w.Header())
		return refusal.Refuse(w, r, "mx_jwe", refusal.FormatJSON, refuseNotEncrypted)
	}
	plain, err := jwe.Decrypt(string(body), key, m.allowed)
	if err != nil {
		metrics.JWEDecryptFailures.Inc()
		m.logger.Warn("upstream reply claims to be encrypted but did not decrypt", zap.Int("upstream_status", status), zap.String("upstream_content_type", ctype))
		bodies.ClearHeader(w.Header())
		return refusal.Refuse(w, r, "mx_jwe", refusal.FormatJSON, refuseUndecryptable)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(plain)))
	h.Del("Content-Encoding")
	w.WriteHeader(status)
	_, err = w.Write(plain)
	return err
}

// bodiless reports whether a reply of status to a request of method
// cannot carry a body (RFC 9110, sections 9.3.2, 15.3.5 and 15.3.6).
func bodiless(method string, status int) bool {
	return method == http.MethodHead || status == http.StatusNoContent || status == http.StatusResetContent
}

// claimsEncrypted: a JOSE media type (application/jose, the compact
// serialization, or application/jose+json, the JSON one) or an encrypted
// one (application/encrypted.*), in any case, or a body shaped like a
// compact JWE.
func claimsEncrypted(ct string, body []byte) bool {
	mt, _, _ := strings.Cut(strings.ToLower(ct), ";")
	mt = strings.TrimSpace(mt)
	if mt == "application/jose" || mt == "application/jose+json" || strings.HasPrefix(mt, "application/encrypted.") {
		return true
	}
	return len(body) > 0 && body[0] != '{' && body[0] != '[' && jwe.LooksCompact(string(body))
}

// JWEEncrypt (serving side, e.g. a local stand-in for MX) encrypts
// successful responses for requests that carry the two headers (an empty
// body too, except where the status or method admits none: 204, 205,
// HEAD), and answers 412, unencrypted, with MX's messages when they are
// wrong.
type JWEEncrypt struct {
	// A128KeyAlgorithm is the key algorithm used with a128gcm.
	// Default: ECDH-ES+A128KW.
	A128KeyAlgorithm string `json:"a128_key_algorithm,omitempty"`

	// ResponseType is the Content-Type of encrypted responses.
	// Default: application/jose.
	ResponseType string `json:"response_type,omitempty"`

	// MaxBody is the largest response body buffered to encrypt.
	// Default: 10 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	a128 jwe.Suite
}

// CaddyModule returns the Caddy module information.
func (JWEEncrypt) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_jwe_encrypt",
		New: func() caddy.Module { return new(JWEEncrypt) },
	}
}

// Provision sets defaults.
func (m *JWEEncrypt) Provision(ctx caddy.Context) (err error) {
	defer provision.NameDirective(&err, "mx_jwe encrypt")
	if m.MaxBody == 0 {
		m.MaxBody = DefaultJWEMaxBody
	}
	if m.MaxBody < 0 {
		return errors.New("max_body must be positive")
	}
	if m.a128, err = a128Suite(m.A128KeyAlgorithm); err != nil {
		return err
	}
	if m.ResponseType == "" {
		m.ResponseType = "application/jose"
	}
	return metrics.Register(ctx.GetMetricsRegistry())
}

// encryptionRefusal is MX's 412 answer to a bad encryption request.
func encryptionRefusal(msg string) refusal.Refusal {
	return refusal.Refusal{Status: http.StatusPreconditionFailed, Reason: "encryption_parameters", Message: msg}
}

// ServeHTTP encrypts the response when the request asks for it.
func (m *JWEEncrypt) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	pk := r.Header.Get("X-Public-Key")
	cipher, name, isEnc, cerr := jwe.CipherFromContentType(r.Header.Get("Content-Type"))
	if !isEnc && pk == "" {
		return next.ServeHTTP(w, r) // no encryption asked for
	}
	var refuse string
	var pub *ecdsa.PublicKey
	switch {
	case cerr != nil:
		refuse = "Unsupported cipher: " + name
	case !isEnc || pk == "":
		refuse = "Error processing parameters"
	default:
		key, _, err := jwe.ParsePublicKeyHeader(pk)
		var uc *jwe.UnsupportedCurveError
		switch {
		case errors.As(err, &uc):
			refuse = "Unsupported curve: " + uc.Name
		case err != nil:
			refuse = "Invalid public key"
		default:
			pub = key
		}
	}
	if refuse != "" {
		return refusal.Refuse(w, r, "mx_jwe", refusal.FormatJSON, encryptionRefusal(refuse))
	}
	suite := jwe.SuiteFor(cipher)
	if cipher == jwe.A128GCM {
		suite = m.a128
	}
	// the application behind sees an ordinary JSON request
	r.Header.Del("X-Public-Key")
	if r.ContentLength != 0 {
		r.Header.Set("Content-Type", "application/json")
	} else {
		r.Header.Del("Content-Type")
	}
	rec, err := bodies.BufferResponse(w, r, next, m.MaxBody)
	if err != nil {
		return err
	}
	if rec.Overflow() {
		bodies.ClearHeader(w.Header())
		return refusal.Refuse(w, r, "mx_jwe", refusal.FormatJSON, refuseBodyTooLarge)
	}
	status := cmp.Or(rec.Status(), http.StatusOK)
	if status < 200 || status > 299 || bodiless(r.Method, status) {
		return rec.WriteResponse() // errors, and answers that admit no body, go unencrypted
	}
	compact, err := jwe.Encrypt(pub, suite, rec.Body())
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	h := w.Header()
	h.Set("Content-Type", m.ResponseType)
	h.Set("Content-Length", strconv.Itoa(len(compact)))
	h.Del("Content-Encoding")
	w.WriteHeader(status)
	_, err = w.Write([]byte(compact))
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*JWEDecrypt)(nil)
	_ caddy.CleanerUpper          = (*JWEDecrypt)(nil)
	_ caddyhttp.MiddlewareHandler = (*JWEDecrypt)(nil)
	_ caddy.Provisioner           = (*JWEEncrypt)(nil)
	_ caddyhttp.MiddlewareHandler = (*JWEEncrypt)(nil)
)
