package harness

import "testing"

func TestParseCandidate(t *testing.T) {
	for _, c := range []struct {
		out  string
		want bool
	}{
		{"nginx-light:\n  Installed: (none)\n  Candidate: 1.22.1-9+deb12u11\n  Version table:\n", true},
		{"libnginx-mod-http-js:\n  Installed: (none)\n  Candidate: (none)\n", false},
		{"", false}, // apt-cache knows no such package
	} {
		if got := parseCandidate(c.out); got != c.want {
			t.Errorf("parseCandidate(%q) = %v, want %v", c.out, got, c.want)
		}
	}
}
