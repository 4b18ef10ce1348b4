package redisbatch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

func newClient(t testing.TB, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, PoolTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// counter counts what the client sends of the test's commands (PING and
// INCR, not the connections' handshakes): single commands, and pipelines
// with their commands. gate, if set, is called before each single command.
type counter struct {
	singles, pipelines, piped atomic.Int64
	gate                      func()
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !ours(cmd) {
			return next(ctx, cmd)
		}
		c.singles.Add(1)
		if c.gate != nil {
			c.gate()
		}
		return next(ctx, cmd)
	}
}
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, cmd := range cmds {
			if ours(cmd) {
				n++
			}
		}
		if n > 0 {
			c.pipelines.Add(1)
			c.piped.Add(int64(n))
		}
		return next(ctx, cmds)
	}
}

func ours(cmd redis.Cmder) bool { return cmd.Name() == "ping" || cmd.Name() == "incr" }

func (b *Batcher) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatcherEveryCommandOnce: many goroutines' commands all run, each
// once, with its own reply.
func TestBatcherEveryCommandOnce(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	for _, maxBatches := range []int{1, 2, 4} {
		b := New(c, maxBatches)
		ctx := context.Background()
		key := fmt.Sprint("test:batch:count:", maxBatches)
		const goroutines, each = 32, 200
		var wg sync.WaitGroup
		var bad atomic.Int64
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					own := fmt.Sprint("test:batch:own:", maxBatches, ":", g, ":", i)
					set := redis.NewStatusCmd(ctx, "set", own, own)
					get := redis.NewStringCmd(ctx, "get", own)
					incr := redis.NewIntCmd(ctx, "incr", key)
					if b.Process(ctx, set) != nil || b.Process(ctx, get) != nil || get.Val() != own || b.Process(ctx, incr) != nil {
						bad.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if bad.Load() != 0 {
			t.Errorf("max %d: %d calls failed or got another's reply", maxBatches, bad.Load())
		}
		if n, err := c.Get(ctx, key).Int(); err != nil || n != goroutines*each {
			t.Errorf("max %d: %d increments counted (%v), want %d", maxBatches, n, err, goroutines*each)
		}
	}
}

// TestBatcherShares: commands that arrive while a batch is out wait, and
// then go together, as one pipeline, whatever their callers' contexts.
func TestBatcherShares(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	hook := new(counter)
	c.AddHook(hook)
	b := New(c, 1)
	const waiters = 16
	release := make(chan struct{})
	var once sync.Once
	hook.gate = func() { once.Do(func() { <-release }) } // holds the first command out
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- b.Process(ctx, redis.NewStatusCmd(ctx, "ping")) }()
	waitFor(t, "the first command to be out", func() bool { return hook.singles.Load() == 1 })

	cancelled, cancel := context.WithCancel(ctx)
	cancel() // the next batch's leader's request is gone: its batch still runs
	errs := make(chan error, waiters)
	for i := range waiters {
		go func() {
			cctx := ctx
			if i == 0 {
				cctx = cancelled
			}
			cmd := redis.NewIntCmd(cctx, "incr", "test:batch:shared")
			if err := b.Process(cctx, cmd); err != nil {
				errs <- err
				return
			}
			errs <- nil
		}()
		waitFor(t, "the command to queue", func() bool { return b.queued() == i+1 })
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range waiters {
		if err := <-errs; err != nil {
			t.Errorf("a batched command failed: %v", err)
		}
	}
	if s, p, n := hook.singles.Load(), hook.pipelines.Load(), hook.piped.Load(); s != 1 || p != 1 || n != waiters {
		t.Errorf("%d single commands, %d pipelines of %d commands in all; want 1, and 1 of %d", s, p, n, waiters)
	}
	if n, _ := c.Get(ctx, "test:batch:shared").Int(); n != waiters {
		t.Errorf("%d increments, want %d", n, waiters)
	}
	// Idle again: a lone command goes at once, on its own.
	if err := b.Process(ctx, redis.NewStatusCmd(ctx, "ping")); err != nil || hook.singles.Load() != 2 {
		t.Errorf("lone command: %v, %d singles", err, hook.singles.Load())
	}
}

// TestBatcherOutage: with Redis gone, every caller gets an error, and
// nothing waits for ever.
func TestBatcherOutage(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialerRetries: 1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, PoolTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	b := New(c, 2)
	ctx := context.Background()
	if err := b.Process(ctx, redis.NewStatusCmd(ctx, "ping")); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.Process(ctx, redis.NewStatusCmd(ctx, "ping")) != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 50 {
		t.Errorf("%d of 50 commands failed with Redis down", failed.Load())
	}
	srv.Restart()
	waitFor(t, "Redis to answer through the batcher", func() bool { return b.Process(ctx, redis.NewStatusCmd(ctx, "ping")) == nil })
}

// TestBatcherSlowRedis: Redis stops answering with a batch out; the
// commands that waited behind it fail as soon as it times out, unsent,
// rather than go as the next batch and wait for a timeout of their own; a command refused by Redis (an error reply)
// fails nothing behind it. Then the batcher works again.
func TestBatcherSlowRedis(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, PoolSize: 4, MinIdleConns: 4,
		DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond, PoolTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	admin := newClient(t, srv)
	ctx := context.Background()
	// Idle connections ready, so that a second batch would be sent at once.
	var warm sync.WaitGroup
	for range 4 {
		warm.Add(1)
		go func() { defer warm.Done(); _ = c.Ping(ctx).Err() }()
	}
	warm.Wait()
	hook := new(counter)
	c.AddHook(hook)
	b := New(c, 1)

	// Redis holds every command for 2s.
	if err := admin.Do(ctx, "CLIENT", "PAUSE", 2000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- b.Process(ctx, redis.NewIntCmd(ctx, "incr", "test:batch:slow")) }()
	waitFor(t, "the first command to be out", func() bool { return hook.singles.Load() == 1 })
	const waiters = 10
	errs := make(chan error, waiters)
	for i := range waiters {
		go func() { errs <- b.Process(ctx, redis.NewIntCmd(ctx, "incr", "test:batch:slow")) }()
		waitFor(t, "the command to queue", func() bool { return b.queued() == i+1 })
	}
	if err := <-first; err == nil {
		t.Fatal("the command out while Redis was paused did not time out")
	}
	for range waiters {
		if err := <-errs; !errors.Is(err, ErrNotSent) {
			t.Errorf("a command that waited behind a batch that timed out: %v; want ErrNotSent", err)
		}
	}
	if p := hook.pipelines.Load(); p != 0 {
		t.Errorf("%d pipelines sent after the batch out timed out; want none", p)
	}
	// Only the command that was out ran, once Redis answers again.
	waitFor(t, "the batcher to work again", func() bool { return b.Process(ctx, redis.NewStatusCmd(ctx, "ping")) == nil })
	if n, _ := admin.Get(ctx, "test:batch:slow").Int(); n > 1 {
		t.Errorf("%d increments ran, want at most 1: a command reported unsent was sent", n)
	}

	// An error reply is no lost connection: what waits behind it runs.
	if err := admin.RPush(ctx, "test:batch:list", "x").Err(); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var once sync.Once
	singles := hook.singles.Load()
	hook.gate = func() { once.Do(func() { <-release }) }
	wrong := make(chan error, 1)
	go func() { wrong <- b.Process(ctx, redis.NewIntCmd(ctx, "incr", "test:batch:list")) }()
	waitFor(t, "the failing command to be out", func() bool { return hook.singles.Load() == singles+1 })
	behind := make(chan error, 1)
	go func() { behind <- b.Process(ctx, redis.NewIntCmd(ctx, "incr", "test:batch:slow")) }()
	waitFor(t, "the command to queue", func() bool { return b.queued() == 1 })
	close(release)
	if err := <-wrong; err == nil || errors.Is(err, ErrNotSent) {
		t.Errorf("INCR of a list: %v", err)
	}
	if err := <-behind; err != nil {
		t.Errorf("a command behind an error reply: %v", err)
	}
}

// TestScriptLoadsItself: EVALSHA of a script the server lacks falls back
// on EVAL, through a client, a batcher or a pipeline alike.
func TestScriptLoadsItself(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	s := NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)
	ctx := context.Background()
	for i, p := range []Processor{c, New(c, 1)} {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		for j := range 2 {
			n, err := s.Run(ctx, p, []string{"test:script"}, 2).Int64()
			if err != nil || n != int64(4*i+2*(j+1)) {
				t.Errorf("processor %d, run %d: %d %v", i, j, n, err)
			}
		}
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	cmd := s.Cmd(ctx, []string{"test:script"}, 1)
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { return p.Process(ctx, cmd) })
	if !IsNoScript(err) || !IsNoScript(cmd.Err()) {
		t.Errorf("EVALSHA of an unknown script: %v", err)
	}
	if IsNoScript(nil) || IsNoScript(&net.OpError{Op: "read"}) {
		t.Error("IsNoScript of other errors")
	}
}
