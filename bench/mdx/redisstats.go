package main

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStats are the counters of a target's redis-server that say what a
// request cost it: its own CPU time (from /proc), the socket reads it
// processed (each a batch of commands from one connection: a round trip,
// or several pipelined), and its commands by name (INFO commandstats,
// which counts the commands a script calls as well as the script).
type redisStats struct {
	cpu      time.Duration
	reads    int64
	commands map[string]int64
}

// readRedisStats reads them from the server at addr whose process is pid;
// an error leaves the counters zero and is reported once by the caller.
func readRedisStats(addr string, pid int) (redisStats, error) {
	s := redisStats{cpu: treeCPU(pid), commands: map[string]int64{}}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "stats", "commandstats").Result()
	if err != nil {
		return s, err
	}
	parseRedisInfo(info, &s)
	return s, nil
}

// parseRedisInfo takes total_reads_processed and each cmdstat_<name>'s
// calls from the text of INFO.
func parseRedisInfo(info string, s *redisStats) {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch {
		case k == "total_reads_processed":
			s.reads, _ = strconv.ParseInt(v, 10, 64)
		case strings.HasPrefix(k, "cmdstat_"):
			calls, _, _ := strings.Cut(v, ",")
			if n, ok := strings.CutPrefix(calls, "calls="); ok {
				s.commands[strings.TrimPrefix(k, "cmdstat_")], _ = strconv.ParseInt(n, 10, 64)
			}
		}
	}
}

// since returns the counters' growth from before to s, less what reading
// them (INFO, and the connection's HELLO or CLIENT calls) added.
func (s redisStats) since(before redisStats) redisStats {
	d := redisStats{cpu: s.cpu - before.cpu, reads: s.reads - before.reads, commands: map[string]int64{}}
	for name, n := range s.commands {
		switch {
		case name == "info", name == "hello", strings.HasPrefix(name, "client|"), name == "ping":
			continue
		}
		if n -= before.commands[name]; n > 0 {
			d.commands[name] = n
		}
	}
	// The reads of the one connection that read the counters: its
	// handshake and INFO, a few of them.
	d.reads = max(0, d.reads-3)
	return d
}

// perRequest describes d over n answered requests for a table: Redis's
// CPU, socket reads, script calls (EVALSHA and EVAL) and every other
// command, each per request.
func (d redisStats) perRequest(n int64) (cpu time.Duration, reads, scripts float64, others string) {
	if n <= 0 {
		return 0, 0, 0, "–"
	}
	cpu = d.cpu / time.Duration(n)
	reads = float64(d.reads) / float64(n)
	scripts = float64(d.commands["evalsha"]+d.commands["eval"]) / float64(n)
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(d.commands)) {
		if name == "evalsha" || name == "eval" {
			continue
		}
		if x := float64(d.commands[name]) / float64(n); x >= 0.005 {
			parts = append(parts, fmt.Sprintf("%s %.2f", strings.ToUpper(name), x))
		}
	}
	if len(parts) == 0 {
		return cpu, reads, scripts, "–"
	}
	return cpu, reads, scripts, strings.Join(parts, ", ")
}
