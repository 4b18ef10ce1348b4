package ratelimit

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

const numShards = 64

// evictSample is how many keys a shard at the cap looks at, the least
// recently used or looked at first, for one whose buckets are all full.
const evictSample = 8

// Memory is an in-process Store. It holds the buckets of at most maxKeys
// keys (rounded up to a multiple of 64), and drops a key's buckets only
// when every one of them is full, so that dropping them gives no client
// anything back: a full bucket is the same as a new one.
//
// Sweep drops every such key. A new key that finds its shard of the
// store at the cap takes the place of such a key, looking at the few least
// recently used; when none of them is full, the new key has no buckets of
// its own and draws on the overflow budget (a set of buckets with the same
// policy, shared by every key in that case) until a full key makes room.
// So a throttled client stays throttled however many other keys come and
// go, a flood of distinct keys cannot grow memory past the cap, and at
// worst it shares one budget with the newcomers it pushed out.
//
// Every Take does a bounded amount of work. It is safe for concurrent use.
// The zero value is not usable: call NewMemory.
type Memory struct {
	cfg        atomic.Pointer[memPolicy]
	perShard   int
	seed       maphash.Seed
	shards     [numShards]shard
	overflow   overflow
	evicted    atomic.Uint64
	overflowed atomic.Uint64
}

// memPolicy is a policy and its generation; buckets made under an older
// generation are brought up to date when next used.
type memPolicy struct {
	p   Policy
	gen uint64
}

// shard is a part of the keys, with its own lock; its keys form a list
// from the most to the least recently used (or looked at for eviction).
type shard struct {
	mu     sync.Mutex
	m      map[string]*buckets
	newest *buckets
	oldest *buckets
	_      [64 - 32]byte // one cache line per shard: no false sharing of locks
}

// overflow is the budget of keys that found no room.
type overflow struct {
	mu sync.Mutex
	b  *buckets // made on first use
}

type buckets struct {
	lim          [NumClasses]*rate.Limiter // nil for unlimited classes
	gen          uint64                    // the policy generation lim follows
	key          string
	newer, older *buckets // the shard's list
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
	m.cfg.Store(&memPolicy{p: policy, gen: 1})
	for i := range m.shards {
		m.shards[i].m = make(map[string]*buckets)
	}
	return m, nil
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
		if m.cfg.CompareAndSwap(old, &memPolicy{p: policy, gen: old.gen + 1}) {
			return nil
		}
	}
}

func newBuckets(p *memPolicy, key string, now time.Time) *buckets {
	b := &buckets{gen: p.gen, key: key}
	for c, l := range p.p {
		if !l.Unlimited() {
			b.lim[c] = rate.NewLimiter(rate.Limit(l.Rate), l.Burst)
			b.lim[c].AllowN(now, 0) // start the clock at now, full
		}
	}
	return b
}

// follow brings b to policy p if p is newer (b's lock held).
func (b *buckets) follow(p *memPolicy, now time.Time) {
	if b.gen >= p.gen {
		return
	}
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

// full reports whether every bucket of b is full at now under p (b's
// lock held): b is then the same as new buckets. A bucket that lent
// tokens to reservations still waiting is not full.
func (b *buckets) full(p *memPolicy, now time.Time) bool {
	b.follow(p, now)
	for _, lim := range b.lim {
		if lim != nil && lim.TokensAt(now) < float64(lim.Burst()) {
			return false
		}
	}
	return true
}

// The shard's list (s.mu held).

func (s *shard) unlink(b *buckets) {
	if b.newer != nil {
		b.newer.older = b.older
	} else {
		s.newest = b.older
	}
	if b.older != nil {
		b.older.newer = b.newer
	} else {
		s.oldest = b.newer
	}
	b.newer, b.older = nil, nil
}

func (s *shard) pushNewest(b *buckets) {
	b.older = s.newest
	if s.newest != nil {
		s.newest.newer = b
	} else {
		s.oldest = b
	}
	s.newest = b
}

// touch makes b the most recently used.
func (s *shard) touch(b *buckets) {
	if s.newest != b {
		s.unlink(b)
		s.pushNewest(b)
	}
}

func (s *shard) remove(b *buckets) {
	s.unlink(b)
	delete(s.m, b.key)
}

// makeRoom drops, from s at the cap (s.mu held), a key whose buckets are
// all full, looking at no more than evictSample keys from the least
// recently used; those it passes over become the most recent, so that
// the next search looks at others. It reports whether it made room.
func (m *Memory) makeRoom(s *shard, p *memPolicy, now time.Time) bool {
	for range min(evictSample, len(s.m)) {
		b := s.oldest
		if b.full(p, now) {
			s.remove(b)
			m.evicted.Add(1)
			return true
		}
		s.touch(b)
	}
	return false
}

// Take implements Store. It never returns an error.
func (m *Memory) Take(_ context.Context, key string, c Class, now time.Time, maxWait time.Duration) (Result, error) {
	p := m.cfg.Load()
	if p.p[c].Unlimited() {
		return Result{Allowed: true}, nil
	}
	s := &m.shards[maphash.String(m.seed, key)%numShards]
	s.mu.Lock()
	b, ok := s.m[key]
	switch {
	case ok:
		b.follow(p, now)
		s.touch(b)
	case len(s.m) < m.perShard || m.makeRoom(s, p, now):
		b = newBuckets(p, key, now)
		s.m[key] = b
		s.pushNewest(b)
	default:
		s.mu.Unlock()
		return m.takeOverflow(p, c, now, maxWait), nil
	}
	// The token is taken under the shard's lock, so that no eviction can
	// see these buckets full between their lookup and the take.
	res := takeFrom(b.lim[c], now, maxWait)
	s.mu.Unlock()
	return res, nil
}

// takeOverflow takes a token of class c from the overflow budget.
func (m *Memory) takeOverflow(p *memPolicy, c Class, now time.Time, maxWait time.Duration) Result {
	o := &m.overflow
	o.mu.Lock()
	if o.b == nil {
		o.b = newBuckets(p, "", now)
	}
	o.b.follow(p, now)
	res := takeFrom(o.b.lim[c], now, maxWait)
	o.mu.Unlock()
	m.overflowed.Add(1)
	res.Overflow = true
	return res
}

// takeFrom takes a token from lim, or reserves one within maxWait. A nil lim
// is a class that a newer policy than the caller's made unlimited.
func takeFrom(lim *rate.Limiter, now time.Time, maxWait time.Duration) Result {
	if lim == nil {
		return Result{Allowed: true}
	}
	if maxWait <= 0 {
		ok := lim.AllowN(now, 1)
		return result(lim, now, ok)
	}
	r := lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay > maxWait {
		r.CancelAt(now)
		return result(lim, now, false)
	}
	res := result(lim, now, true)
	res.Delay = delay
	if delay > 0 {
		res.cancel = memReservation{r}
	}
	return res
}

func result(lim *rate.Limiter, now time.Time, ok bool) Result {
	tokens, burst := lim.TokensAt(now), lim.Burst()
	res := Result{Allowed: ok, Limit: burst, Remaining: max(0, int(tokens))}
	perToken := float64(time.Second) / float64(lim.Limit())
	res.Reset = time.Duration((float64(burst) - tokens) * perToken)
	if !ok {
		res.RetryAfter = time.Duration((1 - tokens) * perToken)
	}
	return res
}

type memReservation struct{ r *rate.Reservation }

func (mr memReservation) cancel(_ context.Context, now time.Time) { mr.r.CancelAt(now) }

// Sweep drops the buckets of every key whose buckets are all full at now,
// which loses nothing. Call it now and then (Caddy's module does so every
// minute).
func (m *Memory) Sweep(now time.Time) (removed int) {
	p := m.cfg.Load()
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for b := s.oldest; b != nil; {
			newer := b.newer
			if b.full(p, now) {
				s.remove(b)
				removed++
			}
			b = newer
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

// Evicted returns how many keys with full buckets were dropped to make
// room for new ones.
func (m *Memory) Evicted() uint64 { return m.evicted.Load() }

// Overflowed returns how many requests drew on the overflow budget.
func (m *Memory) Overflowed() uint64 { return m.overflowed.Load() }
