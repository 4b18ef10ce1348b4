package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/bench/internal/harness"
)

// A target is one server the load is driven through.
type target struct {
	name     string // as in -targets
	title    string // in the tables
	addr     string // 127.0.0.1:port
	unique   bool   // keeps a replay cache: every request must be new
	verifies bool   // checks MDX-HMAC: a wrong one must get 412
	admin    string // mxgate's admin address, for profiles; "" if none
	pids     []int  // the processes whose CPU time is the target's own
	// redisAddr and redisPid are the target's own redis-server, if it
	// keeps its state in one; its CPU time is in pids too.
	redisAddr string
	redisPid  int
	// openOnly targets refuse part of any load by design (a rate limit
	// below it): they take part in the open-loop runs only.
	openOnly bool

	// TLS targets (tlstargets.go): the Host the requests name, the TLS
	// version of the client, what it negotiated.
	host       string
	tls        *tlsVersion
	negotiated string
	// fixed is the one request sent again and again (an FDX GET with
	// its token), for targets that take no MDX requests; getOnly
	// targets take no part in the mixed traffic; refuse is a request
	// the target must answer with refuseStatus.
	fixed        []byte
	getOnly      bool
	refuse       []byte
	refuseStatus int
	stop         func() // stops what the target started, where a run does (the fleet)
}

// The targets, in the order the tables list them.
var targetNames = []string{"upstream", "nginx", "caddy", "mxgate", "mxgate-tuned", "mxgate-redis", "mxgate-limited"}

var targetTitles = map[string]string{
	"upstream":       "upstream alone (nginx `return 200`)",
	"nginx":          "nginx + njs MDX gateway (the peer)",
	"caddy":          "bare Caddy `reverse_proxy` (the mxgate binary)",
	"mxgate":         "mxgate MDX chain",
	"mxgate-redis":   "mxgate MDX chain, `store redis`",
	"mxgate-tuned":   "mxgate MDX chain, as shipped (`mxgate_redact` log, GOGC 200, `mx_conn_limit 512`, `mx_shed 128`)",
	"mxgate-limited": "mxgate MDX chain, `mx_rate_limit` at MX's 2000 GET/s",
}

// nginxProc is an nginx master process run in the foreground (daemon off)
// so that the harness owns it; its workers are its children.
type nginxProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startNginx writes the template at tmpl, with @DIR@, @UP@ and @PORT@
// replaced, into dir as name.conf, runs nginx on it and waits until port
// listens.
func startNginx(dir, name, tmpl string, up, port int) *nginxProc {
	b, err := os.ReadFile(tmpl)
	harness.Check(err)
	conf := strings.NewReplacer("@DIR@", dir, "@UP@", strconv.Itoa(up), "@PORT@", strconv.Itoa(port)).Replace(string(b))
	path := filepath.Join(dir, name+".conf")
	harness.Check(os.WriteFile(path, []byte(conf), 0o644))
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	harness.Check(err)
	cmd := harness.Command("nginx", "-e", filepath.Join(dir, name+".startup.err"), "-c", path, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = logf, logf
	harness.Check(cmd.Start())
	n := &nginxProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(n.exited)
	}()
	harness.OnExit(n.stop)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ready := make(chan struct{})
	go func() {
		harness.WaitTCP(addr)
		close(ready)
	}()
	select {
	case <-ready:
	case <-n.exited:
		out, _ := os.ReadFile(logPath)
		errs, _ := os.ReadFile(filepath.Join(dir, name+".startup.err"))
		harness.Fatalf("nginx (%s) exited before listening on %s:\n%s%s", name, addr, out, errs)
	}
	return n
}

// pid returns the master's process id.
func (n *nginxProc) pid() int { return n.cmd.Process.Pid }

// stop asks nginx for a fast shutdown, and kills it after 5 s.
func (n *nginxProc) stop() {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
}

// Overload caps of the tuned chain: connections the server holds open,
// and requests in flight past mx_shed. The closed loop's connections, the
// probes and the bounded pool stay well under both.
const (
	tunedMaxConns    = 512
	tunedMaxInFlight = 128
)

// chainGlobal is the chain's global options: the bare template's, with
// the admin endpoint on for profiles. tuned adds what mxgate's examples
// ship with: the mxgate_redact log format, and a connection cap.
func chainGlobal(tuned bool) string {
	if !tuned {
		return `{
	admin {ADMIN}
	auto_https off
	log {
		level ERROR
	}
}
`
	}
	return fmt.Sprintf(`{
	admin {ADMIN}
	auto_https off
	servers {
		listener_wrappers {
			mx_conn_limit %d
		}
	}
	log {
		level ERROR
		format mxgate_redact
	}
}
`, tunedMaxConns)
}

// chainOptions vary the MDX chain between targets.
type chainOptions struct {
	store    string // "" for the in-memory replay cache and rate limiter, or a Redis URL
	tuned    bool   // as the examples ship it
	getLimit string // mx_rate_limit's get budget; "" for far above any load
	bind     string // the address the TLS site binds to; "" for 127.0.0.1
}

// chainCaddyfile is the MDX chain: the peer's bare Caddy site with
// mxgate's three ingress handlers before the same reverse_proxy. Unless
// o.getLimit is set, rate limits are far above any load, so they measure
// cost, not pacing; the replay cache holds more signatures than one run
// sends in its window.
func chainCaddyfile(port, up int, o chainOptions) string {
	storeLine := ""
	if o.store != "" {
		storeLine = "\n\t\tstore redis " + o.store
	}
	get := "100000000/s"
	if o.getLimit != "" {
		get = o.getLimit
	}
	shed := ""
	if o.tuned {
		shed = fmt.Sprintf("\n\tmx_shed %d", tunedMaxInFlight)
	}
	return chainGlobal(o.tuned) + fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1%s
	mx_ip_allow mdx {
		ranges 127.0.0.1 ::1
	}
	mdx_hmac verify {
		key %s
		algorithm sha1
		max_skew 5m
		replay_window 10m
		replay_cache_size 8000000%s
	}
	mx_rate_limit {
		get %s
		write 100000000/s%s
	}
	reverse_proxy 127.0.0.1:%d {
		transport http {
			keepalive_idle_conns_per_host 128
		}
	}
}
`, port, shed, demoKey, storeLine, get, storeLine, up)
}

// treeCPU returns the CPU time (user and system) used so far by pid and
// its descendants, from /proc.
func treeCPU(pid int) time.Duration {
	d := procCPU(pid)
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if child, err := strconv.Atoi(f); err == nil {
				d += treeCPU(child)
			}
		}
	}
	return d
}

// procCPU returns utime+stime of one process, in clock ticks of 10 ms
// (USER_HZ is 100 on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// cpuOf sums treeCPU over pids.
func cpuOf(pids []int) time.Duration {
	var d time.Duration
	for _, p := range pids {
		d += treeCPU(p)
	}
	return d
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
