package main

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// pool hands out pre-built requests in order. A cyclic pool starts again
// at the first when it runs out (for targets that keep no replay cache);
// any other pool is exhausted after each request was taken once.
type pool struct {
	reqs   [][]byte
	cyclic bool
	next   atomic.Int64
}

func (p *pool) take() ([]byte, bool) {
	i := p.next.Add(1) - 1
	if p.cyclic {
		return p.reqs[i%int64(len(p.reqs))], true
	}
	if i >= int64(len(p.reqs)) {
		return nil, false
	}
	return p.reqs[i], true
}

// statusCounts counts answers by status.
type statusCounts [600]int64

func (s *statusCounts) add(o *statusCounts) {
	for i := range s {
		s[i] += o[i]
	}
}

// closedResult is one closed-loop round against one target.
type closedResult struct {
	statuses  statusCounts
	errors    int64         // connection errors and timeouts
	elapsed   time.Duration // from the start to the last answer
	lat       latencies     // of every answer, whatever its status
	exhausted bool          // the pool of unique requests ran out before the end
}

func (r *closedResult) ok() int64 { return r.statuses[200] }

func (r *closedResult) non200() int64 {
	var n int64
	for s, c := range r.statuses {
		if s != 200 {
			n += c
		}
	}
	return n
}

func (r *closedResult) rps() float64 { return float64(r.ok()) / r.elapsed.Seconds() }

// closedLoop runs conns connections against addr for d, each sending its
// next request as soon as the previous one is answered. Every connection
// is opened before the clock starts.
func closedLoop(addr string, p *pool, conns int, d, timeout time.Duration) closedResult {
	type worker struct {
		statuses statusCounts
		errors   int64
		lat      []time.Duration
		end      time.Time
		c        *conn
	}
	ws := make([]*worker, conns)
	guess := 4096
	if !p.cyclic {
		guess = len(p.reqs)/conns + 1
	}
	for i := range ws {
		ws[i] = &worker{lat: make([]time.Duration, 0, guess)}
		c, err := dial(addr, timeout)
		if err == nil {
			ws[i].c = c
		}
	}
	var exhausted atomic.Bool
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if w.c != nil {
					w.c.close()
				}
			}()
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				if w.c == nil {
					c, err := dial(addr, timeout)
					if err != nil {
						w.errors++
						time.Sleep(time.Millisecond) // bounded: the loop ends at end
						continue
					}
					w.c = c
					t0 = time.Now()
				}
				req, ok := p.take()
				if !ok {
					exhausted.Store(true)
					break
				}
				_ = w.c.nc.SetDeadline(t0.Add(timeout))
				status, keep, err := w.c.roundTrip(req, nil)
				t1 := time.Now()
				if err != nil {
					w.errors++
					w.c.close()
					w.c = nil
					continue
				}
				w.lat = append(w.lat, t1.Sub(t0))
				w.statuses[status]++
				if !keep {
					w.c.close()
					w.c = nil
				}
			}
			w.end = time.Now()
		}()
	}
	wg.Wait()
	var r closedResult
	var all []time.Duration
	last := start
	for _, w := range ws {
		r.statuses.add(&w.statuses)
		r.errors += w.errors
		all = append(all, w.lat...)
		if w.end.After(last) {
			last = w.end
		}
	}
	r.elapsed = last.Sub(start)
	r.lat = summarise(all)
	r.exhausted = exhausted.Load()
	return r
}

// clock is time for the open-loop scheduler, so tests can fake it.
type clock interface {
	Now() time.Time
	Sleep(time.Duration)
}

// realClock sleeps precisely: Go's timers wake up as much as a
// millisecond late on this kernel (measured: time.Sleep(50µs) took
// 1.08 ms), which would add up to a millisecond to every open-loop
// latency. It sleeps with Go's timers until 2 ms before the deadline,
// then with nanosleep(2), which wakes within the kernel's timer slack
// (about 50-90 µs); the remaining lateness is reported as the client's.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(d time.Duration) {
	deadline := time.Now().Add(d)
	if d > 2*time.Millisecond {
		time.Sleep(d - 2*time.Millisecond)
	}
	// Bounded: each pass sleeps until the fixed deadline or is woken by
	// a signal closer to it.
	for rest := time.Until(deadline); rest > 0; rest = time.Until(deadline) {
		ts := syscall.NsecToTimespec(int64(rest))
		_ = syscall.Nanosleep(&ts, nil)
	}
}

// schedule is an open-loop plan: count requests at rate a second from
// start, the i-th due at start + i/rate.
type schedule struct {
	start time.Time
	rate  int
	count int
}

func (s schedule) at(i int) time.Time {
	return s.start.Add(time.Duration(int64(i) * int64(time.Second) / int64(s.rate)))
}

// end is when the schedule's last request is due, plus one interval.
func (s schedule) end() time.Time { return s.at(s.count) }

// failure says why an open-loop request got no answer.
type failure uint8

const (
	answered    failure = iota
	failDial            // could not connect before the deadline
	failError           // connection cut, or no answer before the deadline
	failExpired         // never sent: its deadline passed while it waited for a free connection
	failCap             // never sent: the client already had its maximum of connections open
	failReset           // the connection was reset or refused as it was made: the server turned it away at accept
)

// outcome is what became of one scheduled request. lat runs from the
// request's scheduled send time, not from when a connection was free to
// send it: time spent waiting in the client behind a slow server counts,
// so the figures have no coordinated omission.
type outcome struct {
	lat    time.Duration
	late   time.Duration // from the scheduled time to the start of the send
	status int
	fail   failure
}

// sendFunc sends scheduled request i over worker w's connection (w is -1
// in a storm) and returns the answer's status; deadline bounds it.
type sendFunc func(w, i int, deadline time.Time) (int, error)

var errCap = errors.New("client connection cap reached")

// runPooled runs s over workers connections: a free worker takes the next
// request, waits for its scheduled time if that is still ahead, and sends
// it. Taking and waiting happen under one lock, so that one worker at a
// time sleeps (the precise sleep holds an OS thread) while the rest wait
// on the lock. A request still unsent timeout after its scheduled time is
// given up (failExpired), so the run ends at most timeout after the
// schedule does.
func runPooled(clk clock, s schedule, workers int, timeout time.Duration, send sendFunc) []outcome {
	out := make([]outcome, s.count)
	var mu sync.Mutex
	next := 0
	// take returns the next request due, once it is due, or -1 when
	// there are none left.
	take := func() int {
		mu.Lock()
		defer mu.Unlock()
		for next < s.count {
			i := next
			next++
			at := s.at(i)
			wait := at.Sub(clk.Now())
			if wait > 0 {
				clk.Sleep(wait)
				return i
			}
			if -wait < timeout {
				return i
			}
			out[i] = outcome{lat: -wait, late: -wait, fail: failExpired}
		}
		return -1
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := take()
				if i < 0 {
					return
				}
				at := s.at(i)
				late := clk.Now().Sub(at)
				status, err := send(w, i, at.Add(timeout))
				out[i] = finish(clk.Now().Sub(at), late, status, err)
			}
		}()
	}
	wg.Wait()
	return out
}

// runStorm runs s with no bound on concurrency: each request is started
// by spawn at its scheduled time, whatever is still in flight, as a client
// that opens connections freely does. The caller waits for what spawn
// started; runStorm returns when the last request has been started.
func runStorm(clk clock, s schedule, timeout time.Duration, spawn func(func()), send sendFunc, out []outcome) {
	for i := range s.count {
		at := s.at(i)
		if wait := at.Sub(clk.Now()); wait > 0 {
			clk.Sleep(wait)
		}
		spawn(func() {
			late := clk.Now().Sub(at)
			status, err := send(-1, i, at.Add(timeout))
			out[i] = finish(clk.Now().Sub(at), late, status, err)
		})
	}
}

func finish(lat, late time.Duration, status int, err error) outcome {
	o := outcome{lat: lat, late: late, status: status}
	switch {
	case errors.Is(err, errCap):
		o.fail, o.status = failCap, 0
	case errors.As(err, new(*dialError)) && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)):
		o.fail, o.status = failReset, 0 // turned away at once: a refusal, not a wait
	case errors.As(err, new(*dialError)):
		o.fail, o.status = failDial, 0 // no connection by the deadline
	case err != nil:
		o.fail = failError
	}
	return o
}

// openResult summarises one open-loop run.
type openResult struct {
	offered  int
	ok       int // answered 200
	shed     int // answered 429 or 503
	other    int // answered with another status
	others   statusCounts
	dials    int // failDial
	resets   int // failReset
	errors   int // failError
	expired  int // failExpired
	capped   int // failCap
	admitted latencies
	// late is how long after their scheduled time the sent requests were
	// started: the client's own share of the latencies.
	late latencies
	// recovery is how long after the end of the schedule the target
	// answered recoveryRun probes in a row, each 200 within recoveryLatency.
	recovery  time.Duration
	recovered bool
}

func (r *openResult) failed() int {
	return r.other + r.dials + r.resets + r.errors + r.expired + r.capped
}

func summariseOpen(out []outcome) openResult {
	r := openResult{offered: len(out)}
	lat := make([]time.Duration, 0, len(out))
	late := make([]time.Duration, 0, len(out))
	for _, o := range out {
		if o.fail != failExpired && o.fail != failCap {
			late = append(late, o.late)
		}
		switch {
		case o.fail == failDial:
			r.dials++
		case o.fail == failReset:
			r.resets++
		case o.fail == failError:
			r.errors++
		case o.fail == failExpired:
			r.expired++
		case o.fail == failCap:
			r.capped++
		case o.status == 200:
			r.ok++
			lat = append(lat, o.lat)
		case o.status == 429 || o.status == 503:
			r.shed++
		default:
			r.other++
			if o.status >= 0 && o.status < len(r.others) {
				r.others[o.status]++
			}
		}
	}
	r.admitted = summarise(lat)
	r.late = summarise(late)
	return r
}

// pooledSender sends over one connection per worker, opened on first use
// and again after an error or a close.
func pooledSender(addr string, reqs [][]byte, workers int) (sendFunc, func()) {
	send, closeAll := pooledConns(addr, workers)
	return func(w, i int, deadline time.Time) (int, error) {
		return send(w, reqs[i%len(reqs)], deadline)
	}, closeAll
}

// pooledConns is pooledSender's connections, sending whatever request it
// is given: a caller can change the requests between runs and keep the
// connections.
func pooledConns(addr string, workers int) (func(w int, req []byte, deadline time.Time) (int, error), func()) {
	conns := make([]*conn, workers)
	send := func(w int, req []byte, deadline time.Time) (int, error) {
		c := conns[w]
		if c == nil {
			var err error
			if c, err = dialBy(addr, deadline); err != nil {
				return 0, err
			}
			conns[w] = c
		}
		_ = c.nc.SetDeadline(deadline)
		status, keep, err := c.roundTrip(req, nil)
		if err != nil || !keep {
			c.close()
			conns[w] = nil
		}
		return status, err
	}
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}
	return send, closeAll
}

// stormSender takes an idle connection if there is one and opens a new
// one otherwise, as net/http's client does with no per-host limit; up to
// maxIdle answered connections are kept for reuse. At most maxOpen are
// open at once (the file-descriptor limit is the real bound).
func stormSender(addr string, reqs [][]byte, maxIdle int, maxOpen int64) (sendFunc, func()) {
	idle := make(chan *conn, maxIdle)
	var open atomic.Int64
	drop := func(c *conn) {
		c.close()
		open.Add(-1)
	}
	send := func(_, i int, deadline time.Time) (int, error) {
		var c *conn
		select {
		case c = <-idle:
		default:
			if open.Add(1) > maxOpen {
				open.Add(-1)
				return 0, errCap
			}
			var err error
			if c, err = dialBy(addr, deadline); err != nil {
				open.Add(-1)
				return 0, err
			}
		}
		_ = c.nc.SetDeadline(deadline)
		status, keep, err := c.roundTrip(reqs[i%len(reqs)], nil)
		if err != nil || !keep {
			drop(c)
			return status, err
		}
		select {
		case idle <- c:
		default:
			drop(c)
		}
		return status, nil
	}
	closeAll := func() {
		for {
			select {
			case c := <-idle:
				drop(c)
			default:
				return
			}
		}
	}
	return send, closeAll
}

// waitGroup starts goroutines and waits for them.
type waitGroup struct{ sync.WaitGroup }

func (w *waitGroup) spawn(f func()) {
	w.Add(1)
	go func() {
		defer w.Done()
		f()
	}()
}

// Recovery: after an open-loop run, probes on fresh connections, one every
// recoveryEvery, until recoveryRun in a row are answered 200 within
// recoveryLatency, or recoveryMax has passed.
const (
	recoveryEvery   = 50 * time.Millisecond
	recoveryRun     = 5
	recoveryLatency = 50 * time.Millisecond
	recoveryTimeout = time.Second
)

// probe is one recovery probe: when it was sent, counted from the end of
// the schedule, and whether it passed.
type probe struct {
	at time.Duration
	ok bool
}

// recoveredAt returns the send time of the first probe of the first run of
// n passing probes in a row.
func recoveredAt(probes []probe, n int) (time.Duration, bool) {
	run := 0
	for i, p := range probes {
		if !p.ok {
			run = 0
			continue
		}
		run++
		if run == n {
			return probes[i-n+1].at, true
		}
	}
	return 0, false
}

// probeRecovery probes addr from since (the end of the schedule) until it
// has recovered or max has passed; reqs holds at least max/recoveryEvery +
// recoveryRun requests.
func probeRecovery(addr string, reqs [][]byte, since time.Time, max time.Duration) (time.Duration, bool) {
	var probes []probe
	next := since
	for i := 0; i < len(reqs) && time.Since(since) < max; i++ {
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait)
		}
		t0 := time.Now()
		ok := false
		if c, err := dial(addr, recoveryTimeout); err == nil {
			_ = c.nc.SetDeadline(t0.Add(recoveryTimeout))
			status, _, err := c.roundTrip(reqs[i], nil)
			ok = err == nil && status == 200 && time.Since(t0) <= recoveryLatency
			c.close()
		}
		probes = append(probes, probe{at: t0.Sub(since), ok: ok})
		if at, done := recoveredAt(probes, recoveryRun); done {
			return at, true
		}
		next = next.Add(recoveryEvery)
		if now := time.Now(); next.Before(now) {
			next = now
		}
	}
	return 0, false
}
