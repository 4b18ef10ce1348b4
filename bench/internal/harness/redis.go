package harness

import (
	"fmt"
	"os/exec"
	"path/filepath"
)

// Redis is a redis-server process started by a benchmark.
type Redis struct {
	cmd  *exec.Cmd
	Addr string // 127.0.0.1:port
}

// StartRedis runs redis-server on a free loopback port, without
// persistence, with its files in dir, and waits until it listens.
func StartRedis(dir string) *Redis {
	port := FreePort()
	cmd := Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)))
	Check(cmd.Start())
	r := &Redis{cmd: cmd, Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	OnExit(r.Stop)
	WaitTCP(r.Addr)
	return r
}

// URL returns a redis:// URL for database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Pid returns the process id.
func (r *Redis) Pid() int { return r.cmd.Process.Pid }

// Stop ends the process. Stopping twice is harmless.
func (r *Redis) Stop() {
	if r.cmd.ProcessState != nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
}
