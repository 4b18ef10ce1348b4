package harness

import (
	"bufio"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Need is a Debian package a benchmark runs, and a file that shows it is
// installed: an absolute path, or a command name looked up on PATH.
type Need struct {
	Package string
	File    string
}

func (n Need) present() bool {
	if filepath.IsAbs(n.File) {
		_, err := os.Stat(n.File)
		return err == nil
	}
	_, err := exec.LookPath(n.File)
	return err == nil
}

// Install installs, from Debian's packages, whichever of needs is missing,
// as scripts/test.sh does: apt-get update once, then apt-get install, as
// root or through sudo. It first asks apt-cache policy whether each package
// has an installation candidate, so that a missing package is named rather
// than lost in apt-get's output.
func Install(needs ...Need) error {
	var missing []string
	for _, n := range needs {
		if !n.present() {
			missing = append(missing, n.Package)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var sudo []string
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return fmt.Errorf("missing %s, and this user cannot install them (apt-get install %s)",
				strings.Join(missing, " "), strings.Join(missing, " "))
		}
		sudo = []string{"sudo"}
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("missing %s, and there is no apt-get to install them with", strings.Join(missing, " "))
	}
	log.Printf("installing %s from Debian's packages", strings.Join(missing, " "))
	if err := run(10*time.Minute, append(sudo, "apt-get", "update", "-qq")...); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	for _, p := range missing {
		ok, err := hasCandidate(p)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no installation candidate for the Debian package %s (apt-cache policy %s)", p, p)
		}
	}
	args := append(append(sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "--no-install-recommends"), missing...)
	if err := run(20*time.Minute, args...); err != nil {
		return fmt.Errorf("apt-get install %s: %w", strings.Join(missing, " "), err)
	}
	var still []string
	for _, n := range needs {
		if !n.present() {
			still = append(still, fmt.Sprintf("%s (no %s)", n.Package, n.File))
		}
	}
	if len(still) > 0 {
		return fmt.Errorf("still missing after apt-get install: %s", strings.Join(still, ", "))
	}
	return nil
}

// hasCandidate reports whether apt-cache policy knows a version of pkg
// that apt-get could install.
func hasCandidate(pkg string) (bool, error) {
	out, err := exec.Command("apt-cache", "policy", pkg).Output()
	if err != nil {
		return false, fmt.Errorf("apt-cache policy %s: %w", pkg, err)
	}
	return parseCandidate(string(out)), nil
}

// parseCandidate reads apt-cache policy's output for one package.
func parseCandidate(out string) bool {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "Candidate:"); ok {
			v = strings.TrimSpace(v)
			return v != "" && v != "(none)"
		}
	}
	return false
}

// run runs a command with its output on stderr, bounded by timeout.
func run(timeout time.Duration, args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return errors.New("timed out after " + timeout.String())
	}
}
