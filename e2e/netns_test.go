package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// Tests that need callers with addresses other than loopback (a stranger
// on the network, in IPv4 and IPv6) run in a network namespace of their
// own, where they give the loopback interface two more addresses, from
// the documentation ranges: no host needs such addresses, and nothing
// outside the namespace sees them.
const (
	strangerV4 = "198.51.100.7"
	strangerV6 = "2001:db8:ca11::7"
)

// netnsEnv marks the test process that runs inside the namespace.
const netnsEnv = "MXGATE_E2E_NETNS"

// withStrangers runs body with an IPv4 and an IPv6 address of this host
// that are not loopback, from which a test can call a gateway that listens
// on every interface. Outside the namespace, it runs the test named name
// again in a new network namespace (as root, or as root of a new user
// namespace) and reports what it did; inside, it adds the addresses and
// runs body. Where no namespace can be made, the host's own addresses
// serve if it has both kinds; failing that the test is skipped, and under
// CI it fails.
func withStrangers(t *testing.T, name string, body func(t *testing.T, v4, v6 string)) {
	if os.Getenv(netnsEnv) == "1" {
		for _, args := range [][]string{
			{"link", "set", "lo", "up"},
			{"addr", "add", strangerV4 + "/32", "dev", "lo"},
			{"-6", "addr", "add", strangerV6 + "/128", "dev", "lo", "nodad"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		body(t, strangerV4, strangerV6)
		return
	}
	var out []byte
	var ran bool
	_, err := exec.LookPath("ip")
	if err != nil {
		err = fmt.Errorf("ip (iproute2) is not installed; scripts/test.sh installs it: %w", err)
	} else {
		out, ran, err = inNetns(name)
	}
	if ran {
		if err != nil {
			t.Fatalf("in a network namespace of its own: %v\n%s", err, out)
		}
		t.Logf("in a network namespace of its own:\n%s", subtestLines(out))
		return
	}
	v4, v6 := hostAddr(false), hostAddr(true)
	if v4 != "" && v6 != "" {
		t.Logf("no network namespace (%v): calling from this host's %s and %s", err, v4, v6)
		body(t, v4, v6)
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no network namespace can be made (%v) and this host lacks an IPv4 or IPv6 address other than loopback: run the tests as root (CI does)", err)
	}
	t.Skipf("no network namespace can be made (%v), and this host lacks an IPv4 or IPv6 address other than loopback", err)
}

// inNetns runs this test binary on the test named name in a new network
// namespace, with the mxgate binary already built. It returns the output,
// whether the test ran, and its error if it ran (and failed), or why no
// namespace could be made.
func inNetns(name string) (out []byte, ran bool, err error) {
	attrs := []*syscall.SysProcAttr{{Cloneflags: syscall.CLONE_NEWNET}}
	// Without root, a user namespace lends the capabilities (where the
	// kernel allows unprivileged ones).
	uid, gid := os.Geteuid(), os.Getegid()
	attrs = append(attrs, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
	})
	if uid != 0 {
		attrs = attrs[1:]
	}
	for _, attr := range attrs {
		cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), netnsEnv+"=1", "MXGATE_BIN="+binary)
		cmd.SysProcAttr = attr
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err = cmd.Start(); err != nil {
			continue // this kind of namespace is not allowed here
		}
		err = cmd.Wait()
		return buf.Bytes(), true, err
	}
	return nil, false, err
}

// subtestLines keeps the lines of a verbose test run that give each test's
// outcome.
func subtestLines(out []byte) string {
	var b strings.Builder
	for _, l := range strings.Split(string(out), "\n") {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "--- ") || strings.HasPrefix(t, "ok") || strings.HasPrefix(t, "PASS") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// hostAddr returns an address of this host that is not loopback nor
// link-local, of the family v6 or not, or "" if there is none.
func hostAddr(v6 bool) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || (n.IP.To4() == nil) != v6 {
			continue
		}
		return n.IP.String()
	}
	return ""
}
