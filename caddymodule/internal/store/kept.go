package store

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"sync"
)

// Keep returns the value kept under key across reloads, as State does (mk
// makes it when no loaded configuration holds one), for a configuration
// whose settings for it are opts. apply(val, opts) makes them the value's
// settings at once (mk's value is taken to have them); when this configuration lets go (the returned release,
// from the handler's Cleanup), the settings of the configuration that took
// the value most recently, among those that still hold it, are applied
// again. So a reload applies the new configuration's settings to the kept
// value, and a configuration that fails to load leaves the running one's
// in force. apply runs with a lock held: it must not call Keep.
func Keep[T, O any](key string, mk func() (T, func(), error), apply func(T, O), opts O) (T, func(), error) {
	made := false
	k, release, err := State(key, func() (*kept[T, O], func(), error) {
		v, destruct, err := mk()
		if err != nil {
			return nil, nil, err
		}
		made = true
		return &kept[T, O]{val: v}, destruct, nil
	})
	if err != nil {
		var zero T
		return zero, nil, err
	}
	h := &opts
	k.mu.Lock()
	k.holders = append(k.holders, h)
	if !made { // a value just made has its settings
		apply(k.val, opts)
	}
	k.mu.Unlock()
	var once sync.Once
	return k.val, func() {
		once.Do(func() {
			k.mu.Lock()
			i := slices.Index(k.holders, h)
			last := i == len(k.holders)-1
			k.holders = slices.Delete(k.holders, i, i+1)
			if last && len(k.holders) > 0 {
				apply(k.val, *k.holders[len(k.holders)-1])
			}
			k.mu.Unlock()
			release()
		})
	}, nil
}

// kept is a value and the settings of each configuration that holds it,
// oldest first.
type kept[T, O any] struct {
	val     T
	mu      sync.Mutex
	holders []*O
}

var (
	keyOnce   sync.Once
	keySecret []byte
)

// CredentialKey names, for Keep, what a directive fetches with: kind, then
// a keyed hash (HMAC-SHA256 under a key drawn at random once per process)
// of parts, so that a name changes with any part (an endpoint, a client
// id, a secret) but holds none, and cannot be checked against a guess of
// a secret outside this process. Parts are length-prefixed: no two lists
// of parts share a name.
func CredentialKey(kind string, parts ...string) string {
	keyOnce.Do(func() {
		keySecret = make([]byte, 32)
		if _, err := rand.Read(keySecret); err != nil {
			panic("store: no random key for credential names: " + err.Error())
		}
	})
	mac := hmac.New(sha256.New, keySecret)
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		mac.Write(n[:])
		mac.Write([]byte(p))
	}
	return kind + ":" + hex.EncodeToString(mac.Sum(nil))
}
