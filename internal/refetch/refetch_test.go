package refetch

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is an injected time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// source is a stand-in credential issuer: it hands out cred-1, cred-2, …,
// fails while fail is set, and waits for hold (when set) before answering.
type source struct {
	calls atomic.Int32
	fail  atomic.Bool
	hold  chan struct{}
}

var errDown = errors.New("issuer down")

func (s *source) fetch(ctx context.Context) (string, error) {
	n := s.calls.Add(1)
	if s.hold != nil {
		<-s.hold
	}
	if s.fail.Load() {
		return "", errDown
	}
	return "cred-" + strconv.Itoa(int(n)), nil
}

// counts records what Observe heard.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) observe(o string) { c.mu.Lock(); c.m[o]++; c.mu.Unlock() }
func (c *counts) get(o string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.m[o] }

func newValue(minInterval time.Duration) (*Value[string], *clock, *counts) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	n := &counts{m: map[string]int{}}
	return &Value[string]{MinInterval: minInterval, Now: c.Now, Observe: n.observe}, c, n
}

// first makes the first (routine) fetch and returns its generation.
func first(t *testing.T, v *Value[string], s *source) uint64 {
	t.Helper()
	val, gen, err := v.Renew(context.Background(), 0, s.fetch)
	if err != nil || val != "cred-1" || gen != 1 {
		t.Fatalf("first fetch: %q %d %v", val, gen, err)
	}
	return gen
}

// TestRefusedManyCallersOneFetch: a hundred callers reporting the same
// refused generation at once cost one fetch, and all get the new one.
func TestRefusedManyCallersOneFetch(t *testing.T) {
	v, _, n := newValue(time.Minute)
	s := &source{}
	gen := first(t, v, s)
	s.hold = make(chan struct{})
	var wg sync.WaitGroup
	vals := make([]string, 100)
	gens := make([]uint64, 100)
	errs := make([]error, 100)
	for i := range vals {
		wg.Add(1)
		go func() { defer wg.Done(); vals[i], gens[i], errs[i] = v.Refused(context.Background(), gen, s.fetch) }()
	}
	for s.calls.Load() < 2 { // the forced fetch has begun; hold it while the rest arrive
		time.Sleep(time.Millisecond)
	}
	close(s.hold)
	wg.Wait()
	for i := range vals {
		if errs[i] != nil || vals[i] != "cred-2" || gens[i] != 2 {
			t.Fatalf("caller %d: %q %d %v", i, vals[i], gens[i], errs[i])
		}
	}
	if c := s.calls.Load(); c != 2 {
		t.Fatalf("%d fetches for 100 refusals of one generation, want 2 (the first and one forced)", c)
	}
	if n.get(OK) != 2 || n.get(Error) != 0 || n.get(Suppressed) != 0 {
		t.Errorf("observed %v", n.m)
	}
}

// TestRefusedMinInterval: once a forced fetch succeeded, refusals of its
// generation within MinInterval fetch nothing and say ErrTooSoon; at
// MinInterval, one refusal fetches once.
func TestRefusedMinInterval(t *testing.T) {
	v, c, n := newValue(30 * time.Second)
	s := &source{}
	gen := first(t, v, s)
	if !v.NextForced().IsZero() {
		t.Fatal("NextForced before any forced fetch")
	}
	// the first refusal after a routine fetch is not limited: a credential
	// revoked once is recovered at once
	start := c.Now()
	val, gen, err := v.Refused(context.Background(), gen, s.fetch)
	if err != nil || val != "cred-2" || gen != 2 {
		t.Fatalf("first refusal: %q %d %v", val, gen, err)
	}
	if got := v.NextForced(); !got.Equal(start.Add(30 * time.Second)) {
		t.Fatalf("NextForced %v, want %v", got, start.Add(30*time.Second))
	}
	for range 100 {
		c.Add(250 * time.Millisecond) // up to 25s: within the interval
		val, got, err := v.Refused(context.Background(), gen, s.fetch)
		if !errors.Is(err, ErrTooSoon) || val != "cred-2" || got != gen {
			t.Fatalf("within the interval: %q %d %v", val, got, err)
		}
	}
	if s.calls.Load() != 2 || n.get(Suppressed) != 100 {
		t.Fatalf("%d fetches, %d suppressed within the interval", s.calls.Load(), n.get(Suppressed))
	}
	c.Add(5*time.Second - time.Nanosecond)
	if _, _, err := v.Refused(context.Background(), gen, s.fetch); !errors.Is(err, ErrTooSoon) || s.calls.Load() != 2 {
		t.Fatalf("a nanosecond before the interval: %v, %d fetches", err, s.calls.Load())
	}
	c.Add(time.Nanosecond)
	for range 10 {
		if val, _, err := v.Refused(context.Background(), gen, s.fetch); err != nil || val != "cred-3" {
			t.Fatalf("after the interval: %q %v", val, err)
		}
	}
	if s.calls.Load() != 3 {
		t.Fatalf("%d fetches after the interval, want 3", s.calls.Load())
	}
}

// TestRefusedStaleGeneration: a refusal of a generation that is no longer
// current gets the current one without a fetch, even within the interval.
func TestRefusedStaleGeneration(t *testing.T) {
	v, _, n := newValue(time.Hour)
	s := &source{}
	old := first(t, v, s)
	if _, _, err := v.Refused(context.Background(), old, s.fetch); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		val, gen, err := v.Refused(context.Background(), old, s.fetch)
		if err != nil || val != "cred-2" || gen != 2 {
			t.Fatalf("stale refusal: %q %d %v", val, gen, err)
		}
		if val, gen, err = v.Renew(context.Background(), old, s.fetch); err != nil || val != "cred-2" || gen != 2 {
			t.Fatalf("stale renewal: %q %d %v", val, gen, err)
		}
	}
	if s.calls.Load() != 2 || n.get(Suppressed) != 0 {
		t.Fatalf("%d fetches, %d suppressed", s.calls.Load(), n.get(Suppressed))
	}
}

// TestRenewSingleFlight: callers that find nothing share one fetch.
func TestRenewSingleFlight(t *testing.T) {
	v, _, _ := newValue(0)
	s := &source{hold: make(chan struct{})}
	var wg sync.WaitGroup
	vals := make([]string, 200)
	for i := range vals {
		wg.Add(1)
		go func() { defer wg.Done(); vals[i], _, _ = v.Renew(context.Background(), 0, s.fetch) }()
	}
	for s.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(s.hold)
	wg.Wait()
	for i, val := range vals {
		if val != "cred-1" {
			t.Fatalf("caller %d: %q", i, val)
		}
	}
	if s.calls.Load() != 1 {
		t.Fatalf("%d fetches for 200 callers", s.calls.Load())
	}
}

// TestBackoff: after a failed fetch, neither Renew nor Refused fetches
// until the backoff has passed (doubling, bounded); each such call gets
// the failure and is counted as suppressed. A failed forced fetch does not
// start MinInterval: the next refusal after the backoff fetches.
func TestBackoff(t *testing.T) {
	v, c, n := newValue(time.Hour)
	v.MaxBackoff = 4 * time.Second
	s := &source{}
	gen := first(t, v, s)
	s.fail.Store(true)
	if _, _, err := v.Refused(context.Background(), gen, s.fetch); !errors.Is(err, errDown) {
		t.Fatalf("failed forced fetch: %v", err)
	}
	for range 20 {
		val, got, err := v.Refused(context.Background(), gen, s.fetch)
		if !errors.Is(err, errDown) || val != "cred-1" || got != gen {
			t.Fatalf("within the backoff: %q %d %v", val, got, err)
		}
		if _, _, err := v.Renew(context.Background(), gen, s.fetch); !errors.Is(err, errDown) {
			t.Fatalf("renewal within the backoff: %v", err)
		}
	}
	if s.calls.Load() != 2 || n.get(Suppressed) != 40 || n.get(Error) != 1 {
		t.Fatalf("%d fetches; observed %v", s.calls.Load(), n.m)
	}
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		c.Add(wait - time.Millisecond)
		v.Renew(context.Background(), gen, s.fetch)
		if got := s.calls.Load(); got != int32(i+2) {
			t.Fatalf("backoff %d: fetched %v into a wait of %v", i, wait-time.Millisecond, wait)
		}
		c.Add(time.Millisecond)
		v.Renew(context.Background(), gen, s.fetch)
		if got := s.calls.Load(); got != int32(i+3) {
			t.Fatalf("backoff %d: no fetch after %v", i, wait)
		}
	}
	if err := v.Failing(); !errors.Is(err, errDown) {
		t.Fatalf("Failing: %v", err)
	}
	// recovery, by a refusal: no forced fetch ever succeeded, so the
	// interval does not apply
	s.fail.Store(false)
	c.Add(4 * time.Second)
	if val, _, err := v.Refused(context.Background(), gen, s.fetch); err != nil || val != "cred-7" {
		t.Fatalf("recovery: %q %v", val, err)
	}
	if v.Failing() != nil {
		t.Fatal("still failing after a successful fetch")
	}
	// and the backoff starts again from MinBackoff
	s.fail.Store(true)
	_, gen = v.Load()
	c.Add(time.Hour)
	v.Refused(context.Background(), gen, s.fetch)
	c.Add(time.Second)
	v.Renew(context.Background(), gen, s.fetch)
	if s.calls.Load() != 9 {
		t.Fatalf("%d fetches: the backoff did not start again from MinBackoff", s.calls.Load())
	}
}

// TestPrefetch: a prefetch starts one fetch and returns at once; during a
// fetch or a backoff it does nothing and counts nothing.
func TestPrefetch(t *testing.T) {
	v, _, n := newValue(0)
	s := &source{hold: make(chan struct{})}
	v.Prefetch(context.Background(), 0, s.fetch)
	for s.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 10 {
		v.Prefetch(context.Background(), 0, s.fetch)
	}
	close(s.hold)
	val, gen, err := v.Renew(context.Background(), 0, s.fetch) // joins, or sees it done
	if err != nil || val != "cred-1" || gen != 1 || s.calls.Load() != 1 {
		t.Fatalf("%q %d %v after %d fetches", val, gen, err, s.calls.Load())
	}
	s.hold = nil
	s.fail.Store(true)
	if _, _, err := v.Renew(context.Background(), gen, s.fetch); !errors.Is(err, errDown) {
		t.Fatal(err)
	}
	for range 10 {
		v.Prefetch(context.Background(), gen, s.fetch)
	}
	if s.calls.Load() != 2 || n.get(Suppressed) != 0 {
		t.Fatalf("%d fetches, %d suppressed", s.calls.Load(), n.get(Suppressed))
	}
}

// TestCallerGoesAway: a caller whose context ends stops waiting, with the
// context's error and the current version; the fetch goes on for the
// others and is not cancelled.
func TestCallerGoesAway(t *testing.T) {
	v, _, _ := newValue(0)
	s := &source{hold: make(chan struct{})}
	var sawCancel atomic.Bool
	fetch := func(ctx context.Context) (string, error) {
		val, err := s.fetch(ctx)
		sawCancel.Store(ctx.Err() != nil)
		return val, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, _, err := v.Renew(ctx, 0, fetch); done <- err }()
	for s.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that left got %v", err)
	}
	other := make(chan string)
	go func() { val, _, _ := v.Renew(context.Background(), 0, fetch); other <- val }()
	close(s.hold)
	if val := <-other; val != "cred-1" || s.calls.Load() != 1 || sawCancel.Load() {
		t.Fatalf("the other caller got %q after %d fetches (cancelled: %v)", val, s.calls.Load(), sawCancel.Load())
	}
}

// TestZeroValue: the zero Value works with the defaults.
func TestZeroValue(t *testing.T) {
	var v Value[int]
	calls := 0
	fetch := func(context.Context) (int, error) { calls++; return calls, nil }
	if val, gen, err := v.Renew(context.Background(), 0, fetch); err != nil || val != 1 || gen != 1 {
		t.Fatal(val, gen, err)
	}
	if _, _, err := v.Refused(context.Background(), 1, fetch); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Refused(context.Background(), 2, fetch); !errors.Is(err, ErrTooSoon) || calls != 2 {
		t.Fatalf("%v after %d fetches", err, calls)
	}
}

// TestSetLimits: limits changed on a Value in use apply from then on, to
// the history it has: a forced fetch a minute old is a minute old for the
// new interval, and the next backoff uses the new bounds.
func TestSetLimits(t *testing.T) {
	v, c, _ := newValue(time.Hour)
	s := &source{}
	gen := first(t, v, s)
	_, gen, err := v.Refused(context.Background(), gen, s.fetch)
	if err != nil || s.calls.Load() != 2 {
		t.Fatalf("forced fetch: %v after %d", err, s.calls.Load())
	}
	c.Add(time.Minute)
	if _, _, err := v.Refused(context.Background(), gen, s.fetch); !errors.Is(err, ErrTooSoon) {
		t.Fatalf("within the hour: %v", err)
	}
	v.SetLimits(2*time.Minute, 3*time.Second, 5*time.Second)
	if _, _, err := v.Refused(context.Background(), gen, s.fetch); !errors.Is(err, ErrTooSoon) {
		t.Fatalf("a minute into a new interval of two: %v", err)
	}
	if at := v.NextForced(); !at.Equal(c.Now().Add(time.Minute)) {
		t.Fatalf("next forced fetch at %v, want a minute from now", at)
	}
	c.Add(time.Minute)
	if _, _, err := v.Refused(context.Background(), gen, s.fetch); err != nil || s.calls.Load() != 3 {
		t.Fatalf("two minutes after the last forced fetch: %v after %d fetches", err, s.calls.Load())
	}
	// the new backoff bounds: 3s, then 5s
	_, gen = v.Load()
	s.fail.Store(true)
	v.Renew(context.Background(), gen, s.fetch)
	for i, wait := range []time.Duration{3 * time.Second, 5 * time.Second, 5 * time.Second} {
		c.Add(wait - time.Millisecond)
		v.Renew(context.Background(), gen, s.fetch)
		if got := s.calls.Load(); got != int32(i+4) {
			t.Fatalf("backoff %d: fetched within %v", i, wait)
		}
		c.Add(time.Millisecond)
		v.Renew(context.Background(), gen, s.fetch)
		if got := s.calls.Load(); got != int32(i+5) {
			t.Fatalf("backoff %d: no fetch after %v", i, wait)
		}
	}
}

// TestClose: Close cancels the fetch under way (its callers get its
// error, and nothing is counted), and afterwards no call fetches.
func TestClose(t *testing.T) {
	v, _, n := newValue(0)
	started := make(chan struct{})
	var calls atomic.Int32
	fetch := func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 {
			close(started)
		}
		<-ctx.Done()
		return "", ctx.Err()
	}
	done := make(chan error)
	go func() { _, _, err := v.Renew(context.Background(), 0, fetch); done <- err }()
	<-started
	v.Close()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the waiting caller got %v", err)
	}
	for _, call := range []func() error{
		func() error { _, _, err := v.Renew(context.Background(), 0, fetch); return err },
		func() error { _, _, err := v.Refused(context.Background(), 0, fetch); return err },
	} {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Fatalf("after Close: %v", err)
		}
	}
	v.Prefetch(context.Background(), 0, fetch)
	v.Close()
	if calls.Load() != 1 || n.get(Error) != 0 || n.get(OK) != 0 {
		t.Fatalf("%d fetches after Close; observed %v", calls.Load(), n.m)
	}
}

// TestBackoffDoubles: the Backoff type alone.
func TestBackoffDoubles(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	b := Backoff{Min: time.Second, Max: 5 * time.Second}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		if got := b.Failed(at).Sub(at); got != want {
			t.Fatalf("failure %d: wait %v, want %v", i+1, got, want)
		}
	}
	b.Succeeded()
	if !b.Until().IsZero() || b.Failed(at).Sub(at) != time.Second {
		t.Fatal("a success did not end the backoff")
	}
	var zero Backoff
	if got := zero.Failed(at).Sub(at); got != DefaultMinBackoff {
		t.Fatalf("zero Backoff waits %v", got)
	}
}

// TestWait: Wait returns at once with no fetch under way, and after the
// fetch a Prefetch started has ended.
func TestWait(t *testing.T) {
	v, _, _ := newValue(0)
	if err := v.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := &source{hold: make(chan struct{})}
	v.Prefetch(context.Background(), 0, s.fetch)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := v.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with the fetch held: %v", err)
	}
	close(s.hold)
	if err := v.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if val, gen := v.Load(); val != "cred-1" || gen != 1 {
		t.Fatalf("after Wait: %q %d", val, gen)
	}
}
