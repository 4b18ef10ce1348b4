// Package harness starts real mxgate processes for the benchmark commands.
package harness

import (
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/freeport"
)

// Build compiles cmd/mxgate into dir and returns the binary's path.
func Build(dir string) string {
	bin := filepath.Join(dir, "mxgate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/mxgate")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	Check(cmd.Run())
	return bin
}

// Gateway is a running mxgate.
type Gateway struct {
	cmd  *exec.Cmd
	Base string // http://127.0.0.1:port of its first site
}

// Start runs bin on a Caddyfile whose first site listens on port; {ADMIN}
// in the Caddyfile stands for a free admin address. Its logs go to a file
// beside the Caddyfile.
func Start(bin, dir string, port int, caddyfile string, env ...string) *Gateway {
	caddyfile = strings.ReplaceAll(caddyfile, "{ADMIN}", fmt.Sprintf("127.0.0.1:%d", FreePort()))
	path := filepath.Join(dir, fmt.Sprintf("Caddyfile-%d", port))
	Check(os.WriteFile(path, []byte(caddyfile), 0o600))
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir), env...)
	logf, err := os.Create(path + ".log")
	Check(err)
	cmd.Stdout, cmd.Stderr = logf, logf
	Check(cmd.Start())
	WaitTCP(fmt.Sprintf("127.0.0.1:%d", port))
	return &Gateway{cmd: cmd, Base: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

// Stop ends the process.
func (g *Gateway) Stop() {
	_ = g.cmd.Process.Signal(os.Interrupt)
	_ = g.cmd.Wait()
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
	log.Fatalf("%s never listened", addr)
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

// Check ends the program on an error.
func Check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
