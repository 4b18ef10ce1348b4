// Package redistest runs real Redis servers on free loopback ports for
// tests: one redis-server (Start), one over TLS (StartTLS), a Sentinel group
// with a master, a replica and three sentinels (StartSentinel), and a
// Cluster of masters (StartCluster). Under CI (CI set) a missing
// redis-server or redis-cli fails the test; elsewhere the test is skipped
// with a note that `make test` installs them.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/freeport"
)

// startTimeout bounds the wait for a server to answer after it starts.
const startTimeout = 10 * time.Second

// Server is a redis-server (or sentinel) process owned by a test.
type Server struct {
	t    testing.TB
	Port int
	dir  string
	args []string    // redis-server's arguments
	tls  *tls.Config // non-nil when the server speaks only TLS

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Require fails the test under CI, or skips it elsewhere, when a program
// the Redis tests need is not installed.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; the test command (make test) installs it", p)
			}
			t.Skipf("%s is not installed; `make test` installs it", p)
		}
	}
}

// Start runs redis-server on a free loopback port, stopped when t ends.
// extra arguments are appended to redis-server's command line, for
// example "--user", "app", "on", ">secret", "~*", "+@all".
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	Require(t, "redis-server")
	port := freePort(t)
	dir := t.TempDir()
	args := append([]string{
		"--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"),
	}, extra...)
	return start(t, port, dir, args, nil)
}

func start(t testing.TB, port int, dir string, args []string, tlsConfig *tls.Config) *Server {
	t.Helper()
	s := &Server{t: t, Port: port, dir: dir, args: args, tls: tlsConfig}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Addr returns host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// URL returns a redis:// URL for the server (rediss:// for a TLS server).
func (s *Server) URL() string {
	if s.tls != nil {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// Pid returns the server's process id, 0 while it is stopped.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Log returns what the server has logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return string(b)
}

// Restart starts the server again (after Stop) on the same port, and waits
// until it answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command("redis-server", s.args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(startTimeout)
	for {
		if ping(s.Addr(), s.tls) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not answer on %s:\n%s", s.Addr(), s.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server, as an outage would.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// ping reports whether a server answers PING on addr: with PONG, or by
// asking for authentication (a server whose default user is off).
func ping(addr string, tlsConfig *tls.Config) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if tlsConfig != nil {
		tc := tls.Client(c, tlsConfig)
		if tc.Handshake() != nil {
			return false
		}
		c = tc
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH"))
}

// waitFor polls cond every 20ms until it returns "" or timeout passes, then
// fails t with cond's last answer.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
