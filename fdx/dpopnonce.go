package fdx

import (
	stdhmac "crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// Nonces issues and checks DPoP server nonces (RFC 9449 §9) without
// keeping any state: a nonce is the number of a period of Period and a
// MAC of it under Key, so every replica given the same key issues and
// accepts the same nonces, and nothing needs to be stored or shared. A
// nonce is accepted in the period it was issued for and the next one
// (so for at least one period, and at most two), and in the period before
// it, for a replica whose clock runs behind the one that issued it. It is
// safe for concurrent use; the zero value is not usable: call NewNonces.
type Nonces struct {
	key    []byte
	period time.Duration
}

// MinNonceKey is the least key length, in bytes.
const MinNonceKey = 32

// NewNonces returns the nonces of key (at least 32 bytes) and period (at
// least a second).
func NewNonces(key []byte, period time.Duration) (*Nonces, error) {
	if len(key) < MinNonceKey {
		return nil, errors.New("fdx: a nonce key must be at least 32 bytes")
	}
	if period < time.Second {
		return nil, errors.New("fdx: a nonce period must be at least a second")
	}
	return &Nonces{key: append([]byte(nil), key...), period: period}, nil
}

// nonceLen is the length of a nonce: base64url of 8 bytes of period
// number and 16 of MAC.
const nonceLen = 32

func (n *Nonces) at(now time.Time) int64 { return now.UnixNano() / int64(n.period) }

func (n *Nonces) mac(period int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(period))
	m := stdhmac.New(sha256.New, n.key)
	m.Write([]byte("mxgate-dpop-nonce\x00"))
	m.Write(b[:])
	return m.Sum(nil)[:16]
}

// Issue returns the nonce of now's period.
func (n *Nonces) Issue(now time.Time) string {
	p := n.at(now)
	var raw [24]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(p))
	copy(raw[8:], n.mac(p))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// Check reports whether nonce is one this key issued that is still good
// at now, and whether it is of now's period or later (current): a client
// holding an older one should be given a fresh one.
func (n *Nonces) Check(nonce string, now time.Time) (ok, current bool) {
	if len(nonce) != nonceLen {
		return false, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != 24 {
		return false, false
	}
	p := int64(binary.BigEndian.Uint64(raw[:8]))
	cur := n.at(now)
	if p < cur-1 || p > cur+1 {
		return false, false
	}
	if !stdhmac.Equal(raw[8:], n.mac(p)) {
		return false, false
	}
	return true, p >= cur
}
