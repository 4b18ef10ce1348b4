package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of masters without replicas, on loopback.
type Cluster struct {
	Nodes []*Server
	tls   bool
}

// StartCluster starts masters redis-servers in cluster mode, joins them
// with redis-cli --cluster create, and waits until every node reports the
// cluster ok. With a PKI, clients, and the nodes among themselves, speak
// only TLS, with client certificates.
func StartCluster(t testing.TB, masters int, pki *PKI) *Cluster {
	t.Helper()
	Require(t, "redis-server", "redis-cli")
	if masters < 3 {
		t.Fatal("redistest: a Redis Cluster needs at least three masters")
	}
	c := &Cluster{tls: pki != nil}
	var tlsConfig *tls.Config
	if pki != nil {
		tlsConfig = pki.ClientConfig()
	}
	for range masters {
		// The cluster bus port is given too: port+10000 need not be free.
		args := []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", fmt.Sprint(freePort(t)),
			"--cluster-node-timeout", "5000",
		}
		if pki == nil {
			c.Nodes = append(c.Nodes, Start(t, args...))
			continue
		}
		c.Nodes = append(c.Nodes, StartTLS(t, pki, append(args, "--tls-cluster", "yes", "--tls-replication", "yes")...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if pki != nil {
		args = append(args, "--tls", "--cacert", pki.CAFile, "--cert", pki.ClientCert, "--key", pki.ClientKey)
	}
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		waitFor(t, 2*startTimeout, "cluster ok on "+n.Addr(), func() string {
			rc := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, TLSConfig: tlsConfig})
			defer rc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			info, err := rc.ClusterInfo(ctx).Result()
			if err != nil {
				return err.Error()
			}
			for _, want := range []string{"cluster_state:ok", "cluster_slots_ok:16384", fmt.Sprintf("cluster_known_nodes:%d", masters)} {
				if !strings.Contains(info, want+"\r\n") {
					return "no " + want + " in CLUSTER INFO"
				}
			}
			return ""
		})
	}
	return c
}

// Addrs returns the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr())
	}
	return a
}

// URL returns the redis+cluster:// (or rediss+cluster://) URL of the
// cluster.
func (c *Cluster) URL() string {
	if c.tls {
		return "rediss+cluster://" + strings.Join(c.Addrs(), ",")
	}
	return "redis+cluster://" + strings.Join(c.Addrs(), ",")
}

// NodeLog returns node i's log, for failure messages.
func (c *Cluster) NodeLog(i int) string { return c.Nodes[i].Log() }
