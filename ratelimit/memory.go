package ratelimit

import (
	"context"
	"errors"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

const numShards = 64

// evictSample is how many keys a full shard inspects to pick one to evict.
const evictSample = 8

// Memory is an in-process Store. Buckets of keys idle long enough to have
// refilled are swept by Sweep; when the key cap is reached, the least
// recently used of a small sample of keys is evicted to make room, so a
// flood of distinct keys cannot grow memory past the cap.
// It is safe for concurrent use. The zero value is not usable: call
// NewMemory.
type Memory struct {
	cfg      atomic.Pointer[memPolicy]
	perShard int
	seed     maphash.Seed
	shards   [numShards]shard
	evicted  atomic.Uint64
}

// memPolicy is a policy and its generation; buckets made under an older
// generation are brought up to date when next used.
type memPolicy struct {
	p    Policy
	gen  uint64
	idle time.Duration // a key idle this long has every bucket full
}

type shard struct {
	mu sync.Mutex
	m  map[string]*buckets
	_  [64 - 16]byte // one cache line per shard: no false sharing of locks
}

type buckets struct {
	lim  [NumClasses]*rate.Limiter // nil for unlimited classes
	last int64                     // unix nanoseconds of the last Take
	gen  uint64                    // the policy generation lim follows
}

// NewMemory returns a Memory for policy holding at most maxKeys keys.
func NewMemory(policy Policy, maxKeys int) (*Memory, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if maxKeys < 1 {
		return nil, errors.New("ratelimit: max keys must be positive")
	}
	m := &Memory{perShard: max(1, (maxKeys+numShards-1)/numShards), seed: maphash.MakeSeed()}
	m.cfg.Store(newMemPolicy(policy, 1))
	for i := range m.shards {
		m.shards[i].m = make(map[string]*buckets)
	}
	return m, nil
}

func newMemPolicy(p Policy, gen uint64) *memPolicy {
	mp := &memPolicy{p: p, gen: gen}
	for _, l := range p {
		if !l.Unlimited() {
			mp.idle = max(mp.idle, time.Duration(float64(l.Burst)/l.Rate*float64(time.Second)))
		}
	}
	return mp
}

// Policy returns the store's policy.
func (m *Memory) Policy() Policy { return m.cfg.Load().p }

// SetPolicy changes the budgets of every key, existing buckets included:
// each keeps the tokens it has (at most the new burst) and refills at the
// new rate from now on. A store that outlives a configuration change is
// given the new policy rather than replaced, so that no budget is refilled
// by the change.
func (m *Memory) SetPolicy(policy Policy) error {
	if err := policy.Validate(); err != nil {
		return err
	}
	for {
		old := m.cfg.Load()
		if m.cfg.CompareAndSwap(old, newMemPolicy(policy, old.gen+1)) {
			return nil
		}
	}
}

func newBuckets(p *memPolicy, now time.Time) *buckets {
	b := &buckets{gen: p.gen}
	for c, l := range p.p {
		if !l.Unlimited() {
			b.lim[c] = rate.NewLimiter(rate.Limit(l.Rate), l.Burst)
			b.lim[c].AllowN(now, 0) // start the clock at now, full
		}
	}
	return b
}

// update brings b to policy p (the shard's lock held).
func (b *buckets) update(p *memPolicy, now time.Time) {
	for c, l := range p.p {
		switch {
		case l.Unlimited():
			b.lim[c] = nil
		case b.lim[c] == nil:
			b.lim[c] = rate.NewLimiter(rate.Limit(l.Rate), l.Burst)
			b.lim[c].AllowN(now, 0)
		default:
			b.lim[c].SetLimitAt(now, rate.Limit(l.Rate))
			b.lim[c].SetBurstAt(now, l.Burst)
		}
	}
	b.gen = p.gen
}

// get returns key's buckets under p, creating them (and evicting to make
// room).
func (m *Memory) get(p *memPolicy, key string, now time.Time) *buckets {
	s := &m.shards[maphash.String(m.seed, key)%numShards]
	t := now.UnixNano()
	s.mu.Lock()
	b, ok := s.m[key]
	switch {
	case !ok:
		if len(s.m) >= m.perShard {
			m.evictOne(s)
		}
		b = newBuckets(p, now)
		s.m[key] = b
	case b.gen < p.gen:
		b.update(p, now)
	}
	b.last = t
	s.mu.Unlock()
	return b
}

// evictOne removes the least recently used of a few keys of s (s.mu held).
func (m *Memory) evictOne(s *shard) {
	var victim string
	oldest := int64(math.MaxInt64)
	n := 0
	for k, b := range s.m { // map iteration starts at a random place
		if b.last < oldest {
			victim, oldest = k, b.last
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(s.m, victim)
	m.evicted.Add(1)
}

// Take implements Store. It never returns an error.
func (m *Memory) Take(_ context.Context, key string, c Class, now time.Time, maxWait time.Duration) (Result, error) {
	p := m.cfg.Load()
	l := p.p[c]
	if l.Unlimited() {
		return Result{Allowed: true}, nil
	}
	lim := m.get(p, key, now).lim[c]
	if maxWait <= 0 {
		ok := lim.AllowN(now, 1)
		return m.result(l, lim.TokensAt(now), ok), nil
	}
	r := lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay > maxWait {
		r.CancelAt(now)
		return m.result(l, lim.TokensAt(now), false), nil
	}
	res := m.result(l, lim.TokensAt(now), true)
	res.Delay = delay
	if delay > 0 {
		res.cancel = memReservation{r}
	}
	return res, nil
}

func (m *Memory) result(l Limit, tokens float64, ok bool) Result {
	res := Result{Allowed: ok, Limit: l.Burst, Remaining: max(0, int(tokens))}
	perToken := float64(time.Second) / l.Rate
	res.Reset = time.Duration((float64(l.Burst) - tokens) * perToken)
	if !ok {
		res.RetryAfter = time.Duration((1 - tokens) * perToken)
	}
	return res
}

type memReservation struct{ r *rate.Reservation }

func (mr memReservation) cancel(_ context.Context, now time.Time) { mr.r.CancelAt(now) }

// Sweep drops the buckets of keys idle long enough that every bucket has
// refilled, which loses nothing. Call it now and then (Caddy's module does
// so every minute).
func (m *Memory) Sweep(now time.Time) (removed int) {
	cutoff := now.Add(-m.cfg.Load().idle).UnixNano()
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k, b := range s.m {
			if b.last <= cutoff {
				delete(s.m, k)
				removed++
			}
		}
		s.mu.Unlock()
	}
	return removed
}

// Len returns the number of keys held.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Evicted returns how many keys were evicted to respect the cap.
func (m *Memory) Evicted() uint64 { return m.evicted.Load() }
