package caddymodule

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

	"github.com/mxgate/mxgate/jwe"
)

func init() {
	caddy.RegisterModule(MXJWE{})
}

// MXJWE handles the MX Platform API's encrypted responses.
//
// In "decrypt" mode (the egress sidecar) it asks the upstream for an
// encrypted response (Content-Type application/encrypted.<cipher>+json and
// X-Public-Key with an ephemeral ECDH key), decrypts the JWE reply and hands
// the app plain JSON. An unencrypted reply (a 412, say) passes unchanged; a
// reply that claims to be encrypted but does not decrypt becomes a 502 and
// is never handed on as if it were plaintext.
//
// In "encrypt" mode (serving side, e.g. a local stand-in for MX) it
// encrypts successful responses for requests that carry the two headers,
// and answers 412, unencrypted, as MX does when they are wrong.
type MXJWE struct {
	// Mode is "decrypt" or "encrypt".
	Mode string `json:"mode"`

	// Curve (decrypt) is p384 or p256. Default: p384.
	Curve string `json:"curve,omitempty"`

	// Cipher (decrypt) is a256gcm or a128gcm. Default: a256gcm.
	Cipher string `json:"cipher,omitempty"`

	// A128KeyAlgorithm is the key algorithm paired with a128gcm, which MX's
	// documents leave open: accepted on decrypt, used on encrypt.
	// Default: ECDH-ES+A128KW.
	A128KeyAlgorithm string `json:"a128_key_algorithm,omitempty"`

	// Rotate (decrypt) is how often a fresh ephemeral key pair is made; a
	// reply is always decrypted with the pair its request carried.
	// Default: 1h.
	Rotate caddy.Duration `json:"rotate,omitempty"`

	// MaxBody is the largest response body buffered to decrypt or encrypt.
	// Default: 10 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// ResponseType (encrypt) is the Content-Type of encrypted responses.
	// Default: application/jose.
	ResponseType string `json:"response_type,omitempty"`

	cipher  jwe.Cipher
	curve   jwe.Curve
	allowed []jwe.Suite
	a128    jwe.Suite
	key     *atomic.Pointer[jwe.PrivateKey]
	stop    chan struct{}
	logger  *zap.Logger
}

// DefaultJWEMaxBody bounds buffered responses of mx_jwe.
const DefaultJWEMaxBody = 10 << 20

// CaddyModule returns the Caddy module information.
func (MXJWE) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_jwe",
		New: func() caddy.Module { return new(MXJWE) },
	}
}

// Provision sets defaults and, for decrypt, makes the first key pair.
func (m *MXJWE) Provision(ctx caddy.Context) error {
	m.logger = ctx.Logger()
	if m.MaxBody == 0 {
		m.MaxBody = DefaultJWEMaxBody
	}
	if m.MaxBody < 0 {
		return errors.New("mx_jwe: max_body must be positive")
	}
	m.a128 = jwe.SuiteFor(jwe.A128GCM)
	if m.A128KeyAlgorithm != "" {
		alg, err := jwe.ParseKeyAlgorithm(m.A128KeyAlgorithm)
		if err != nil {
			return fmt.Errorf("mx_jwe: %w", err)
		}
		m.a128.Key = alg
	}
	var err error
	switch m.Mode {
	case "decrypt":
		if m.ResponseType != "" {
			return errors.New("mx_jwe decrypt: response_type belongs to mx_jwe encrypt")
		}
		if m.curve, err = jwe.ParseCurve(cmp.Or(m.Curve, "p384")); err != nil {
			return fmt.Errorf("mx_jwe: %w", err)
		}
		if m.cipher, err = jwe.ParseCipher(cmp.Or(m.Cipher, "a256gcm")); err != nil {
			return fmt.Errorf("mx_jwe: %w", err)
		}
		m.allowed = []jwe.Suite{jwe.SuiteFor(jwe.A256GCM)}
		if m.cipher == jwe.A128GCM {
			m.allowed = []jwe.Suite{m.a128}
		}
		if m.Rotate == 0 {
			m.Rotate = caddy.Duration(time.Hour)
		}
		if m.Rotate < caddy.Duration(time.Second) {
			return errors.New("mx_jwe: rotate must be at least 1s")
		}
		m.key = new(atomic.Pointer[jwe.PrivateKey])
		if err := m.rotate(); err != nil {
			return err
		}
		m.stop = make(chan struct{})
		go m.rotateEvery(time.Duration(m.Rotate), m.stop)
	case "encrypt":
		if m.Curve != "" || m.Cipher != "" || m.Rotate != 0 {
			return errors.New("mx_jwe encrypt: curve, cipher and rotate belong to mx_jwe decrypt (the client chooses)")
		}
		if m.ResponseType == "" {
			m.ResponseType = "application/jose"
		}
	default:
		return fmt.Errorf("mx_jwe: mode must be decrypt or encrypt, not %q", m.Mode)
	}
	return registerMetrics(ctx.GetMetricsRegistry())
}

func (m *MXJWE) rotate() error {
	k, err := jwe.GenerateKey(m.curve)
	if err != nil {
		return fmt.Errorf("mx_jwe: generating a key pair: %w", err)
	}
	m.key.Store(k)
	return nil
}

func (m *MXJWE) rotateEvery(d time.Duration, stop chan struct{}) {
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
func (m *MXJWE) Cleanup() error {
	if m.stop != nil {
		close(m.stop)
	}
	return nil
}

// ServeHTTP decrypts or encrypts.
func (m *MXJWE) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if m.Mode == "decrypt" {
		return m.decrypt(w, r, next)
	}
	return m.encrypt(w, r, next)
}

// limitedBuffer keeps at most max bytes and notes an overflow.
type limitedBuffer struct {
	bytes.Buffer
	max      int64
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.overflow || int64(b.Len()+len(p)) > b.max {
		b.overflow = true
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// bufferResponse runs next with the whole response buffered (up to max).
func bufferResponse(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, max int64) (caddyhttp.ResponseRecorder, *limitedBuffer, error) {
	buf := &limitedBuffer{max: max}
	rec := caddyhttp.NewResponseRecorder(w, &buf.Buffer, func(int, http.Header) bool { return true })
	// route body writes through the limit
	lrec := &limitedRecorder{ResponseRecorder: rec, buf: buf}
	err := next.ServeHTTP(lrec, r)
	return rec, buf, err
}

// limitedRecorder sends the body to the limited buffer.
type limitedRecorder struct {
	caddyhttp.ResponseRecorder
	buf     *limitedBuffer
	written bool
}

func (l *limitedRecorder) Write(p []byte) (int, error) {
	if !l.written {
		l.written = true
		l.ResponseRecorder.WriteHeader(http.StatusOK) // as net/http does; a no-op if already written
	}
	return l.buf.Write(p)
}

func (l *limitedRecorder) WriteHeader(status int) {
	l.written = true
	l.ResponseRecorder.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the writer beneath.
func (l *limitedRecorder) Unwrap() http.ResponseWriter { return l.ResponseRecorder }

var (
	errReplyTooLarge = rejection{status: http.StatusBadGateway, reason: "reply_too_large", message: "Bad gateway: the upstream reply is larger than max_body"}
	errUndecryptable = rejection{status: http.StatusBadGateway, reason: "reply_undecryptable", message: "Bad gateway: the upstream reply claims to be encrypted but could not be decrypted"}
	errBodyTooLarge  = rejection{status: http.StatusBadGateway, reason: "body_too_large", message: "Bad gateway: the response is larger than max_body"}
)

func (m *MXJWE) decrypt(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	key := m.key.Load() // this request's pair, whatever rotation does meanwhile
	r.Header.Set("Content-Type", m.cipher.ContentType())
	r.Header.Set("X-Public-Key", key.PublicKeyHeader())
	r.Header.Set("Accept-Encoding", "identity") // a JWE must arrive as sent
	rec, buf, err := bufferResponse(w, r, next, m.MaxBody)
	if err != nil {
		return err
	}
	if buf.overflow {
		countRejection("mx_jwe", errReplyTooLarge.reason)
		clearHeader(w.Header())
		return errReplyTooLarge.respond(w, FormatJSON)
	}
	body := bytes.TrimSpace(buf.Bytes())
	if !claimsEncrypted(w.Header().Get("Content-Type"), body) {
		return rec.WriteResponse()
	}
	plain, err := jwe.Decrypt(string(body), key, m.allowed)
	if err != nil {
		countRejection("mx_jwe", errUndecryptable.reason)
		m.logger.Warn("upstream reply claims to be encrypted but did not decrypt", zap.Int("upstream_status", rec.Status()))
		clearHeader(w.Header())
		return errUndecryptable.respond(w, FormatJSON)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(plain)))
	h.Del("Content-Encoding")
	w.WriteHeader(rec.Status())
	_, err = w.Write(plain)
	return err
}

// claimsEncrypted: a JOSE or encrypted media type, or a body shaped like a
// compact JWE.
func claimsEncrypted(ct string, body []byte) bool {
	mt, _, _ := strings.Cut(strings.ToLower(ct), ";")
	mt = strings.TrimSpace(mt)
	if mt == "application/jose" || strings.HasPrefix(mt, "application/encrypted.") {
		return true
	}
	return len(body) > 0 && body[0] != '{' && body[0] != '[' && jwe.LooksCompact(string(body))
}

// clearHeader drops what an upstream had put into a response we replace.
func clearHeader(h http.Header) {
	for k := range h {
		delete(h, k)
	}
}

// MX's 412 answers to a bad encryption request.
func encryptionRefusal(msg string) rejection {
	return rejection{status: http.StatusPreconditionFailed, reason: "encryption_parameters", message: msg}
}

func (m *MXJWE) encrypt(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
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
		countRejection("mx_jwe", "encryption_parameters")
		return encryptionRefusal(refuse).respond(w, FormatJSON)
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
	rec, buf, err := bufferResponse(w, r, next, m.MaxBody)
	if err != nil {
		return err
	}
	if buf.overflow {
		clearHeader(w.Header())
		return errBodyTooLarge.respond(w, FormatJSON)
	}
	status := rec.Status()
	if status < 200 || status > 299 || buf.Len() == 0 {
		return rec.WriteResponse() // errors and empty answers go unencrypted
	}
	compact, err := jwe.Encrypt(pub, suite, buf.Bytes())
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
	_ caddy.Provisioner           = (*MXJWE)(nil)
	_ caddy.CleanerUpper          = (*MXJWE)(nil)
	_ caddyhttp.MiddlewareHandler = (*MXJWE)(nil)
)
