package hmac

import (
	stdhmac "crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// Errors returned by this package. The HTTP glue maps them to statuses; none
// of their texts ever contains a key or a signature.
var (
	ErrUnknownAlgorithm   = errors.New("hmac: unknown algorithm (want sha1, sha224, sha256, sha384 or sha512)")
	ErrKeyEncoding        = errors.New("hmac: key is not valid base64")
	ErrKeyLength          = errors.New("hmac: key must decode to 32 to 64 bytes")
	ErrNoKeys             = errors.New("hmac: at least one key is required")
	ErrMissingSignature   = errors.New("hmac: MDX-HMAC header missing")
	ErrMalformedSignature = errors.New("hmac: MDX-HMAC is not a hex digest of the algorithm's length")
	ErrSignatureMismatch  = errors.New("hmac: signature mismatch")
)

// Key lengths allowed by MDX On Demand, in bytes after base64 decoding.
const (
	MinKeyLen = 32
	MaxKeyLen = 64
)

// Algorithm is one of the hash functions MDX allows under HMAC.
// The zero value is not a valid algorithm.
type Algorithm uint8

// The algorithms MDX On Demand allows. MX's own example uses SHA1.
const (
	SHA1 Algorithm = iota + 1
	SHA224
	SHA256
	SHA384
	SHA512
)

var algorithmNames = [...]string{SHA1: "sha1", SHA224: "sha224", SHA256: "sha256", SHA384: "sha384", SHA512: "sha512"}

// Algorithms lists every supported algorithm, weakest first.
func Algorithms() []Algorithm { return []Algorithm{SHA1, SHA224, SHA256, SHA384, SHA512} }

// ParseAlgorithm returns the algorithm named s ("sha1" … "sha512", in any
// case, with or without a dash: "SHA-256" is accepted).
func ParseAlgorithm(s string) (Algorithm, error) {
	name := strings.ToLower(strings.ReplaceAll(s, "-", ""))
	for a, n := range algorithmNames {
		if n != "" && n == name {
			return Algorithm(a), nil
		}
	}
	return 0, ErrUnknownAlgorithm
}

// String returns the algorithm's lowercase name, such as "sha256".
func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) && algorithmNames[a] != "" {
		return algorithmNames[a]
	}
	return fmt.Sprintf("Algorithm(%d)", uint8(a))
}

// Valid reports whether a is one of the supported algorithms.
func (a Algorithm) Valid() bool { return a >= SHA1 && a <= SHA512 }

// Size returns the length of the algorithm's digest in bytes.
func (a Algorithm) Size() int {
	switch a {
	case SHA1:
		return sha1.Size
	case SHA224:
		return sha256.Size224
	case SHA256:
		return sha256.Size
	case SHA384:
		return sha512.Size384
	case SHA512:
		return sha512.Size
	}
	return 0
}

func (a Algorithm) hashFunc() func() hash.Hash {
	switch a {
	case SHA1:
		return sha1.New
	case SHA224:
		return sha256.New224
	case SHA256:
		return sha256.New
	case SHA384:
		return sha512.New384
	case SHA512:
		return sha512.New
	}
	return nil
}

// Key is a decoded MDX HMAC key. Its String and GoString methods never
// reveal the key, so a Key printed by mistake leaks nothing.
// The zero value is not a usable key.
type Key struct{ b []byte }

// ParseKey decodes a base64 key, as MX hands it over, and checks that it is
// 32 to 64 bytes long. Surrounding white space (a trailing newline in a key
// file, say) is ignored. Standard base64 is expected; unpadded input is
// accepted too.
func ParseKey(b64 string) (Key, error) {
	s := strings.TrimSpace(b64)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return Key{}, ErrKeyEncoding
	}
	if len(b) < MinKeyLen || len(b) > MaxKeyLen {
		return Key{}, fmt.Errorf("%w, got %d", ErrKeyLength, len(b))
	}
	return Key{b: b}, nil
}

// String implements fmt.Stringer without revealing the key.
func (k Key) String() string { return "hmac.Key(redacted)" }

// GoString implements fmt.GoStringer without revealing the key.
func (k Key) GoString() string { return k.String() }

// Request holds the seven fields of the canonical string, in the order they
// are signed. Header values are used as they appear on the wire.
type Request struct {
	Method      string // HTTP verb, e.g. "POST"
	ContentMD5  string // the Content-MD5 header
	ContentType string // the Content-Type header
	Date        string // the Date header: UNIX epoch seconds
	Accept      string // the Accept header
	SessionKey  string // the MDX-Session-Key header; empty on /sessions
	Resource    string // the REST resource, e.g. "/sessions"; see ResourceRule
}

// AppendCanonical appends the canonical string of r to dst and returns the
// extended slice. Sign and Verify both build on it.
func (r *Request) AppendCanonical(dst []byte) []byte {
	dst = append(dst, r.Method...)
	dst = append(dst, '\n')
	dst = append(dst, r.ContentMD5...)
	dst = append(dst, '\n')
	dst = append(dst, r.ContentType...)
	dst = append(dst, '\n')
	dst = append(dst, r.Date...)
	dst = append(dst, '\n')
	dst = append(dst, r.Accept...)
	dst = append(dst, '\n')
	dst = append(dst, r.SessionKey...)
	dst = append(dst, '\n')
	dst = append(dst, r.Resource...)
	return dst
}

// Canonical returns the canonical string of r.
func (r *Request) Canonical() string { return string(r.AppendCanonical(nil)) }

// keyedMAC is one key's HMAC state, pooled because building it hashes the
// key twice.
type keyedMAC struct {
	pool sync.Pool // of *macState
}

type macState struct {
	h   hash.Hash
	sum [64]byte
}

func newKeyedMAC(alg Algorithm, key Key) *keyedMAC {
	k := make([]byte, len(key.b))
	copy(k, key.b)
	h := alg.hashFunc()
	m := &keyedMAC{}
	m.pool.New = func() any { return &macState{h: stdhmac.New(h, k)} }
	return m
}

// equal reports, in constant time, whether the MAC of msg is want.
func (m *keyedMAC) equal(msg, want []byte) int {
	st := m.pool.Get().(*macState)
	st.h.Reset()
	st.h.Write(msg)
	ok := subtle.ConstantTimeCompare(st.h.Sum(st.sum[:0]), want)
	m.pool.Put(st)
	return ok
}

// hex returns the lowercase hex MAC of msg.
func (m *keyedMAC) hex(msg []byte) string {
	st := m.pool.Get().(*macState)
	st.h.Reset()
	st.h.Write(msg)
	s := hex.EncodeToString(st.h.Sum(st.sum[:0]))
	m.pool.Put(st)
	return s
}

// canonBufPool holds scratch buffers for canonical strings.
var canonBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Signer computes MDX-HMAC signatures with one key.
// It is safe for concurrent use. The zero value is not usable: call NewSigner.
type Signer struct {
	alg Algorithm
	mac *keyedMAC
}

// NewSigner returns a Signer for alg and key.
func NewSigner(alg Algorithm, key Key) (*Signer, error) {
	if !alg.Valid() {
		return nil, ErrUnknownAlgorithm
	}
	if len(key.b) == 0 {
		return nil, ErrNoKeys
	}
	return &Signer{alg: alg, mac: newKeyedMAC(alg, key)}, nil
}

// Algorithm returns the signer's algorithm.
func (s *Signer) Algorithm() Algorithm { return s.alg }

// Sign returns the lowercase hex MDX-HMAC of r.
func (s *Signer) Sign(r *Request) string {
	bp := canonBufPool.Get().(*[]byte)
	msg := r.AppendCanonical((*bp)[:0])
	sig := s.mac.hex(msg)
	*bp = msg
	canonBufPool.Put(bp)
	return sig
}

// Verifier checks MDX-HMAC signatures against one or more keys, so that a
// key can be rotated: a signature made with any of the keys verifies.
// It is safe for concurrent use. The zero value is not usable: call
// NewVerifier.
type Verifier struct {
	alg  Algorithm
	macs []*keyedMAC
}

// NewVerifier returns a Verifier for alg that accepts signatures made with
// any of keys.
func NewVerifier(alg Algorithm, keys ...Key) (*Verifier, error) {
	if !alg.Valid() {
		return nil, ErrUnknownAlgorithm
	}
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	v := &Verifier{alg: alg}
	for _, k := range keys {
		if len(k.b) == 0 {
			return nil, ErrNoKeys
		}
		v.macs = append(v.macs, newKeyedMAC(alg, k))
	}
	return v, nil
}

// Algorithm returns the verifier's algorithm.
func (v *Verifier) Algorithm() Algorithm { return v.alg }

// Verify checks signature, the MDX-HMAC header's value, against r. Hex in
// either case is accepted. It returns ErrMissingSignature,
// ErrMalformedSignature, ErrSignatureMismatch, or nil. Every key is tried,
// and each comparison takes constant time.
func (v *Verifier) Verify(r *Request, signature string) error {
	if signature == "" {
		return ErrMissingSignature
	}
	size := v.alg.Size()
	if len(signature) != 2*size {
		return ErrMalformedSignature
	}
	var got [64]byte
	if !decodeHex(got[:size], signature) {
		return ErrMalformedSignature
	}
	bp := canonBufPool.Get().(*[]byte)
	msg := r.AppendCanonical((*bp)[:0])
	match := 0
	for _, m := range v.macs {
		match |= m.equal(msg, got[:size])
	}
	*bp = msg
	canonBufPool.Put(bp)
	if match != 1 {
		return ErrSignatureMismatch
	}
	return nil
}

// Sign is a convenience that signs r with a single key.
func Sign(alg Algorithm, key Key, r *Request) (string, error) {
	s, err := NewSigner(alg, key)
	if err != nil {
		return "", err
	}
	return s.Sign(r), nil
}

// EmptyBodyMD5 is the Content-MD5 of an empty body: the hex MD5 of "".
const EmptyBodyMD5 = "d41d8cd98f00b204e9800998ecf8427e"

// Errors of CheckContentMD5.
var (
	ErrContentMD5Missing  = errors.New("hmac: Content-MD5 header missing")
	ErrContentMD5Mismatch = errors.New("hmac: Content-MD5 does not match the body")
)

// ContentMD5 returns the lowercase hex MD5 of body, the value of the
// Content-MD5 header MDX sends (hex, not the base64 of RFC 1864).
func ContentMD5(body []byte) string {
	sum := md5.Sum(body)
	return hex.EncodeToString(sum[:])
}

// CheckContentMD5 checks the Content-MD5 header against body. Hex in either
// case is accepted. For an empty body both the MD5 of the empty string and
// an empty (or absent) header are accepted, since MX's documents leave open
// which one it sends.
func CheckContentMD5(body []byte, header string) error {
	sum := md5.Sum(body)
	return CheckContentMD5Sum(sum[:], int64(len(body)), header)
}

// CheckContentMD5Sum is CheckContentMD5 for a body hashed while it was
// read: sum is its MD5, n its length.
func CheckContentMD5Sum(sum []byte, n int64, header string) error {
	if header == "" {
		if n == 0 {
			return nil
		}
		return ErrContentMD5Missing
	}
	got, err := ParseContentMD5(header)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(sum, got[:]) != 1 {
		return ErrContentMD5Mismatch
	}
	return nil
}

// ParseContentMD5 decodes a non-empty Content-MD5 header (hex in either
// case), so that a malformed one is refused before the body is read:
// ErrContentMD5Missing for "", ErrContentMD5Mismatch for anything that is
// not 32 hex digits.
func ParseContentMD5(header string) ([md5.Size]byte, error) {
	var got [md5.Size]byte
	if header == "" {
		return got, ErrContentMD5Missing
	}
	if !decodeHex(got[:], header) {
		return got, ErrContentMD5Mismatch
	}
	return got, nil
}
