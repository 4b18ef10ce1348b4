package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/mxgate/mxgate/bench/internal/harness"
)

// profiles is what -cpuprofile and -memprofile captured.
type profiles struct {
	target  string
	seconds int
	rps     float64
	cpuTop  string // go tool pprof -top of the CPU profile
	memTop  string // the same for the allocations made during the round
}

// profile runs one more closed-loop GET round against t (not counted in
// the tables) while Caddy's admin endpoint takes a CPU profile of it, and
// snapshots its allocation profile before and after, so the difference is
// what the round allocated.
func (b *bench) profile(t *target, bin string) *profiles {
	secs := max(1, int(duration.Seconds()))
	pr := &profiles{target: t.name, seconds: secs}
	base := "http://" + t.admin + "/debug/pprof/"
	cpuFile, memFile := profileFile(*cpuProfile, t.name), profileFile(*memProfile, t.name)
	if memFile != "" {
		// The heap profile is as of the last GC; gc=1 runs one first, so
		// that the difference is exactly what the round allocated.
		harness.Check(fetch(base+"heap?gc=1", memFile+".base", 30*time.Second))
	}
	p := b.pool(t, trafficGET, b.need(t, trafficGET, time.Duration(secs+1)*time.Second))
	runtime.GC()
	cpuDone := make(chan error, 1)
	if cpuFile != "" {
		go func() {
			cpuDone <- fetch(fmt.Sprintf("%sprofile?seconds=%d", base, secs), cpuFile, time.Duration(secs+30)*time.Second)
		}()
	} else {
		cpuDone <- nil
	}
	res := closedLoop(t.addr, p, *connections, time.Duration(secs+1)*time.Second, *timeout)
	harness.Check(<-cpuDone)
	pr.rps = res.rps()
	log.Printf("profiled %s for %ds at %.0f req/s (non-200 %d)", t.name, secs, res.rps(), res.non200())
	if memFile != "" {
		harness.Check(fetch(base+"heap?gc=1", memFile, 30*time.Second))
		pr.memTop = pprofTop(bin, "-sample_index=alloc_space", "-base", memFile+".base", memFile)
	}
	if cpuFile != "" {
		pr.cpuTop = pprofTop(bin, cpuFile)
	}
	return pr
}

// profileFile is where target's profile goes: path itself for the first
// target profiled, path with the target's name before its extension for
// the others ("" stays "").
func profileFile(path, target string) string {
	if path == "" || target == firstProfiled {
		return path
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-" + strings.ReplaceAll(target, "/", "-") + ext
}

// firstProfiled is the first of -profile-target's targets.
var firstProfiled string

// fetch saves url's body to path.
func fetch(url, path string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pprofTop returns the head of `go tool pprof -top` for the profile.
func pprofTop(bin string, args ...string) string {
	cmd := exec.Command("go", append([]string{"tool", "pprof", "-top", "-nodecount=20"}, append(args[:len(args)-1:len(args)-1], bin, args[len(args)-1])...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof failed: %v\n%s", err, out)
	}
	// Drop pprof's header lines up to the column titles.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "Showing nodes") {
			return strings.Join(lines[i:], "\n")
		}
	}
	return strings.Join(lines, "\n")
}

// startTrace starts an execution trace of t over the open-loop run about to
// begin, if -trace asks for one and t is the first profiled target's first
// run over the bounded pool. The channel yields the fetch's error, or nil
// at once when there is nothing to trace.
func (b *bench) startTrace(t *target, storm bool) <-chan error {
	done := make(chan error, 1)
	if *traceFile == "" || storm || b.traced || t.name != firstProfiled {
		done <- nil
		return done
	}
	b.traced = true
	secs := max(1, int(openDur.Seconds()))
	url := fmt.Sprintf("http://%s/debug/pprof/trace?seconds=%d", t.admin, secs)
	go func() { done <- fetch(url, *traceFile, time.Duration(secs+30)*time.Second) }()
	return done
}
