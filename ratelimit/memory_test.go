package ratelimit

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func testPolicy() Policy {
	return Policy{
		Get:    {Rate: 10, Burst: 5},
		Write:  {Rate: 4, Burst: 2},
		Delete: {Rate: 1, Burst: 1},
		Other:  {Rate: Inf},
	}
}

func take(t *testing.T, s Store, key string, c Class, now time.Time) Result {
	t.Helper()
	r, err := s.Take(context.Background(), key, c, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestClassOf(t *testing.T) {
	for m, want := range map[string]Class{
		"GET": Get, "HEAD": Get, "POST": Write, "PUT": Write, "PATCH": Write, "DELETE": Delete,
		"OPTIONS": Other, "TRACE": Other, "CONNECT": Other, "FOO": Other, "": Other,
		// no spelling escapes its class
		"get": Get, "Get": Get, "gEt": Get, "head": Get, "post": Write, "Put": Write, "pAtCh": Write, "delete": Delete, "Delete": Delete,
		// nor does a look-alike join one
		"GETS": Other, "GE": Other, "DELETE ": Other, "G\u0130T": Other, "PO\u017fT": Other,
	} {
		if got := ClassOf(m); got != want {
			t.Errorf("ClassOf(%q) = %v, want %v", m, got, want)
		}
	}
}

func TestStandard(t *testing.T) {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		if !Standard(m) {
			t.Errorf("Standard(%q) = false", m)
		}
	}
	for _, m := range []string{"get", "Get", "gEt", "delete", "TRACE", "CONNECT", "FOO", "PROPFIND", "", "GET "} {
		if Standard(m) {
			t.Errorf("Standard(%q) = true", m)
		}
	}
}

// TestEveryClassBurstAndRefill: each class admits its burst at once, then
// refuses, then admits again at its rate.
func TestEveryClassBurstAndRefill(t *testing.T) {
	m, err := NewMemory(testPolicy(), 1024)
	if err != nil {
		t.Fatal(err)
	}
	for c := Get; c <= Delete; c++ {
		l := testPolicy()[c]
		for i := range l.Burst {
			r := take(t, m, "k", c, t0)
			if !r.Allowed || r.Limit != l.Burst || r.Remaining != l.Burst-1-i {
				t.Fatalf("%s request %d: %+v", c, i, r)
			}
		}
		r := take(t, m, "k", c, t0)
		interval := time.Duration(float64(time.Second) / l.Rate)
		if r.Allowed || r.Remaining != 0 || r.RetryAfter != interval {
			t.Fatalf("%s over burst: %+v (want RetryAfter %v)", c, r, interval)
		}
		if r.Reset != time.Duration(l.Burst)*interval {
			t.Fatalf("%s Reset = %v", c, r.Reset)
		}
		if r := take(t, m, "k", c, t0.Add(interval-time.Microsecond)); r.Allowed {
			t.Fatalf("%s admitted before a token arrived", c)
		}
		if r := take(t, m, "k", c, t0.Add(interval)); !r.Allowed {
			t.Fatalf("%s refused after a token arrived: %+v", c, r)
		}
	}
	// other is unlimited
	for range 10000 {
		if r := take(t, m, "k", Other, t0); !r.Allowed || r.Limit != 0 {
			t.Fatalf("other: %+v", r)
		}
	}
	// classes and keys are independent
	if r := take(t, m, "other-key", Delete, t0); !r.Allowed {
		t.Fatal("another key shares a bucket")
	}
}

// TestRefusedConsumesNothing: hammering an empty bucket does not push the
// next admission further away.
func TestRefusedConsumesNothing(t *testing.T) {
	m, _ := NewMemory(testPolicy(), 64)
	take(t, m, "k", Delete, t0)
	for i := range 1000 {
		if take(t, m, "k", Delete, t0.Add(time.Duration(i)*time.Millisecond/2)).Allowed {
			t.Fatal("admitted early")
		}
	}
	if !take(t, m, "k", Delete, t0.Add(time.Second)).Allowed {
		t.Fatal("refusals consumed tokens")
	}
}

// TestAdmittedRateOverTime: offered twice the rate for 100 simulated
// seconds, the bucket admits the rate (plus the initial burst).
func TestAdmittedRateOverTime(t *testing.T) {
	p := Policy{Get: {Rate: 500, Burst: 50}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}}
	m, _ := NewMemory(p, 64)
	admitted := 0
	const secs, offered = 100, 1000
	for i := range secs * offered {
		now := t0.Add(time.Duration(i) * time.Second / offered)
		if take(t, m, "", Get, now).Allowed {
			admitted++
		}
	}
	want := 500*secs + 50
	if math.Abs(float64(admitted-want)) > 2 {
		t.Fatalf("admitted %d, want %d", admitted, want)
	}
}

func TestWaitReservation(t *testing.T) {
	m, _ := NewMemory(testPolicy(), 64)
	ctx := context.Background()
	take(t, m, "k", Delete, t0)
	// next token in 1s: within a 2s wait it is reserved with a delay
	r, _ := m.Take(ctx, "k", Delete, t0, 2*time.Second)
	if !r.Allowed || r.Delay != time.Second {
		t.Fatalf("reservation: %+v", r)
	}
	// the following one would need 2s: still fits
	r2, _ := m.Take(ctx, "k", Delete, t0, 2*time.Second)
	if !r2.Allowed || r2.Delay != 2*time.Second {
		t.Fatalf("second reservation: %+v", r2)
	}
	// a third would wait 3s: refused at once, reserving nothing
	r3, _ := m.Take(ctx, "k", Delete, t0, 2*time.Second)
	if r3.Allowed || r3.RetryAfter != 3*time.Second {
		t.Fatalf("third: %+v", r3)
	}
	// the second's client goes away: its token comes back
	r2.Cancel(ctx, t0)
	r4, _ := m.Take(ctx, "k", Delete, t0, 2*time.Second)
	if !r4.Allowed || r4.Delay != 2*time.Second {
		t.Fatalf("after cancel: %+v", r4)
	}
	// cancelling twice, or a refused result, is harmless
	r2.Cancel(ctx, t0)
	r3.Cancel(ctx, t0)
}

// TestWaitBurstSchedule is e2e's TestRateLimitWaitAdmitsWhatFits on an
// injected clock: at 20/s with a burst of 1 and max_wait 2s, 30 requests
// at one instant are all admitted, the k-th held k intervals of 50ms; of
// 60 more at the instant the last of those is due, the 40 whose tokens come
// within 2s are held for them and the other 20 refused at once.
func TestWaitBurstSchedule(t *testing.T) {
	m, _ := NewMemory(Policy{Get: {Rate: 20, Burst: 1}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}}, 64)
	ctx := context.Background()
	const interval = 50 * time.Millisecond
	for k := range 30 {
		r, err := m.Take(ctx, "", Get, t0, 2*time.Second)
		if err != nil || !r.Allowed || r.Delay != time.Duration(k)*interval {
			t.Fatalf("request %d: %+v %v, want admitted after %v", k, r, err, time.Duration(k)*interval)
		}
	}
	now := t0.Add(29 * interval)
	var admitted, refused int
	for k := range 60 {
		r, err := m.Take(ctx, "", Get, now, 2*time.Second)
		switch {
		case err != nil:
			t.Fatal(err)
		case r.Allowed:
			admitted++
			if want := time.Duration(k+1) * interval; r.Delay != want {
				t.Fatalf("second burst, request %d held %v, want %v", k, r.Delay, want)
			}
		default:
			refused++
			if r.Delay != 0 || r.RetryAfter <= 2*time.Second {
				t.Fatalf("second burst, refused request %d: %+v", k, r)
			}
		}
	}
	if admitted != 40 || refused != 20 {
		t.Fatalf("second burst: %d admitted, %d refused; want 40, 20", admitted, refused)
	}
}

// TestMemoryCap: a flood of distinct keys never holds more than the cap.
// Each new key either takes a free place, takes the place of a key whose
// buckets are all full, or draws on the overflow budget: when the flood's
// keys refill before their shard comes round again they are evicted, when
// they do not (a flood faster than the refill) nothing is, and the flood
// shares the overflow budget.
func TestMemoryCap(t *testing.T) {
	const maxKeys, flood = 64 * 4, 50_000
	for name, step := range map[string]time.Duration{
		"refilled_keys_make_room": time.Millisecond, // a GET refills in 100ms; a shard comes round every ~256ms
		"throttled_keys_stay":     time.Microsecond,
	} {
		t.Run(name, func(t *testing.T) {
			m, _ := NewMemory(testPolicy(), maxKeys)
			overflowed := 0
			for i := range flood {
				if take(t, m, fmt.Sprintf("flood-%d", i), Get, t0.Add(time.Duration(i)*step)).Overflow {
					overflowed++
				}
				if i%997 == 0 && m.Len() > maxKeys {
					t.Fatalf("%d keys held after %d, cap %d", m.Len(), i, maxKeys)
				}
			}
			if m.Len() != maxKeys || uint64(overflowed) != m.Overflowed() {
				t.Fatalf("Len %d, Overflowed %d (counted %d)", m.Len(), m.Overflowed(), overflowed)
			}
			// every key that got buckets of its own is held or was evicted
			if got := uint64(m.Len()) + m.Evicted() + m.Overflowed(); got != flood {
				t.Fatalf("held %d + evicted %d + overflowed %d = %d, want %d", m.Len(), m.Evicted(), m.Overflowed(), got, flood)
			}
			switch step {
			case time.Millisecond:
				if m.Evicted() < flood*9/10 {
					t.Fatalf("only %d refilled keys evicted", m.Evicted())
				}
			case time.Microsecond:
				if m.Evicted() != 0 {
					t.Fatalf("%d keys evicted before they refilled", m.Evicted())
				}
			}
		})
	}
}

// TestEvictionPrefersIdle: a key in constant use survives a flood that
// fills its shard many times over.
func TestEvictionPrefersIdle(t *testing.T) {
	m, _ := NewMemory(testPolicy(), 64*16)
	now := t0
	for range 5 {
		take(t, m, "busy", Delete, now) // drains busy's DELETE bucket
	}
	for i := range 50_000 {
		now = now.Add(time.Microsecond)
		take(t, m, fmt.Sprintf("flood-%d", i), Get, now)
		if i%8 == 0 {
			take(t, m, "busy", Get, now) // keeps busy recently used
		}
	}
	// had busy been evicted, its DELETE bucket would be full again
	if r := take(t, m, "busy", Delete, now); r.Allowed {
		t.Fatal("the busy key was evicted and its budget reset")
	}
}

// TestSweep: a key is swept when every bucket of it is full, and only
// then, whatever its idle time: a key that lent tokens to waiting
// requests is kept until those are paid back.
func TestSweep(t *testing.T) {
	m, _ := NewMemory(testPolicy(), 1024)
	ctx := context.Background()
	take(t, m, "get-once", Get, t0)        // full again at 100ms
	take(t, m, "delete-once", Delete, t0)  // full again at 1s
	take(t, m, "write-drained", Write, t0) // 2 of 2: full again at 500ms
	take(t, m, "write-drained", Write, t0) //
	for range 4 {                          // a DELETE now and three waiting: full again at 4s
		if r, _ := m.Take(ctx, "waiting", Delete, t0, 5*time.Second); !r.Allowed {
			t.Fatal("a reservation within max wait was refused")
		}
	}
	for _, c := range []struct {
		at         time.Duration
		swept, len int
	}{
		{99 * time.Millisecond, 0, 4},
		{100 * time.Millisecond, 1, 3},
		{999 * time.Millisecond, 1, 2},
		{time.Second, 1, 1},
		{3999 * time.Millisecond, 0, 1}, // idle for 4s less a bit, still owed tokens
		{4 * time.Second, 1, 0},
	} {
		if n := m.Sweep(t0.Add(c.at)); n != c.swept || m.Len() != c.len {
			t.Fatalf("at %v: swept %d, %d left; want %d, %d left", c.at, n, m.Len(), c.swept, c.len)
		}
	}
}

func TestPolicyValidation(t *testing.T) {
	bad := []Limit{{Rate: 0, Burst: 1}, {Rate: -1, Burst: 1}, {Rate: 1, Burst: 0}, {Rate: math.NaN(), Burst: 1}}
	for _, l := range bad {
		p := MXPolicy()
		p[Get] = l
		if _, err := NewMemory(p, 10); err == nil {
			t.Errorf("limit %+v accepted", l)
		}
	}
	if _, err := NewMemory(MXPolicy(), 0); err == nil {
		t.Error("zero key cap accepted")
	}
	for s, want := range map[string]float64{"2000/s": 2000, "60/m": 1, "7200/h": 2, "0.5/s": 0.5} {
		if got, err := ParseRate(s); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "100", "100/d", "0/s", "-5/s", "x/s", "inf/s", "NaN/s"} {
		if _, err := ParseRate(s); err == nil {
			t.Errorf("ParseRate(%q) accepted", s)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int64{0: 1, time.Millisecond: 1, time.Second: 1, time.Second + 1: 2, 2500 * time.Millisecond: 3} {
		if got := (Result{RetryAfter: d}).RetryAfterSeconds(); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func BenchmarkMemoryTake(b *testing.B) {
	m, _ := NewMemory(MXPolicy(), 100_000)
	ctx := context.Background()
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		if r, _ := m.Take(ctx, "client-1", Get, now, 0); !r.Allowed {
			b.Fatal("refused")
		}
	}
}

func BenchmarkMemoryTakeParallel(b *testing.B) {
	m, _ := NewMemory(Policy{Get: {Rate: 1e12, Burst: 1 << 30}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}}, 100_000)
	ctx := context.Background()
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("client-%d", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if r, _ := m.Take(ctx, keys[i%len(keys)], Get, t0.Add(time.Duration(i)), 0); !r.Allowed {
				b.Fatal("refused")
			}
		}
	})
}

// TestSetPolicyKeepsBuckets: a new policy applies to existing buckets
// without refilling them: tokens spent stay spent, and the new rate and
// burst govern from then on.
func TestSetPolicyKeepsBuckets(t *testing.T) {
	p := MXPolicy()
	p[Get] = Limit{Rate: 10, Burst: 10}
	m, err := NewMemory(p, 100)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	ctx := context.Background()
	for i := range 10 {
		if res, _ := m.Take(ctx, "k", Get, now, 0); !res.Allowed {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	if res, _ := m.Take(ctx, "k", Get, now, 0); res.Allowed {
		t.Fatal("admitted past the burst")
	}
	// a reload with a larger budget: the spent bucket is not refilled
	p[Get] = Limit{Rate: 100, Burst: 100}
	if err := m.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	if res, _ := m.Take(ctx, "k", Get, now, 0); res.Allowed || res.Limit != 100 {
		t.Fatalf("a new policy refilled the bucket: %+v", res)
	}
	// and the new rate applies: 100/s gives a token every 10ms
	if res, _ := m.Take(ctx, "k", Get, now.Add(10*time.Millisecond), 0); !res.Allowed {
		t.Fatal("the new rate does not apply to the existing bucket")
	}
	// a smaller burst caps what an idle bucket holds
	p[Get] = Limit{Rate: 1, Burst: 2}
	if err := m.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	admitted := 0
	for range 5 {
		if res, _ := m.Take(ctx, "k", Get, later, 0); res.Allowed {
			admitted++
		}
	}
	if admitted != 2 {
		t.Fatalf("%d admitted after the burst shrank to 2", admitted)
	}
	if err := m.SetPolicy(Policy{}); err == nil {
		t.Fatal("an invalid policy was taken")
	}
}
