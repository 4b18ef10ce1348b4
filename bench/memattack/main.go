// Command memattack runs the memory attack on mdx_hmac verify against a
// real mxgate: many connections that each declare a 1 MiB body, send one
// byte of it and wait. It reports the gateway's resident memory (VmRSS
// before, VmHWM, the peak, after each wave) and fails if the peak passes
// the bound.
//
//	go -C bench run ./memattack [-conns 8000] [-replays 2000] [-bound 256] [-bin path]
//
// The first wave carries a bad signature: mdx_hmac verify refuses it
// before reading a byte of the body. The second replays the head of one
// good signed request (a captured signature, not yet used): it passes the
// signature check, so its bodies are read, and max_pending_bodies bounds
// how many are held at once. The gateway is the example's MDX site: the
// server timeouts of Caddyfile.example, mx_ip_allow (loopback allowed, as
// the attacker must be), mdx_hmac verify with its defaults and a replay
// window, in front of a local upstream; the configuration uses no option
// an older build lacks, so -bin can attack one (to see what changed).
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mxgate/mxgate/bench/internal/harness"
	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/internal/testkit/attack"
)

var (
	conns   = flag.Int("conns", 8000, "connections with a bad signature, each declaring 1 MiB")
	replays = flag.Int("replays", 2000, "connections replaying a good signed head, each declaring 1 MiB")
	bound   = flag.Int64("bound", 256, "peak resident memory allowed, MiB")
	bin     = flag.String("bin", "", "mxgate binary to attack (default: build ./cmd/mxgate)")
)

const (
	key     = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=" // MX's documented demo key
	mdxType = "application/vnd.moneydesktop.mdx.v5+xml"
	mib     = 1 << 20
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	harness.ToRoot()
	harness.ExitOnSignal()
	dir, err := os.MkdirTemp("", "mxgate-memattack-")
	harness.Check(err)
	harness.OnExit(func() { os.RemoveAll(dir) })
	if *bin == "" {
		*bin = harness.Build(dir)
	}

	up, err := net.Listen("tcp", "127.0.0.1:0")
	harness.Check(err)
	go http.Serve(up, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", mdxType)
		_, _ = io.WriteString(w, `<mdx version="5.0"><ok/></mdx>`)
	}))
	port := harness.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	g := harness.Start(*bin, dir, port, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		level ERROR
	}
	servers {
		timeouts {
			read_header 10s
			read_body 30s
			idle 2m
		}
	}
}
http://%s {
	mx_ip_allow mdx {
		ranges 127.0.0.1
	}
	mdx_hmac verify {
		key {env.MDX_HMAC_KEY}
		replay_window 10m
	}
	reverse_proxy %s
}
`, addr, up.Addr()), "MDX_HMAC_KEY="+key)
	defer g.Stop()
	pid := g.Pid()

	head := func(sig string) string {
		body := strings.Repeat("b", mib)
		k, _ := hmac.ParseKey(key)
		r := hmac.Request{Method: "POST", ContentMD5: hmac.ContentMD5([]byte(body)), ContentType: mdxType,
			Date: hmac.FormatDate(time.Now()), Accept: mdxType, Resource: "/sessions"}
		if sig == "" {
			sig, _ = hmac.Sign(hmac.SHA1, k, &r)
		}
		return fmt.Sprintf("POST /inst1/sessions HTTP/1.1\r\nHost: %s\r\nAccept: %s\r\nContent-Type: %s\r\nDate: %s\r\nContent-MD5: %s\r\n"+
			"MDX-Session-Key: \r\nMDX-HMAC: %s\r\nContent-Length: %d\r\n\r\n", addr, mdxType, mdxType, r.Date, r.ContentMD5, sig, mib)
	}
	rss := func(field string) int64 {
		n, err := attack.Status(pid, field)
		harness.Check(err)
		return n
	}
	fmt.Printf("mxgate %s, pid %d: VmRSS at rest %d MiB\n", *bin, pid, rss("VmRSS")>>20)
	failed := false
	for _, w := range []struct {
		name  string
		n     int
		head  string
		hold  int // connections the gateway should hold: answered by none
		codes string
	}{
		{"bad signature", *conns, head(strings.Repeat("0", 40)), 0, "412"},
		{"replayed good head", *replays, head(""), 64, "503 beyond max_pending_bodies"},
	} {
		if w.n == 0 {
			continue
		}
		var peak, during int64
		start := time.Now()
		res := attack.SlowBodies{Addr: addr, Conns: w.n, Head: func(int) string { return w.head }, Body: []byte("b"),
			Expect: w.n - w.hold, Wait: 10 * time.Second}.Run(func() {
			during, peak = rss("VmRSS"), rss("VmHWM")
		})
		fmt.Printf("%-20s %5d connections in %v: %v\n", w.name, w.n, time.Since(start).Round(time.Millisecond), res)
		fmt.Printf("%-20s VmRSS with the connections open %d MiB, peak so far (VmHWM) %d MiB\n", "", during>>20, peak>>20)
		if peak > *bound*mib {
			fmt.Printf("%-20s FAIL: peak %d MiB over the bound of %d MiB\n", "", peak>>20, *bound)
			failed = true
		}
	}
	fmt.Printf("VmHWM at the end %d MiB (bound %d MiB)\n", rss("VmHWM")>>20, *bound)
	if failed {
		harness.Exit(1)
	}
	harness.Exit(0)
}
