package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelGroup is a master, its replica and three sentinels watching them
// with a quorum of two, all on loopback.
type SentinelGroup struct {
	t          testing.TB
	MasterName string
	Master     *Server // the master at the start; Failover swaps the roles
	Replica    *Server
	Sentinels  []*Server
}

// StartSentinel starts a Sentinel group for masterName and waits until
// every sentinel knows the replica and the other sentinels.
func StartSentinel(t testing.TB, masterName string) *SentinelGroup {
	t.Helper()
	g := &SentinelGroup{t: t, MasterName: masterName}
	// A replica (re)joining syncs at once, not after the default 5s wait
	// for more replicas.
	fast := []string{"--repl-diskless-sync-delay", "0"}
	g.Master = Start(t, fast...)
	g.Replica = Start(t, append(fast, "--replicaof", "127.0.0.1", fmt.Sprint(g.Master.Port))...)
	waitFor(t, startTimeout, "replica in sync", func() string {
		return infoField(g.Replica.Addr(), "replication", "master_link_status", "up")
	})

	for range 3 {
		port := freePort(t)
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %[4]s 1000
sentinel failover-timeout %[4]s 10000
sentinel parallel-syncs %[4]s 1
`, port, dir, filepath.Join(dir, "redis.log"), masterName, g.Master.Port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		g.Sentinels = append(g.Sentinels, start(t, port, dir, []string{conf, "--sentinel"}, nil))
	}
	for _, s := range g.Sentinels {
		waitFor(t, startTimeout, "sentinel "+s.Addr()+" sees the group", func() string {
			c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			reps, err := c.Replicas(ctx, masterName).Result()
			if err != nil || len(reps) != 1 || strings.Contains(reps[0]["flags"], "down") || strings.Contains(reps[0]["flags"], "disconnected") {
				return fmt.Sprintf("replicas %v, %v", reps, err)
			}
			sens, err := c.Sentinels(ctx, masterName).Result()
			if err != nil || len(sens) != 2 {
				return fmt.Sprintf("%d other sentinels, %v", len(sens), err)
			}
			return ""
		})
	}
	return g
}

// SentinelAddrs returns the sentinels' host:port addresses.
func (g *SentinelGroup) SentinelAddrs() []string {
	var a []string
	for _, s := range g.Sentinels {
		a = append(a, s.Addr())
	}
	return a
}

// URL returns the redis+sentinel:// URL of the group.
func (g *SentinelGroup) URL() string {
	return "redis+sentinel://" + strings.Join(g.SentinelAddrs(), ",") + "/" + g.MasterName
}

// MasterAddr asks the sentinels which address is the master; it fails t
// while they disagree.
func (g *SentinelGroup) MasterAddr() string {
	g.t.Helper()
	addrs := g.masterAddrs()
	for _, a := range addrs[1:] {
		if a != addrs[0] {
			g.t.Fatalf("sentinels disagree on the master: %v", addrs)
		}
	}
	return addrs[0]
}

func (g *SentinelGroup) masterAddrs() []string {
	var out []string
	for _, s := range g.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		hp, err := c.GetMasterAddrByName(ctx, g.MasterName).Result()
		cancel()
		c.Close()
		if err != nil || len(hp) != 2 {
			out = append(out, fmt.Sprintf("error: %v", err))
			continue
		}
		out = append(out, hp[0]+":"+hp[1])
	}
	return out
}

// Failover makes the sentinels promote the replica (SENTINEL FAILOVER),
// waits until every sentinel names it and it acts as master, swaps Master
// and Replica, and returns the new master's address.
func (g *SentinelGroup) Failover() string {
	g.t.Helper()
	old := g.MasterAddr()
	c := redis.NewSentinelClient(&redis.Options{Addr: g.Sentinels[0].Addr()})
	defer c.Close()
	// After an earlier failover, the sentinels reconfigure the demoted
	// master as a replica some 10s later; until then there is no replica
	// to promote (NOGOODSLAVE).
	waitFor(g.t, 3*startTimeout, "SENTINEL FAILOVER accepted", func() string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := c.Failover(ctx, g.MasterName).Err(); err != nil {
			return err.Error()
		}
		return ""
	})
	return g.awaitNewMaster(old, 2*startTimeout)
}

// KillMaster kills the master process, as a crash would, waits until the
// sentinels have agreed that it is down and promoted the replica, swaps
// Master and Replica (the old master stays stopped), and returns the new
// master's address.
func (g *SentinelGroup) KillMaster() string {
	g.t.Helper()
	old := g.MasterAddr()
	g.Master.Stop()
	return g.awaitNewMaster(old, 3*startTimeout)
}

// awaitNewMaster waits until every sentinel names a master other than old
// and that server acts as master, then swaps Master and Replica.
func (g *SentinelGroup) awaitNewMaster(old string, timeout time.Duration) string {
	g.t.Helper()
	var now string
	waitFor(g.t, timeout, "every sentinel names the new master", func() string {
		addrs := g.masterAddrs()
		for _, a := range addrs {
			if a == old || a != addrs[0] {
				return fmt.Sprintf("sentinels say %v (old master %s)", addrs, old)
			}
		}
		now = addrs[0]
		return infoField(now, "replication", "role", "master")
	})
	if now == g.Replica.Addr() {
		g.Master, g.Replica = g.Replica, g.Master
	}
	return now
}

// Rejoin makes the demoted master a replica of the new one at once, and
// waits until it is in sync. The sentinels do the same by themselves, but
// only some 10s after a failover (Sentinel waits 8s before it reconfigures
// a former master, and probes replicas every 10s).
func (g *SentinelGroup) Rejoin() {
	g.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: g.Replica.Addr()})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.ReplicaOf(ctx, "127.0.0.1", fmt.Sprint(g.Master.Port)).Err(); err != nil {
		g.t.Fatal(err)
	}
	waitFor(g.t, startTimeout, "demoted master in sync", func() string {
		return infoField(g.Replica.Addr(), "replication", "master_link_status", "up")
	})
}

// infoField returns "" when INFO section on addr has field = want, or why
// not.
func infoField(addr, section, field, want string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			if v == want {
				return ""
			}
			return fmt.Sprintf("%s is %s, want %s", field, v, want)
		}
	}
	return "no " + field + " in INFO " + section
}
