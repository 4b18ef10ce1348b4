package main

import (
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// New handshakes a second: for each TLS target, a loop of fresh
// connections, each carrying one request and closed by the client, over
// -handshake-conns workers for -handshakes; once with full handshakes
// (no session cache in the client) and once resuming sessions (a client
// session cache; the servers' session tickets, on in Caddy and nginx
// alike).

// handshakeRow is one target's loop of fresh connections.
type handshakeRow struct {
	t         *target
	resume    bool
	ok        int     // answered 200
	failed    int     // handshakes or requests that failed, other statuses
	resumed   int     // connections whose session was resumed
	rps       float64 // answered connections a second
	lat       latencies
	serverCPU time.Duration // per answered connection
}

// handshakes runs t's loop of fresh connections for d.
func (b *bench) handshakes(t *target, resume bool, workers int, d time.Duration) *handshakeRow {
	cfg := tlsClients[t.addr].Clone()
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	est := b.capacity["hs/"+t.name]
	if est == 0 {
		est = 5000
	}
	p := b.pool(t, trafficGET, int(est*d.Seconds()*1.5)+2000)
	if resume { // a first connection leaves a ticket in the cache
		if _, _, err := freshRequest(t.addr, cfg, p, 5*time.Second); err != nil {
			log.Printf("%s: priming the session cache: %v", t.name, err)
		}
	}
	type worker struct {
		lat                 []time.Duration
		ok, failed, resumed int
	}
	ws := make([]*worker, workers)
	runtime.GC()
	cpu0 := cpuOf(t.pids)
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	var exhausted atomic.Bool
	for i := range ws {
		w := &worker{lat: make([]time.Duration, 0, 4096)}
		ws[i] = w
		wg.Go(func() {
			for time.Now().Before(end) {
				t0 := time.Now()
				status, resumed, err := freshRequest(t.addr, cfg, p, *timeout)
				if err == errExhausted {
					exhausted.Store(true)
					return
				}
				if err != nil || status != 200 {
					w.failed++
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
				w.ok++
				if resumed {
					w.resumed++
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuOf(t.pids) - cpu0
	r := &handshakeRow{t: t, resume: resume}
	var all []time.Duration
	for _, w := range ws {
		r.ok += w.ok
		r.failed += w.failed
		r.resumed += w.resumed
		all = append(all, w.lat...)
	}
	r.lat = summarise(all)
	r.rps = float64(r.ok) / elapsed.Seconds()
	if r.ok > 0 {
		r.serverCPU = cpu / time.Duration(r.ok)
	}
	if !resume {
		b.capacity["hs/"+t.name] = r.rps
	}
	mode := "full"
	if resume {
		mode = "resumed"
	}
	log.Printf("handshakes %-7s %-12s %7.0f/s  p50 %-9v p99 %-9v server CPU %v each  resumed %d of %d  failed %d",
		mode, t.name, r.rps, r.lat.p50, r.lat.p99, r.serverCPU, r.resumed, r.ok, r.failed)
	logDialErrors()
	if exhausted.Load() {
		log.Printf("  %s used up its requests before %v", t.name, d)
	}
	return r
}

var errExhausted = fmt.Errorf("no requests left")

// freshRequest opens a connection to addr, shakes hands with cfg, sends
// the next request of p, reads the answer and resets the connection (no
// TIME_WAIT left for the client's ports to run out on).
func freshRequest(addr string, cfg *tls.Config, p *pool, timeout time.Duration) (status int, resumed bool, err error) {
	req, ok := p.take()
	if !ok {
		return 0, false, errExhausted
	}
	deadline := time.Now().Add(timeout)
	nc, err := (&net.Dialer{Deadline: deadline}).Dial("tcp", addr)
	if err != nil {
		noteDialError(err)
		return 0, false, err
	}
	defer func() {
		_ = nc.(*net.TCPConn).SetLinger(0)
		nc.Close()
	}()
	tc := tls.Client(nc, cfg)
	_ = tc.SetDeadline(deadline)
	if err := tc.Handshake(); err != nil {
		noteDialError(fmt.Errorf("TLS handshake: %w", err))
		return 0, false, err
	}
	c := &conn{nc: tc, br: newReader(tc)}
	status, _, err = c.roundTrip(req, nil)
	return status, tc.ConnectionState().DidResume, err
}

// handshakeTable is the Markdown table of the loops of fresh connections.
func handshakeTable(rows []*handshakeRow, workers int, d time.Duration) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("### TLS: new connections a second\n\n")
	w("A loop of fresh connections per target, %d at once for %v: each one\n", workers, d)
	w("connects, shakes hands, sends one request (for the MDX targets a new\n")
	w("pre-signed GET; for FDX the GET with its token), reads the answer and\n")
	w("is reset by the client. *Full*: no session cache in the client, every\n")
	w("handshake a full one. *Resumed*: a client session cache, and the\n")
	w("servers' session tickets (on by default in Caddy and in nginx,\n")
	w("`ssl_session_tickets on`; no server-side session cache on either);\n")
	w("*resumed* counts the connections that did resume. The latency is of\n")
	w("the whole connection (connect, handshake, request, answer); *server\n")
	w("CPU* is the target's processes' CPU time per answered connection.\n\n")
	w("| target | negotiated | full: conn/s | full: p50 | full: p99 | full: server CPU | resumed: conn/s | resumed: p99 | resumed: server CPU | resumed | failed |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|\n")
	byTarget := map[*target][2]*handshakeRow{}
	var order []*target
	for _, r := range rows {
		pair, seen := byTarget[r.t]
		if !seen {
			order = append(order, r.t)
		}
		if r.resume {
			pair[1] = r
		} else {
			pair[0] = r
		}
		byTarget[r.t] = pair
	}
	for _, t := range order {
		pair := byTarget[t]
		cells := []string{t.title, t.negotiated}
		failed := 0
		if f := pair[0]; f != nil {
			cells = append(cells, fmt.Sprintf("%.0f", f.rps), ms(f.lat.p50), ms(f.lat.p99), us(f.serverCPU))
			failed += f.failed
		} else {
			cells = append(cells, "–", "–", "–", "–")
		}
		if r := pair[1]; r != nil {
			cells = append(cells, fmt.Sprintf("%.0f", r.rps), ms(r.lat.p99), us(r.serverCPU), fmt.Sprintf("%d of %d", r.resumed, r.ok))
			failed += r.failed
		} else {
			cells = append(cells, "–", "–", "–", "–")
		}
		cells = append(cells, fmt.Sprint(failed))
		w("| %s |\n", strings.Join(cells, " | "))
	}
	w("\n")
	return b.String()
}
