// Package harness starts real mxgate processes for the benchmark commands.
package harness

import (
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/freeport"
)

// ToRoot makes the top of the mxgate repository the working directory, so
// that what a command names by a relative path (cmd/mxgate, examples/,
// BENCHMARKS.md, the paths its flags are given) is found from there
// wherever it was started: `go -C bench run ./mdx` from the top, or
// `go run ./mdx` in bench/. The top is where the module
// github.com/mxgate/mxgate lives, which bench/go.mod replaces with this
// checkout.
func ToRoot() {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/mxgate/mxgate").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		Fatalf("cannot find the mxgate checkout (run the benchmarks from it: go -C bench run ./mdx): %v", err)
	}
	Check(os.Chdir(dir))
}

// Build compiles cmd/mxgate into dir and returns the binary's path. The
// working directory must be the repository's top (ToRoot).
func Build(dir string) string {
	bin := filepath.Join(dir, "mxgate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/mxgate")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	Check(cmd.Run())
	return bin
}

// Gateway is a running mxgate.
type Gateway struct {
	cmd   *exec.Cmd
	Base  string // http://127.0.0.1:port of its first site
	Admin string // host:port of its admin endpoint, when the Caddyfile said {ADMIN}
}

// Start runs bin on a Caddyfile whose first site listens on port; {ADMIN}
// in the Caddyfile stands for a free admin address. Its logs go to a file
// beside the Caddyfile.
func Start(bin, dir string, port int, caddyfile string, env ...string) *Gateway {
	return StartAt(bin, dir, "127.0.0.1", port, caddyfile, env...)
}

// StartAt is Start for a first site that listens on ip (a loopback
// address) rather than 127.0.0.1.
func StartAt(bin, dir, ip string, port int, caddyfile string, env ...string) *Gateway {
	admin := ""
	if strings.Contains(caddyfile, "{ADMIN}") {
		admin = fmt.Sprintf("127.0.0.1:%d", FreePort())
		caddyfile = strings.ReplaceAll(caddyfile, "{ADMIN}", admin)
	}
	path := filepath.Join(dir, fmt.Sprintf("Caddyfile-%s-%d", ip, port))
	Check(os.WriteFile(path, []byte(caddyfile), 0o600))
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir), env...)
	logf, err := os.Create(path + ".log")
	Check(err)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	Check(cmd.Start())
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	g := &Gateway{cmd: cmd, Base: "http://" + addr, Admin: admin}
	OnExit(g.Stop)
	WaitTCP(addr)
	return g
}

// Pid returns the process id.
func (g *Gateway) Pid() int { return g.cmd.Process.Pid }

// Stop ends the process, killing it if it has not stopped 10 s after
// an interrupt. Stopping twice is harmless.
func (g *Gateway) Stop() {
	if g.cmd.ProcessState != nil {
		return
	}
	_ = g.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() {
		_ = g.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-done
	}
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() int {
	port, err := freeport.Get()
	Check(err)
	return port
}

// WaitTCP waits until addr accepts connections.
func WaitTCP(addr string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	Fatalf("%s never listened", addr)
}

// NumCPU returns what nproc says.
func NumCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	var n int
	fmt.Sscan(strings.TrimSpace(string(out)), &n)
	return n
}

// Check ends the program on an error, after the OnExit functions.
func Check(err error) {
	if err != nil {
		Fatalf("%v", err)
	}
}

var (
	exitMu    sync.Mutex
	exitFuncs []func()
)

// OnExit registers f to run, in reverse order of registration, when Fatalf
// or Exit ends the program, so that the processes a harness started do not
// outlive it.
func OnExit(f func()) {
	exitMu.Lock()
	defer exitMu.Unlock()
	exitFuncs = append(exitFuncs, f)
}

// Exit runs the OnExit functions, once, and ends the program with code.
func Exit(code int) {
	exitMu.Lock()
	fs := exitFuncs
	exitFuncs = nil
	exitMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	os.Exit(code)
}

// Fatalf logs, runs the OnExit functions and ends the program.
func Fatalf(format string, args ...any) {
	log.Printf(format, args...)
	Exit(1)
}

// ExitOnSignal makes an interrupt or termination end the program through
// Exit, so that Ctrl-C stops the processes a harness started.
func ExitOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-ch
		log.Printf("%v: stopping", s)
		Exit(1)
	}()
}

// childAttr makes a child process receive SIGTERM if the harness dies
// without running its OnExit functions (killed, or a panic).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// Command is exec.Command for a child process that is signalled when the
// harness dies.
func Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = childAttr()
	return cmd
}
