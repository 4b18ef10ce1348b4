package secrethash

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"io"
	"math"
	"strings"
)

// Prefix starts every hash of this package.
const Prefix = "$hmac-sha256$"

// Lengths of the salt, in bytes.
const (
	SaltSize    = 16 // what New draws
	MinSaltSize = 16
	MaxSaltSize = 64
)

// MinStrength is the least Strength, in bits, that New accepts.
const MinStrength = 128

// Errors of this package.
var (
	ErrMalformed = errors.New("secrethash: malformed hash")
	ErrWeak      = errors.New("secrethash: secret too weak for a fast hash (under 128 bits by the character-class bound); use a slow password hash")
)

var b64 = base64.RawStdEncoding.Strict()

// Hash is a parsed hash. The zero Hash matches nothing. A Hash is
// immutable and safe for concurrent use.
type Hash struct {
	salt []byte
	mac  [sha256.Size]byte
}

// New hashes secret under a fresh salt read from random (crypto/rand's
// Reader in production). It refuses a secret whose Strength is under
// MinStrength with ErrWeak.
func New(secret []byte, random io.Reader) (Hash, error) {
	if Strength(secret) < MinStrength {
		return Hash{}, ErrWeak
	}
	salt := make([]byte, SaltSize)
	if _, err := io.ReadFull(random, salt); err != nil {
		return Hash{}, err
	}
	return Hash{salt: salt, mac: mac(salt, secret)}, nil
}

func mac(salt, secret []byte) [sha256.Size]byte {
	m := hmac.New(sha256.New, salt)
	m.Write(secret)
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// Parse reads a hash in the package's format. Every deviation (another
// prefix, padding, a character outside standard base64, a salt of another
// size, a MAC that is not 32 bytes, a missing or extra field) is
// ErrMalformed.
func Parse(s string) (Hash, error) {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return Hash{}, ErrMalformed
	}
	salt64, mac64, ok := strings.Cut(rest, "$")
	if !ok || strings.Contains(mac64, "$") {
		return Hash{}, ErrMalformed
	}
	if len(salt64) < b64.EncodedLen(MinSaltSize) || len(salt64) > b64.EncodedLen(MaxSaltSize) || len(mac64) != b64.EncodedLen(sha256.Size) ||
		!inAlphabet(salt64) || !inAlphabet(mac64) {
		return Hash{}, ErrMalformed
	}
	salt, err := b64.DecodeString(salt64)
	if err != nil || len(salt) < MinSaltSize || len(salt) > MaxSaltSize {
		return Hash{}, ErrMalformed
	}
	var h Hash
	n, err := b64.Decode(h.mac[:], []byte(mac64))
	if err != nil || n != sha256.Size {
		return Hash{}, ErrMalformed
	}
	h.salt = salt
	return h, nil
}

// inAlphabet reports whether s holds only characters of standard base64
// (the decoder itself skips CR and LF, even in strict mode).
func inAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// String returns the hash in the package's format.
func (h Hash) String() string {
	if h.salt == nil {
		return ""
	}
	return Prefix + b64.EncodeToString(h.salt) + "$" + b64.EncodeToString(h.mac[:])
}

// Verify reports whether secret is the one hashed, in time independent of
// where a wrong secret differs.
func (h Hash) Verify(secret []byte) bool {
	if h.salt == nil {
		return false
	}
	got := mac(h.salt, secret)
	return subtle.ConstantTimeCompare(got[:], h.mac[:]) == 1
}

// Strength is an upper bound of secret's entropy in bits: its length times
// the bits of the alphabet its character classes span (lower case, upper
// case, digits, other printable ASCII; 8 bits a byte once any byte falls
// outside printable ASCII). A random key reaches its true entropy; a
// phrase or a pattern scores far above what it has, so a passing score
// proves nothing, but a failing one proves the secret too weak.
func Strength(secret []byte) float64 {
	var lower, upper, digit, other, binary bool
	for _, c := range secret {
		switch {
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= '0' && c <= '9':
			digit = true
		case c > ' ' && c < 0x7f:
			other = true
		default:
			binary = true
		}
	}
	if binary {
		return 8 * float64(len(secret))
	}
	alphabet := 0
	for _, class := range []struct {
		present bool
		size    int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {other, 32}} {
		if class.present {
			alphabet += class.size
		}
	}
	if alphabet < 2 {
		return 0
	}
	return float64(len(secret)) * math.Log2(float64(alphabet))
}
