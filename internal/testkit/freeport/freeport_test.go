package freeport

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestNoPortTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		p, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

// TestBelowEphemeralRange: a port outgoing connections can be given is a
// port a server started later may find taken.
func TestBelowEphemeralRange(t *testing.T) {
	lo, hi := candidates()
	if hi-lo < 100 {
		t.Skipf("no room below the ephemeral range on this machine (%d-%d)", lo, hi)
	}
	for range 200 {
		p, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
	}
}

// TestReservedAcrossProcesses: another test binary running beside this one
// must not be handed a port this process holds.
func TestReservedAcrossProcesses(t *testing.T) {
	if p := os.Getenv("FREEPORT_CHILD_PORT"); p != "" {
		port, _ := strconv.Atoi(p)
		if reserve(port) {
			os.Stdout.WriteString("RESERVED\n")
		} else {
			os.Stdout.WriteString("REFUSED\n")
		}
		return
	}
	lo, hi := candidates()
	if hi-lo < 100 {
		t.Skip("no room below the ephemeral range on this machine")
	}
	port, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReservedAcrossProcesses$")
	cmd.Env = append(os.Environ(), "FREEPORT_CHILD_PORT="+strconv.Itoa(port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "REFUSED") {
		t.Fatalf("a second process could reserve port %d held by this one:\n%s", port, out)
	}
}
