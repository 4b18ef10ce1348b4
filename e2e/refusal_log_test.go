package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRefusalsInTheAccessLog: a refusal writes no log line of its own at
// the default level (INFO), so a flood of bad requests cannot flood the
// logs; the site's access log carries its directive and reason, through
// log_append and the request variables refusal.Refuse sets, as the README
// shows. An admitted request's line carries none.
func TestRefusalsInTheAccessLog(t *testing.T) {
	t.Parallel()
	limited, signed := freePort(t), freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
}
(refusals) {
	log
	log_append mxgate_refused_by {http.vars.mxgate.refusal.directive}
	log_append mxgate_refusal {http.vars.mxgate.refusal.reason}
}
http://127.0.0.1:%d {
	import refusals
	mx_rate_limit {
		get 1/h burst 1
	}
	respond ok
}
http://127.0.0.1:%d {
	import refusals
	mdx_hmac verify {
		key {env.E2E_MDX_KEY}
	}
	respond ok
}
`, limited, signed), "E2E_MDX_KEY="+demoKey)

	// The admin endpoint answers before every app has started: wait for
	// the end of start-up, whose lines are not the flood's.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(g.Stderr.String(), "serving initial configuration"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("start-up never ended:\n%s", g.Stderr)
		}
	}
	started := len(g.Stderr.String()) // what the gateway logged as it started
	const flood = 40
	for i := range flood {
		status, _, _ := do(t, mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/accounts", limited)))
		if want := map[bool]int{true: 200, false: 429}[i == 0]; status != want {
			t.Fatalf("rate-limited site, request %d: %d, want %d", i+1, status, want)
		}
		if status, _, _ := do(t, mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/inst1/accounts", signed))); status != 412 {
			t.Fatalf("unsigned MDX request %d: %d, want 412", i+1, status)
		}
	}

	type line struct {
		Logger    string  `json:"logger"`
		Msg       string  `json:"msg"`
		RefusedBy *string `json:"mxgate_refused_by"`
		Refusal   *string `json:"mxgate_refusal"`
		Request   struct {
			Host string `json:"host"`
		} `json:"request"`
	}
	var access, others []line
	// The access log is written as each answer is sent: wait for all of
	// them (the deadline only stops a hang).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		access, others = nil, nil
		for _, s := range strings.Split(g.Stderr.String()[started:], "\n") {
			var l line
			if json.Unmarshal([]byte(s), &l) != nil {
				continue
			}
			if strings.HasPrefix(l.Logger, "http.log.access") {
				access = append(access, l)
			} else if strings.HasPrefix(l.Logger, "http.handlers") {
				others = append(others, l)
			}
		}
		if len(access) >= 2*flood || time.Now().After(deadline) {
			break
		}
	}
	if len(access) != 2*flood {
		t.Fatalf("%d access log lines, want %d", len(access), 2*flood)
	}
	count := map[string]int{}
	for _, l := range access {
		switch {
		case l.Refusal == nil && l.RefusedBy == nil:
			count[l.Request.Host+" admitted"]++
		case l.Refusal != nil && l.RefusedBy != nil:
			count[l.Request.Host+" "+*l.RefusedBy+" "+*l.Refusal]++
		default:
			t.Errorf("an access log line with half a refusal: %+v", l)
		}
	}
	want := map[string]int{
		fmt.Sprintf("127.0.0.1:%d admitted", limited):                   1,
		fmt.Sprintf("127.0.0.1:%d mx_rate_limit rate_limited", limited): flood - 1,
		fmt.Sprintf("127.0.0.1:%d mdx_hmac hmac_missing", signed):       flood,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("access log lines %q: %d, want %d (all: %v)", k, count[k], n, count)
		}
	}
	if len(others) != 0 {
		t.Errorf("%d log lines of the handlers' own at INFO during the flood, want none; the first: %q", len(others), others[0].Msg)
	}
}
