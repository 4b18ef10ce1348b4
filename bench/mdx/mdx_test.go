package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/hmac"
)

var fakeNow = time.Unix(1382975431, 0)

// TestRequestsVerify parses every pre-built request as a server would and
// checks it against hmac.Verify and the Content-MD5 rule, and that no two
// carry the same signature (a replay cache would refuse the second).
func TestRequestsVerify(t *testing.T) {
	g, err := newGenerator(func() time.Time { return fakeNow })
	if err != nil {
		t.Fatal(err)
	}
	key, err := hmac.ParseKey(demoKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := hmac.NewVerifier(hmac.SHA1, key)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range []traffic{trafficGET, trafficMix} {
		var gets, posts int
		for _, raw := range g.build(k, "127.0.0.1:8480", 200) {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatalf("%s: %v\n%s", k, err, raw)
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				t.Fatal(err)
			}
			resource, err := hmac.FinalSegment().Resource(req.URL.EscapedPath(), req.URL.RawQuery)
			if err != nil {
				t.Fatal(err)
			}
			h := req.Header
			hr := &hmac.Request{
				Method: req.Method, ContentMD5: h.Get("Content-MD5"), ContentType: h.Get("Content-Type"),
				Date: h.Get("Date"), Accept: h.Get("Accept"), SessionKey: h.Get("MDX-Session-Key"), Resource: resource,
			}
			sig := h.Get("MDX-HMAC")
			if err := v.Verify(hr, sig); err != nil {
				t.Fatalf("%s %s: %v", req.Method, req.URL, err)
			}
			if err := hmac.CheckContentMD5(body, hr.ContentMD5); err != nil {
				t.Fatalf("%s %s: %v", req.Method, req.URL, err)
			}
			if seen[sig] {
				t.Fatalf("signature of %s %s used twice", req.Method, req.URL)
			}
			seen[sig] = true
			if hr.Date != "1382975431" {
				t.Errorf("Date %q, want the generator's clock", hr.Date)
			}
			if req.Host != "127.0.0.1:8480" {
				t.Errorf("Host %q", req.Host)
			}
			switch req.Method {
			case "GET":
				gets++
				if len(body) != 0 || resource != "/transactions" || len(hr.SessionKey) != 64 {
					t.Errorf("GET %s: body %d bytes, resource %q, session key %q", req.URL, len(body), resource, hr.SessionKey)
				}
			case "POST":
				posts++
				if len(body) != bodySize || resource != "/sessions" || hr.SessionKey != "" || hr.ContentType != mdxType {
					t.Errorf("POST %s: body %d bytes, resource %q, session key %q, type %q", req.URL, len(body), resource, hr.SessionKey, hr.ContentType)
				}
				if !strings.HasPrefix(string(body), "<?xml") || !strings.HasSuffix(string(body), "</mdx>\n") {
					t.Errorf("POST body is not the session request: %q", body)
				}
			default:
				t.Fatalf("method %s", req.Method)
			}
		}
		if k == trafficGET && (gets != 200 || posts != 0) || k == trafficMix && (gets != 100 || posts != 100) {
			t.Errorf("%s: %d GETs and %d POSTs", k, gets, posts)
		}
	}
}

func TestTamper(t *testing.T) {
	g, err := newGenerator(func() time.Time { return fakeNow })
	if err != nil {
		t.Fatal(err)
	}
	key, _ := hmac.ParseKey(demoKey)
	v, _ := hmac.NewVerifier(hmac.SHA1, key)
	for _, raw := range g.build(trafficMix, "h", 2) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(tamper(raw))))
		if err != nil {
			t.Fatal(err)
		}
		h := req.Header
		hr := &hmac.Request{Method: req.Method, ContentMD5: h.Get("Content-MD5"), ContentType: h.Get("Content-Type"),
			Date: h.Get("Date"), Accept: h.Get("Accept"), SessionKey: h.Get("MDX-Session-Key")}
		hr.Resource, _ = hmac.FinalSegment().Resource(req.URL.EscapedPath(), "")
		if err := v.Verify(hr, h.Get("MDX-HMAC")); !errors.Is(err, hmac.ErrSignatureMismatch) {
			t.Errorf("tampered %s verified: %v", req.Method, err)
		}
	}
}

func TestPercentile(t *testing.T) {
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i))
	}
	var thousand []time.Duration
	for i := 1; i <= 1000; i++ {
		thousand = append(thousand, time.Duration(i))
	}
	for _, c := range []struct {
		s    []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7}, 50, 7},
		{[]time.Duration{7}, 99, 7},
		{[]time.Duration{1, 2}, 50, 1},
		{[]time.Duration{1, 2}, 51, 2},
		{hundred, 50, 50},
		{hundred, 99, 99},
		{hundred, 100, 100},
		{hundred, 0.5, 1},
		{thousand, 99, 990},
		{thousand, 99.9, 999},
	} {
		if got := percentile(c.s, c.p); got != c.want {
			t.Errorf("percentile(%d samples, %v) = %v, want %v", len(c.s), c.p, got, c.want)
		}
	}
	l := summarise([]time.Duration{5, 3, 9, 1})
	if l.n != 4 || l.p50 != 3 || l.p99 != 9 || l.max != 9 {
		t.Errorf("summarise = %+v", l)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), c.xs...)
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
		for i := range in {
			if in[i] != c.xs[i] {
				t.Errorf("median changed its input")
			}
		}
	}
}

// fakeClock advances only when slept on or told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(d time.Duration) { c.advance(d) }

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestPooledLatencyFromSchedule: one connection, a request due every 1 ms,
// a server that takes 3 ms. Request i is due at i ms but can start only
// when i-1 is answered, at 3i ms, and is answered at 3(i+1) ms: its
// latency is 2i+3 ms from its scheduled time, not the 3 ms a closed-loop
// client would record.
func TestPooledLatencyFromSchedule(t *testing.T) {
	clk := &fakeClock{t: fakeNow}
	s := schedule{start: fakeNow, rate: 1000, count: 5}
	var sent []int
	out := runPooled(clk, s, 1, time.Hour, func(w, i int, deadline time.Time) (int, error) {
		if w != 0 {
			t.Errorf("worker %d", w)
		}
		if want := s.at(i).Add(time.Hour); !deadline.Equal(want) {
			t.Errorf("request %d: deadline %v, want %v", i, deadline, want)
		}
		sent = append(sent, i)
		clk.advance(3 * time.Millisecond)
		return 200, nil
	})
	for i, o := range out {
		want := time.Duration(2*i+3) * time.Millisecond
		late := time.Duration(2*i) * time.Millisecond
		if o.lat != want || o.late != late || o.status != 200 || o.fail != answered {
			t.Errorf("request %d: %+v, want latency %v, %v of it in the client", i, o, want, late)
		}
	}
	if len(sent) != 5 {
		t.Errorf("sent %v", sent)
	}
	r := summariseOpen(out)
	if r.ok != 5 || r.admitted.p50 != 7*time.Millisecond || r.admitted.max != 11*time.Millisecond || r.late.max != 8*time.Millisecond {
		t.Errorf("summary %+v", r)
	}
}

// TestPooledWaitsForSchedule: a fast server; each request is sent at its
// scheduled time, so latency is the service time alone.
func TestPooledWaitsForSchedule(t *testing.T) {
	clk := &fakeClock{t: fakeNow}
	s := schedule{start: fakeNow.Add(time.Second), rate: 100, count: 4}
	var sentAt []time.Time
	out := runPooled(clk, s, 1, time.Hour, func(_, i int, _ time.Time) (int, error) {
		sentAt = append(sentAt, clk.Now())
		clk.advance(time.Millisecond)
		return 200, nil
	})
	for i := range out {
		if !sentAt[i].Equal(s.at(i)) || out[i].lat != time.Millisecond {
			t.Errorf("request %d sent at %v (due %v), latency %v", i, sentAt[i], s.at(i), out[i].lat)
		}
	}
}

// TestPooledExpires: with a 10 ms timeout the backlog of the 3 ms server
// is given up once a request is 10 ms late before it could be sent.
func TestPooledExpires(t *testing.T) {
	clk := &fakeClock{t: fakeNow}
	s := schedule{start: fakeNow, rate: 1000, count: 8}
	out := runPooled(clk, s, 1, 10*time.Millisecond, func(_, i int, _ time.Time) (int, error) {
		clk.advance(3 * time.Millisecond)
		if i == 1 {
			return 0, errors.New("reset")
		}
		return 429, nil
	})
	// Request i (i < 5) starts at 3i ms, 2i ms late. Request 5 would start
	// at 15 ms, 10 ms late: expired, and so is none after it until the
	// lateness drops: 6 starts at 15 ms (9 ms late), answered at 18; 7
	// starts at 18 ms, 11 ms late: expired.
	ms := time.Millisecond
	want := []outcome{
		{lat: 3 * ms, late: 0, status: 429},
		{lat: 5 * ms, late: 2 * ms, fail: failError},
		{lat: 7 * ms, late: 4 * ms, status: 429},
		{lat: 9 * ms, late: 6 * ms, status: 429},
		{lat: 11 * ms, late: 8 * ms, status: 429},
		{lat: 10 * ms, late: 10 * ms, fail: failExpired},
		{lat: 12 * ms, late: 9 * ms, status: 429},
		{lat: 11 * ms, late: 11 * ms, fail: failExpired},
	}
	for i := range want {
		if out[i] != want[i] {
			t.Errorf("request %d: %+v, want %+v", i, out[i], want[i])
		}
	}
	r := summariseOpen(out)
	if r.shed != 5 || r.errors != 1 || r.expired != 2 || r.ok != 0 || r.failed() != 3 || r.late.n != 6 {
		t.Errorf("summary %+v", r)
	}
}

// TestStormLatencyFromSchedule runs the storm's dispatcher with spawn
// running each request at once: a 2.5 ms server makes the dispatcher fall
// behind a 1 ms schedule, and each latency still counts from the
// scheduled time.
func TestStormLatencyFromSchedule(t *testing.T) {
	clk := &fakeClock{t: fakeNow}
	s := schedule{start: fakeNow, rate: 1000, count: 4}
	out := make([]outcome, s.count)
	runStorm(clk, s, time.Hour, func(f func()) { f() }, func(w, i int, _ time.Time) (int, error) {
		if w != -1 {
			t.Errorf("storm request on worker %d", w)
		}
		clk.advance(2500 * time.Microsecond)
		if i == 3 {
			return 0, errCap
		}
		return 200, nil
	}, out)
	for i := range 3 {
		want := time.Duration(1500*i+2500) * time.Microsecond
		if out[i].lat != want || out[i].status != 200 {
			t.Errorf("request %d: %+v, want latency %v", i, out[i], want)
		}
	}
	if out[3].fail != failCap {
		t.Errorf("request 3: %+v, want failCap", out[3])
	}
}

func TestScheduleAt(t *testing.T) {
	s := schedule{start: fakeNow, rate: 3, count: 3}
	for i, want := range []time.Duration{0, 333333333, 666666666, time.Second} {
		if got := s.at(i).Sub(fakeNow); got != want {
			t.Errorf("at(%d) = %v, want %v", i, got, want)
		}
	}
	if !s.end().Equal(fakeNow.Add(time.Second)) {
		t.Errorf("end = %v", s.end())
	}
}

func TestRecoveredAt(t *testing.T) {
	ms := time.Millisecond
	probes := []probe{{0, false}, {50 * ms, true}, {100 * ms, true}, {150 * ms, false}, {200 * ms, true}, {250 * ms, true}, {300 * ms, true}}
	if at, ok := recoveredAt(probes, 3); !ok || at != 200*ms {
		t.Errorf("recoveredAt = %v, %v; want 200ms", at, ok)
	}
	if _, ok := recoveredAt(probes[:6], 3); ok {
		t.Errorf("recovered without three in a row")
	}
	if at, ok := recoveredAt(probes[1:], 2); !ok || at != 50*ms {
		t.Errorf("recoveredAt = %v, %v; want 50ms", at, ok)
	}
}

func TestReadResponse(t *testing.T) {
	for _, c := range []struct {
		name, in   string
		status     int
		keep       bool
		body, rest string
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT", 200, true, "hello", "NEXT"},
		{"close", "HTTP/1.1 412 Precondition Failed\r\nconnection: Close\r\ncontent-length: 2\r\n\r\nnoNEXT", 412, false, "no", "NEXT"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: 1\r\n\r\nNEXT", 200, true, "abcde", "NEXT"},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, false, "x", ""},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 200, true, "", ""},
		{"to EOF", "HTTP/1.1 200 OK\r\n\r\nall of it", 200, false, "all of it", ""},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\nNEXT", 503, true, "", "NEXT"},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\nNEXT", 204, true, "", "NEXT"},
	} {
		br := bufio.NewReader(strings.NewReader(c.in))
		var body []byte
		status, keep, err := readResponse(br, &body)
		if err != nil || status != c.status || keep != c.keep || string(body) != c.body {
			t.Errorf("%s: %d %v %q %v; want %d %v %q", c.name, status, keep, body, err, c.status, c.keep, c.body)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != c.rest {
			t.Errorf("%s: left %q, want %q", c.name, rest, c.rest)
		}
		// The same without keeping the body.
		br = bufio.NewReader(strings.NewReader(c.in))
		if status, keep, err := readResponse(br, nil); err != nil || status != c.status || keep != c.keep {
			t.Errorf("%s (discarding): %d %v %v", c.name, status, keep, err)
		}
	}
	for _, bad := range []string{"", "HTTP/1.1 2x0 OK\r\n\r\n", "SSH-2.0\r\n", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"} {
		if _, _, err := readResponse(bufio.NewReader(strings.NewReader(bad)), nil); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSpliceSection(t *testing.T) {
	got, err := spliceSection([]byte("# Benchmarks\n\nintro\n"), "## New\n\nrow\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Benchmarks\n\nintro\n\n" + beginMarker + "\n## New\n\nrow\n" + endMarker + "\n"
	if string(got) != want {
		t.Fatalf("appended:\n%s\nwant:\n%s", got, want)
	}
	again, err := spliceSection([]byte(string(got)+"\n## After\n"), "## Newer\n")
	if err != nil {
		t.Fatal(err)
	}
	want = "# Benchmarks\n\nintro\n\n" + beginMarker + "\n## Newer\n" + endMarker + "\n\n## After\n"
	if string(again) != want {
		t.Fatalf("replaced:\n%s\nwant:\n%s", again, want)
	}
	if _, err := spliceSection([]byte(endMarker+"\n"+beginMarker), "x"); err == nil {
		t.Error("markers out of order: no error")
	}
}

func TestParseFlags(t *testing.T) {
	rs, err := parseRates("2900, 2x,0.5x")
	if err != nil || len(rs) != 3 || rs[0].resolve(1000) != 2900 || rs[1].resolve(1000) != 2000 || rs[2].resolve(1000) != 500 {
		t.Errorf("parseRates = %v, %v", rs, err)
	}
	if rs, err := parseRates(""); err != nil || len(rs) != 0 {
		t.Errorf("empty rates: %v, %v", rs, err)
	}
	for _, bad := range []string{"0", "-5", "x", "fast", "2y"} {
		if _, err := parseRates(bad); err == nil {
			t.Errorf("parseRates(%q): no error", bad)
		}
	}
	ts, err := parseTargets("mxgate,caddy")
	if err != nil || strings.Join(ts, ",") != "caddy,mxgate" {
		t.Errorf("parseTargets = %v, %v (want the tables' order)", ts, err)
	}
	if _, err := parseTargets("apache"); err == nil {
		t.Error("unknown target: no error")
	}
}

func TestPoolTake(t *testing.T) {
	reqs := [][]byte{[]byte("a"), []byte("b")}
	p := &pool{reqs: reqs}
	for _, want := range []string{"a", "b"} {
		if r, ok := p.take(); !ok || string(r) != want {
			t.Fatalf("take = %q, %v", r, ok)
		}
	}
	if _, ok := p.take(); ok {
		t.Error("a pool of unique requests handed one out twice")
	}
	c := &pool{reqs: reqs, cyclic: true}
	var got []string
	for range 5 {
		r, _ := c.take()
		got = append(got, string(r))
	}
	if strings.Join(got, "") != "ababa" {
		t.Errorf("cyclic pool gave %v", got)
	}
}

// TestOpenRoundsTable: with several rounds, each target's p99 of every
// round is listed, with the median, and the median of its differences
// from the nginx gateway's p99 in the same round.
func TestOpenRoundsTable(t *testing.T) {
	nginx := &target{name: "nginx"}
	mx := &target{name: "mxgate"}
	row := func(tg *target, round int, p99 time.Duration) *openRow {
		return &openRow{t: tg, round: round, rate: 2900, res: openResult{admitted: latencies{p99: p99}}}
	}
	rep := &report{open: []*openRow{
		row(nginx, 0, 10*time.Millisecond), row(mx, 0, 10300*time.Microsecond),
		row(mx, 1, 50*time.Millisecond), row(nginx, 1, 20*time.Millisecond),
		row(nginx, 2, 30*time.Millisecond), row(mx, 2, 29*time.Millisecond),
	}}
	var b strings.Builder
	rep.openRoundsTable(&b)
	got := b.String()
	for _, want := range []string{
		"(3 rounds",
		"| " + targetTitles["nginx"] + " | 2900/s | 10.00 ms, 20.00 ms, 30.00 ms | 20.00 ms | – |",
		// differences +0.3, +30, −1: the median is +0.3
		"| " + targetTitles["mxgate"] + " | 2900/s | 10.30 ms, 50.00 ms, 29.00 ms | 29.00 ms | +0.30 ms |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}

	var one strings.Builder
	(&report{open: rep.open[:2]}).openRoundsTable(&one)
	if one.Len() != 0 {
		t.Errorf("one round needs no rounds table, got:\n%s", one.String())
	}
}

// TestOpenVsPeerSameRound: with several rounds, each gateway row is
// compared with the nginx gateway's row of its own round only.
func TestOpenVsPeerSameRound(t *testing.T) {
	nginx := &target{name: "nginx", title: "NGINX"}
	mx := &target{name: "mxgate", title: "MX"}
	row := func(tg *target, round int, p99 time.Duration) *openRow {
		return &openRow{t: tg, round: round, rate: 2900, res: openResult{admitted: latencies{p99: p99}}}
	}
	rep := &report{open: []*openRow{
		row(nginx, 0, 10*time.Millisecond), row(mx, 0, 12*time.Millisecond),
		row(nginx, 1, 20*time.Millisecond), row(mx, 1, 15*time.Millisecond),
	}}
	// A row measured in one piece is not set against sliced ones.
	lim := &target{name: "mxgate-limited", title: "LIMITED"}
	rep.open = append(rep.open, &openRow{t: lim, rate: 2900, res: openResult{admitted: latencies{p99: time.Millisecond}}})
	for _, o := range rep.open[:4] {
		o.slices = 60
	}
	var b strings.Builder
	rep.openVsPeer(&b)
	got := b.String()
	if strings.Contains(got, "LIMITED") {
		t.Fatalf("a row in one piece was compared with sliced rows:\n%s", got)
	}
	if n := strings.Count(got, "\n- "); n+1 != 2 || !strings.Contains(got, "2.00 ms over the nginx gateway's (12.00 ms against 10.00 ms)") ||
		!strings.Contains(got, "5.00 ms under the nginx gateway's (15.00 ms against 20.00 ms)") {
		t.Fatalf("want one line per round, each against its own round:\n%s", got)
	}
}

func TestOpenSlicedTable(t *testing.T) {
	defer func(s time.Duration, q float64) { *openSlice, *quietSteal = s, q }(*openSlice, *quietSteal)
	*openSlice, *quietSteal = 500*time.Millisecond, 0.02
	nginx := &target{name: "nginx", title: targetTitles["nginx"]}
	mx := &target{name: "mxgate", title: targetTitles["mxgate"]}
	row := func(tg *target, all, quiet time.Duration) *openRow {
		return &openRow{t: tg, rate: 2900, slices: 60, quietSlices: 9,
			res:   openResult{admitted: latencies{p50: time.Millisecond, p99: all}},
			quiet: openResult{admitted: latencies{p50: time.Millisecond, p90: 2 * time.Millisecond, p99: quiet}, late: latencies{p99: 300 * time.Microsecond}}}
	}
	other := row(mx, 50*time.Millisecond, 5*time.Millisecond)
	other.rate, other.quietSlices = 5800, 4
	rep := &report{open: []*openRow{row(nginx, 40*time.Millisecond, 1200*time.Microsecond), row(mx, 30*time.Millisecond, 1500*time.Microsecond), other}}
	var b strings.Builder
	rep.openSlicedTable(&b)
	got := b.String()
	for _, want := range []string{
		"At 2900/s, interleaved", "over the 9 of 60 cycles",
		"At 5800/s, interleaved", "over the 4 of 60 cycles",
		"| " + targetTitles["mxgate"] + " | 5800/s | 1.00 ms | 50.00 ms | – |",
		"| " + targetTitles["nginx"] + " | 2900/s | 1.00 ms | 40.00 ms | – | 1.00 ms | 2.00 ms | 1.20 ms | – | 0.30 ms |",
		"| " + targetTitles["mxgate"] + " | 2900/s | 1.00 ms | 30.00 ms | −10.00 ms | 1.00 ms | 2.00 ms | 1.50 ms | +0.30 ms | 0.30 ms |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	var none strings.Builder
	(&report{open: []*openRow{{t: mx, rate: 2900}}}).openSlicedTable(&none)
	if none.Len() != 0 {
		t.Errorf("runs in one piece need no sliced table, got:\n%s", none.String())
	}
}

func TestStealFraction(t *testing.T) {
	before := parseCPULine("cpu  100 0 50 800 10 0 0 40 7 0")
	after := parseCPULine("cpu  150 0 60 850 10 0 0 70 9 0")
	if before.total != 1000 || before.steal != 40 {
		t.Fatalf("parsed %+v, want total 1000 (guest time not counted twice), steal 40", before)
	}
	if got := after.since(before); got < 0.2142 || got > 0.2143 {
		t.Fatalf("steal fraction %v, want 30/140", got)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 x 4 5 6 7 8", "cpu 1 2 3"} {
		if got := parseCPULine(bad); got != (cpuTicks{}) {
			t.Errorf("parseCPULine(%q) = %+v, want zero", bad, got)
		}
	}
	if got := after.since(cpuTicks{}); got != 0 {
		t.Errorf("since a failed reading: %v, want 0", got)
	}
	if readSteal().total == 0 {
		t.Error("/proc/stat gave no CPU time")
	}
}

func TestVariantFlag(t *testing.T) {
	defer func(v []*variant) { variants = v }(variants)
	variants = nil
	if err := addVariant("floor-off:MXGATE_GC_FLOOR=off, GOMAXPROCS=4"); err != nil {
		t.Fatal(err)
	}
	v := variantNamed("mxgate-tuned/floor-off")
	if v == nil || !slices.Equal(v.env, []string{"MXGATE_GC_FLOOR=off", "GOMAXPROCS=4"}) {
		t.Fatalf("variant %+v", v)
	}
	if !strings.HasSuffix(v.title(), " with `MXGATE_GC_FLOOR=off GOMAXPROCS=4`") {
		t.Errorf("title %q", v.title())
	}
	for _, bad := range []string{"floor-off:GOGC=50", "nocolon", ":GOGC=1", "a/b:GOGC=1", "x:", "x:GOGC", "x:=1"} {
		if err := addVariant(bad); err == nil {
			t.Errorf("-variant %q was taken", bad)
		}
	}
	if got := profileFile("/tmp/cpu.pb", "mxgate-tuned/floor-off"); got != "/tmp/cpu-mxgate-tuned-floor-off.pb" {
		t.Errorf("profile file %q", got)
	}
}
