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
	"errors"
	"sync"
	"time"
)

// ErrFull is returned when the cache already holds its maximum number of
// unexpired entries. A caller must treat it as a refusal (fail closed): the
// cache cannot vouch that the signature is fresh.
var ErrFull = errors.New("replay: cache is full")

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
	window time.Duration
	max    int

	mu   sync.Mutex
	seen map[Key]int64 // key -> expiry
	ring []entry       // FIFO by expiry; head at start, len n
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
func (m *Memory) Window() time.Duration { return m.window }

// Check records key as seen at now and reports whether it was fresh: false
// means the same key was recorded less than the window ago. It returns
// ErrFull, recording nothing, when the cache is at its bound.
func (m *Memory) Check(key Key, now time.Time) (fresh bool, err error) {
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
		size = min(size, m.max)
		ring := make([]entry, size)
		for i := 0; i < m.n; i++ {
			ring[i] = m.ring[(m.head+i)%len(m.ring)]
		}
		m.ring, m.head = ring, 0
	}
	m.ring[(m.head+m.n)%len(m.ring)] = e
	m.n++
}
