// Package replay remembers request signatures for a fixed window so that a
// signature seen a second time inside the window can be refused.
//
// Memory is an in-process cache with a hard bound on its size. Entries
// expire in the order they were recorded, because every entry lives for the
// same window; so expiry is a walk from the front of a ring, with no timers
// and no per-entry goroutines. Time is a parameter, as in
// golang.org/x/time/rate, so tests are deterministic.
package replay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrFull is returned when the cache already holds its maximum number of
// unexpired entries. A caller must treat it as a refusal (fail closed): the
// cache cannot vouch that the signature is fresh.
var ErrFull = errors.New("replay: cache is full")

// Store remembers keys for a window. Check records key as seen at now and
// reports whether it was fresh: false means the key was recorded less than
// the window ago. An error means freshness could not be established; the
// caller must refuse (fail closed) unless it chose otherwise by name.
type Store interface {
	Check(ctx context.Context, key Key, now time.Time) (fresh bool, err error)
}

// Entry is a key and the time its record expires.
type Entry struct {
	Key     Key
	Expires time.Time
}

// Key identifies a signature. Callers use the first bytes of the MAC, which
// only the holder of the key can choose.
type Key [16]byte

type entry struct {
	key     Key
	expires int64 // unix nanoseconds
}

// Memory is a bounded in-memory replay cache. It is safe for concurrent use.
// The zero value is not usable: call NewMemory.
type Memory struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	seen   map[Key]int64 // key -> expiry

	unsynced atomic.Int64 // keys admitted here alone, while a shared store was unreachable
	resync   atomic.Int64 // >0: every key held is owed to the shared store (after an interruption or a loss)
	recOnce  sync.Once
	rec      *recovery // the shared store's recovery, for the Tiered stores over this Memory (recovery.go)

	ring []entry // FIFO by expiry; head at start, len n
	head int
	n    int
}

// NewMemory returns a cache that remembers each key for window and holds at
// most max keys at once.
func NewMemory(window time.Duration, max int) (*Memory, error) {
	if window <= 0 {
		return nil, errors.New("replay: window must be positive")
	}
	if max <= 0 {
		return nil, errors.New("replay: size must be positive")
	}
	return &Memory{window: window, max: max, seen: make(map[Key]int64)}, nil
}

// Window returns how long a key is remembered.
func (m *Memory) Window() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.window
}

// Resize changes the window and the bound for keys recorded from now on;
// keys already held keep their expiry. A cache that outlives a
// configuration change is resized rather than replaced, so that nothing it
// remembers is forgotten.
func (m *Memory) Resize(window time.Duration, max int) error {
	if window <= 0 || max <= 0 {
		return errors.New("replay: window and size must be positive")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.window, m.max = window, max
	return nil
}

// Check implements Store: it records key as seen at now and reports whether
// it was fresh. It returns ErrFull, recording nothing, when the cache is at
// its bound. It never blocks on ctx.
func (m *Memory) Check(_ context.Context, key Key, now time.Time) (fresh bool, err error) {
	t := now.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(t)
	if exp, ok := m.seen[key]; ok && exp > t {
		return false, nil
	}
	if m.n >= m.max {
		return false, ErrFull
	}
	exp := t + int64(m.window)
	m.seen[key] = exp
	m.push(entry{key: key, expires: exp})
	return true, nil
}

// Full reports whether the cache holds its maximum number of unexpired
// keys at now, so that a fresh key would be refused with ErrFull.
func (m *Memory) Full(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now.UnixNano())
	return m.n >= m.max
}

// Seen reports whether key is recorded and unexpired at now, recording
// nothing.
func (m *Memory) Seen(key Key, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.seen[key]
	return ok && exp > now.UnixNano()
}

// Entries returns the keys recorded and unexpired at now, with their expiry.
func (m *Memory) Entries(now time.Time) []Entry {
	t := now.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Entry, 0, len(m.seen))
	for k, exp := range m.seen {
		if exp > t {
			out = append(out, Entry{Key: k, Expires: time.Unix(0, exp)})
		}
	}
	return out
}

// Len returns the number of keys held, expired ones not yet purged included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

func (m *Memory) expire(now int64) {
	for m.n > 0 {
		e := m.ring[m.head]
		if e.expires > now {
			return
		}
		if exp, ok := m.seen[e.key]; ok && exp == e.expires {
			delete(m.seen, e.key)
		}
		m.ring[m.head] = entry{}
		m.head = (m.head + 1) % len(m.ring)
		m.n--
	}
	if m.n == 0 && len(m.ring) > 1024 {
		// release a ring grown by a burst, once it has drained
		m.ring, m.head = nil, 0
		m.seen = make(map[Key]int64)
	}
}

func (m *Memory) push(e entry) {
	if m.n == len(m.ring) {
		size := max(16, 2*len(m.ring))
		size = max(min(size, m.max), m.n+1)
		ring := make([]entry, size)
		for i := 0; i < m.n; i++ {
			ring[i] = m.ring[(m.head+i)%len(m.ring)]
		}
		m.ring, m.head = ring, 0
	}
	m.ring[(m.head+m.n)%len(m.ring)] = e
	m.n++
}
