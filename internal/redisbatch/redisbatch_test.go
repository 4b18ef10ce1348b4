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

	mu         sync.Mutex
	scriptKeys []int64 // each script command's number of keys, as sent
}

func (c *counter) script(cmd redis.Cmder) {
	if name := cmd.Name(); name == "evalsha" || name == "eval" {
		n, _ := cmd.Args()[2].(int)
		c.mu.Lock()
		c.scriptKeys = append(c.scriptKeys, int64(n))
		c.mu.Unlock()
	}
}

func (c *counter) scripts() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.scriptKeys...)
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !ours(cmd) {
			return next(ctx, cmd)
		}
		c.singles.Add(1)
		c.script(cmd)
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
				c.script(cmd)
			}
		}
		if n > 0 {
			c.pipelines.Add(1)
			c.piped.Add(int64(n))
		}
		return next(ctx, cmds)
	}
}

func ours(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "ping", "incr", "evalsha", "eval":
		return true
	}
	return false
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
		waitFor(t, "the command to queue", func() bool { return b.Queued() == i+1 })
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
		waitFor(t, "the command to queue", func() bool { return b.Queued() == i+1 })
	}
	multi := make(chan error, 1)
	go func() {
		_, err := incrs.Run(ctx, b, []string{"test:batch:slow"}, []any{1})
		multi <- err
	}()
	waitFor(t, "the script call to queue", func() bool { return b.Queued() == waiters+1 })
	if err := <-first; err == nil {
		t.Fatal("the command out while Redis was paused did not time out")
	}
	for range waiters {
		if err := <-errs; !errors.Is(err, ErrNotSent) {
			t.Errorf("a command that waited behind a batch that timed out: %v; want ErrNotSent", err)
		}
	}
	if err := <-multi; !errors.Is(err, ErrNotSent) {
		t.Errorf("a script call that waited behind a batch that timed out: %v; want ErrNotSent", err)
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
	waitFor(t, "the command to queue", func() bool { return b.Queued() == 1 })
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

// incrs is a Multi: each call adds its argument to its key and answers
// the key's new value and the call's place in the command.
var incrs = &Multi{Script: NewScript(`
local out = {}
for i = 1, #KEYS do
	out[2*i-1] = redis.call('INCRBY', KEYS[i], ARGV[i])
	out[2*i] = i
end
return out`), Keys: 1, Args: 1, Width: 2}

// holdFirst makes hook hold the first command sent out until release is
// closed.
func holdFirst(hook *counter) (release chan struct{}) {
	release = make(chan struct{})
	var once sync.Once
	hook.gate = func() { once.Do(func() { <-release }) }
	return release
}

// held is a Batcher over a counted client of its own Redis, which knows
// incrs, with a PING out and held: the calls made now wait for it.
type held struct {
	c       *redis.Client
	hook    *counter
	b       *Batcher
	release chan struct{}
	first   chan error // the PING's outcome, once released
}

func newHeld(t *testing.T, cluster bool) *held {
	t.Helper()
	srv := redistest.Start(t)
	h := &held{c: newClient(t, srv), hook: new(counter), first: make(chan error, 1)}
	ctx := context.Background()
	if err := h.c.ScriptLoad(ctx, incrs.Script.src).Err(); err != nil {
		t.Fatal(err)
	}
	h.c.AddHook(h.hook)
	h.b = New(h.c, 1)
	h.b.cluster = cluster // as New makes it for a *redis.ClusterClient
	h.release = holdFirst(h.hook)
	go func() { h.first <- h.b.Process(ctx, redis.NewStatusCmd(ctx, "ping")) }()
	waitFor(t, "the first command to be out", func() bool { return h.hook.singles.Load() == 1 })
	return h
}

// releaseFirst lets the held PING go, and waits for its answer.
func (h *held) releaseFirst(t *testing.T) {
	t.Helper()
	close(h.release)
	if err := <-h.first; err != nil {
		t.Fatal(err)
	}
}

// TestMultiCallsGoAsOneCommand: the calls of a Multi that wait for the
// same batch go as one command of it (two, past maxMultiCalls), beside
// the batch's other commands in one pipeline; each caller gets its own
// part of the reply, and every call runs once.
func TestMultiCallsGoAsOneCommand(t *testing.T) {
	h := newHeld(t, false)
	c, hook, b, ctx := h.c, h.hook, h.b, context.Background()

	const calls = maxMultiCalls + 36
	type answer struct {
		key string
		v   []int64
		err error
	}
	answers := make(chan answer, calls)
	for i := range calls {
		key := fmt.Sprint("test:multi:", i%3)
		go func() {
			v, err := incrs.Run(ctx, b, []string{key}, []any{1})
			answers <- answer{key, v, err}
		}()
		waitFor(t, "the call to queue", func() bool { return b.Queued() == i+1 })
	}
	other := make(chan error, 1)
	go func() { other <- b.Process(ctx, redis.NewIntCmd(ctx, "incr", "test:multi:other")) }()
	waitFor(t, "the other command to queue", func() bool { return b.Queued() == calls+1 })
	h.releaseFirst(t)
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[int64]bool{}
	places := map[int64]int{}
	for range calls {
		a := <-answers
		if a.err != nil || len(a.v) != 2 {
			t.Fatalf("a call: %v %v", a.v, a.err)
		}
		if seen[a.key] == nil {
			seen[a.key] = map[int64]bool{}
		}
		if seen[a.key][a.v[0]] {
			t.Errorf("two calls got %s's value %d", a.key, a.v[0])
		}
		seen[a.key][a.v[0]] = true
		places[a.v[1]]++
	}
	for k := range 3 {
		key := fmt.Sprint("test:multi:", k)
		if n, _ := c.Get(ctx, key).Int(); n != len(seen[key]) {
			t.Errorf("%s is %d after %d calls", key, n, len(seen[key]))
		}
	}
	if s, p, n := hook.singles.Load(), hook.pipelines.Load(), hook.piped.Load(); s != 1 || p != 1 || n != 3 {
		t.Errorf("%d single commands, %d pipelines of %d commands; want 1, and 1 of 3 (the other command, two script calls)", s, p, n)
	}
	if got := hook.scripts(); len(got) != 2 || got[0]+got[1] != calls || max(got[0], got[1]) != maxMultiCalls {
		t.Errorf("script commands of %v keys; want two, of %d and %d", got, maxMultiCalls, calls-maxMultiCalls)
	}
	if places[1] != 2 || places[calls-maxMultiCalls+1] != 1 || places[maxMultiCalls] != 1 {
		t.Errorf("places in the commands: %v", places)
	}

	// Idle again: a lone call goes at once, as a command of its own.
	if v, err := incrs.Run(ctx, b, []string{"test:multi:0"}, []any{5}); err != nil || v[1] != 1 {
		t.Errorf("a lone call: %v %v", v, err)
	}
	if _, err := incrs.Run(ctx, b, []string{"a", "b"}, []any{1}); err == nil {
		t.Error("a call of two keys to a Multi of one was sent")
	}
}

// TestMultiLoadsItself: a Multi's combined commands, and a lone call,
// through a Batcher or straight through a client, fall back on EVAL when
// Redis does not know the script; a batch's combined commands go again
// together, in one more round trip.
func TestMultiLoadsItself(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	ctx := context.Background()
	for _, p := range []Processor{c, New(c, 1)} {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := incrs.Run(ctx, p, []string{"test:multi:load"}, []any{1}); err != nil || len(v) != 2 {
			t.Errorf("a lone call of an unknown script: %v %v", v, err)
		}
	}
	h := newHeld(t, false) // a Redis of its own, which knows the script
	if err := h.c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const calls = maxMultiCalls + 6
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			_, err := incrs.Run(ctx, h.b, []string{"test:multi:load"}, []any{1})
			errs <- err
		}()
		waitFor(t, "the call to queue", func() bool { return h.b.Queued() == i+1 })
	}
	h.releaseFirst(t)
	for range calls {
		if err := <-errs; err != nil {
			t.Errorf("a call combined into an unknown script: %v", err)
		}
	}
	if n, _ := h.c.Get(ctx, "test:multi:load").Int(); n != calls {
		t.Errorf("the key is %d, want %d: a call ran twice, or not at all", n, calls)
	}
	// The batch's pipeline (two EVALSHA, refused), then one of two EVAL.
	if p, n := h.hook.pipelines.Load(), h.hook.piped.Load(); p != 2 || n != 4 {
		t.Errorf("%d pipelines of %d commands in all; want 2 of 4", p, n)
	}
}

// TestMultiBadReply: a reply that is not each call's Width integers fails
// every call of the command with an error, and hands no caller another's
// part.
func TestMultiBadReply(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	short := &Multi{Script: NewScript(`return {1}`), Keys: 1, Args: 0, Width: 2}
	for _, p := range []Processor{c, New(c, 1)} {
		if v, err := short.Run(context.Background(), p, []string{"test:multi:short"}, nil); err == nil || v != nil {
			t.Errorf("a reply of 1 integer to a call of 2: %v %v", v, err)
		}
	}
}

// TestMultiOverACluster: over a Cluster's client, whose callers' keys may
// be on several nodes, each call goes as a command of its own.
func TestMultiOverACluster(t *testing.T) {
	h := newHeld(t, true)
	c, hook, b, ctx := h.c, h.hook, h.b, context.Background()
	const calls = 4
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			_, err := incrs.Run(ctx, b, []string{fmt.Sprint("test:multi:slot", i)}, []any{1})
			errs <- err
		}()
		waitFor(t, "the call to queue", func() bool { return b.Queued() == i+1 })
	}
	h.releaseFirst(t)
	for range calls {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := hook.scripts(); len(got) != calls {
		t.Errorf("script commands of %v keys; want %d of one", got, calls)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{c.Options().Addr}})
	defer cc.Close()
	if !New(cc, 1).cluster || New(c, 1).cluster {
		t.Error("New does not tell a Cluster's client from another")
	}
}
