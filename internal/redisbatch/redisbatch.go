// Package redisbatch lets the concurrent callers of one Redis client share
// its round trips. A Batcher runs a command at once when fewer than its
// limit of batches are in flight; otherwise the command waits, with every
// other command that arrives meanwhile, and when a batch completes the
// commands waiting go together as one pipeline on one connection. A lone
// caller pays one round trip and no hand-off; under load, the commands of
// many requests share one write and one read, on the client's side and on
// Redis's. When a batch fails on its connection (Redis does not answer in
// time, or is gone), the commands waiting behind it fail at once, unsent:
// a caller waits for at most the one batch ahead of its own.
//
// A script made to do many callers' calls in one call of it (a Multi)
// goes further: the calls of it that wait for the same batch are sent as
// one command, so that Redis reads one command and runs the script once
// for all of them.
//
// Only commands that complete at once belong in a batch: a blocking
// command (WAIT, BLPOP, …) would hold up every command batched with it,
// so such commands are run on the client itself, in pipelines of their
// own.
package redisbatch

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Processor runs one command. Every go-redis client is one, and so is a
// Batcher.
type Processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// Batcher batches the commands of concurrent callers over one client. It
// is safe for concurrent use; the zero value is not usable: call New.
type Batcher struct {
	client  redis.UniversalClient
	max     int
	cluster bool // a Cluster's keys may be on several nodes: Multi calls go one by one

	mu      sync.Mutex
	queue   []*call // waiting; not empty only while max batches are in flight
	running int     // batches in flight
}

// New returns a Batcher over client that keeps at most maxBatches
// batches in flight (at least 1).
func New(client redis.UniversalClient, maxBatches int) *Batcher {
	_, cluster := client.(*redis.ClusterClient)
	return &Batcher{client: client, max: max(1, maxBatches), cluster: cluster}
}

// call is one waiting command, or one call of a Multi. done receives nil
// when it has been run, or the batch the waiter must now run itself (it
// leads it).
type call struct {
	cmd  redis.Cmder
	done chan []*call

	// A call of multi, with its keys and args; out and err are its part
	// of the reply.
	multi *Multi
	keys  []string
	args  []any
	out   []int64
	err   error
}

// fail ends c unsent, with err.
func (c *call) fail(err error) {
	if c.multi != nil {
		c.err = err
	} else {
		c.cmd.SetErr(err)
	}
}

func (c *call) reset() {
	*c = call{done: c.done}
	calls.Put(c)
}

var calls = sync.Pool{New: func() any { return &call{done: make(chan []*call, 1)} }}

// Process runs cmd, alone or in a batch, and returns its error. A command
// that waited runs on a context without the caller's cancellation, since
// it runs with others' commands; the client's timeouts bound it.
func (b *Batcher) Process(ctx context.Context, cmd redis.Cmder) error {
	b.mu.Lock()
	if b.running < b.max {
		b.running++
		b.mu.Unlock()
		err := b.client.Process(ctx, cmd)
		b.handOff(err)
		return err
	}
	c := calls.Get().(*call)
	c.cmd = cmd
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	if batch := <-c.done; batch != nil {
		b.run(context.WithoutCancel(ctx), batch)
	}
	c.reset()
	return cmd.Err()
}

// runMulti runs one call of m, alone or with the calls of m that wait for
// the same batch, as one command.
func (b *Batcher) runMulti(ctx context.Context, m *Multi, keys []string, args []any) ([]int64, error) {
	b.mu.Lock()
	if b.running < b.max {
		b.running++
		b.mu.Unlock()
		c := []*call{{multi: m, keys: keys, args: args}}
		cmd := m.Script.run(ctx, b.client, func(load bool) *redis.IntSliceCmd { return m.cmd(ctx, c, load) })
		m.split(cmd, c)
		b.handOff(cmd.Err())
		return c[0].out, c[0].err
	}
	c := calls.Get().(*call)
	c.multi, c.keys, c.args = m, keys, args
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	if batch := <-c.done; batch != nil {
		b.run(context.WithoutCancel(ctx), batch)
	}
	out, err := c.out, c.err
	c.reset()
	return out, err
}

// run runs batch (led by its first call, the caller) as one pipeline,
// tells the others, and hands off. The calls of each Multi go as one
// command of it (a few, past maxMultiCalls).
func (b *Batcher) run(ctx context.Context, batch []*call) {
	// What queued while the leader woke goes too.
	b.mu.Lock()
	batch = append(batch, b.queue...)
	b.queue = nil
	b.mu.Unlock()
	cmds := make([]redis.Cmder, 0, len(batch))
	var groups []group
	for _, c := range batch {
		if c.multi == nil {
			cmds = append(cmds, c.cmd)
			continue
		}
		if b.cluster {
			groups = append(groups, group{calls: []*call{c}})
			continue
		}
		i := len(groups) - 1
		for ; i >= 0 && (groups[i].calls[0].multi != c.multi || len(groups[i].calls) == maxMultiCalls); i-- {
		}
		if i < 0 {
			groups = append(groups, group{})
			i = len(groups) - 1
		}
		groups[i].calls = append(groups[i].calls, c)
	}
	for i := range groups {
		g := &groups[i]
		g.cmd = g.calls[0].multi.cmd(ctx, g.calls, false)
		cmds = append(cmds, g.cmd)
	}
	var err error
	if len(cmds) == 1 {
		err = b.client.Process(ctx, cmds[0])
	} else {
		_, err = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, cmd := range cmds {
				_ = p.Process(ctx, cmd)
			}
			return nil
		})
	}
	// Commands of a script Redis did not know go again, loaded (EVAL),
	// together: one more round trip, however many there are.
	var again []redis.Cmder
	for i := range groups {
		if g := &groups[i]; IsNoScript(g.cmd.Err()) {
			g.cmd = g.calls[0].multi.cmd(ctx, g.calls, true)
			again = append(again, g.cmd)
		}
	}
	if len(again) > 0 {
		_, rerr := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, cmd := range again {
				_ = p.Process(ctx, cmd)
			}
			return nil
		})
		if lostConnection(rerr) {
			err = rerr
		}
	}
	for i := range groups {
		groups[i].calls[0].multi.split(groups[i].cmd, groups[i].calls)
	}
	for _, c := range batch[1:] {
		c.done <- nil
	}
	b.handOff(err)
}

// group is the calls of one Multi that go as one command.
type group struct {
	calls []*call
	cmd   *redis.IntSliceCmd
}

// handOff ends a batch that returned err: the commands that waited
// meanwhile become the next batch, led by the first of them; or, if none
// did, one fewer batch is in flight.
//
// If the batch failed on its connection (a timeout, a reset, no
// connection to be had: anything but Redis's own error reply or its
// caller leaving), the commands that waited behind it fail at once,
// unsent, rather than wait for a timeout of their own: a Redis that does
// not answer then costs a request no more than one timeout, and its
// callers' breakers decide what comes next. An unsent command has done
// nothing in Redis.
func (b *Batcher) handOff(err error) {
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.running--
		b.mu.Unlock()
		return
	}
	next := b.queue
	b.queue = nil
	if !lostConnection(err) {
		b.mu.Unlock()
		next[0].done <- next
		return
	}
	b.running--
	b.mu.Unlock()
	unsent := fmt.Errorf("%w: %w", ErrNotSent, err)
	for _, c := range next {
		c.fail(unsent)
		c.done <- nil
	}
}

// Queued reports how many commands wait for the batches in flight.
func (b *Batcher) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// ErrNotSent is wrapped by the error of a command that waited behind a
// batch that failed on its connection, and was not sent.
var ErrNotSent = errors.New("redisbatch: not sent: the batch before it failed")

// lostConnection reports whether err, a batch's, is a failure of the
// connection rather than Redis's error reply or a caller's context.
func lostConnection(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var reply redis.Error
	return !errors.As(err, &reply)
}

// Script is a Lua script run by EVALSHA through a Processor (a client, a
// Batcher, a pipeline), and by EVAL when the server does not know it yet.
type Script struct {
	src, sha string
}

// NewScript returns the script of src.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Cmd returns the EVALSHA command of the script over keys and args,
// unrun: for a pipeline of its own (see IsNoScript).
func (s *Script) Cmd(ctx context.Context, keys []string, args ...any) *redis.Cmd {
	return keyed(redis.NewCmd(ctx, s.args("evalsha", s.sha, keys, args)...), keys)
}

// EvalCmd returns the EVAL command of the script, which loads it.
func (s *Script) EvalCmd(ctx context.Context, keys []string, args ...any) *redis.Cmd {
	return keyed(redis.NewCmd(ctx, s.args("eval", s.src, keys, args)...), keys)
}

// IntsCmd and EvalIntsCmd are Cmd and EvalCmd for a script that returns
// an array of integers, which they read without boxing each one.
func (s *Script) IntsCmd(ctx context.Context, keys []string, args ...any) *redis.IntSliceCmd {
	return keyed(redis.NewIntSliceCmd(ctx, s.args("evalsha", s.sha, keys, args)...), keys)
}

// EvalIntsCmd: see IntsCmd.
func (s *Script) EvalIntsCmd(ctx context.Context, keys []string, args ...any) *redis.IntSliceCmd {
	return keyed(redis.NewIntSliceCmd(ctx, s.args("eval", s.src, keys, args)...), keys)
}

func (s *Script) args(name, body string, keys []string, args []any) []any {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, name, body, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	return append(a, args...)
}

func keyed[C interface{ SetFirstKeyPos(int8) }](cmd C, keys []string) C {
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3)
	}
	return cmd
}

// Run runs the script through p: EVALSHA, then EVAL if the server did not
// know it.
func (s *Script) Run(ctx context.Context, p Processor, keys []string, args ...any) *redis.Cmd {
	cmd := s.Cmd(ctx, keys, args...)
	if err := p.Process(ctx, cmd); !IsNoScript(err) {
		return cmd
	}
	cmd = s.EvalCmd(ctx, keys, args...)
	_ = p.Process(ctx, cmd)
	return cmd
}

// run runs the command mk makes through p, and again loaded (EVAL) if
// the server did not know the script.
func (s *Script) run(ctx context.Context, p Processor, mk func(load bool) *redis.IntSliceCmd) *redis.IntSliceCmd {
	cmd := mk(false)
	if err := p.Process(ctx, cmd); IsNoScript(err) {
		cmd = mk(true)
		_ = p.Process(ctx, cmd)
	}
	return cmd
}

// Multi is a script that does the calls of many callers in one call of
// it: its keys are each caller's Keys keys in turn, its arguments each
// caller's Args arguments in turn, and its reply an array of each
// caller's Width integers in turn. Run through a Batcher, the calls that
// wait for the same batch go as one call of the script.
type Multi struct {
	Script            *Script
	Keys, Args, Width int
}

// maxMultiCalls bounds the calls one command of a Multi does, and so how
// long the script holds Redis.
const maxMultiCalls = 64

// Run runs one call of m, with keys and args, through p: with the calls
// of other callers when p is a Batcher (and not over a Cluster, whose
// callers' keys may be on several nodes), alone otherwise. It returns the
// call's Width integers.
func (m *Multi) Run(ctx context.Context, p Processor, keys []string, args []any) ([]int64, error) {
	if len(keys) != m.Keys || len(args) != m.Args {
		return nil, fmt.Errorf("redisbatch: a call of %d keys and %d arguments to a script that takes %d and %d", len(keys), len(args), m.Keys, m.Args)
	}
	if b, ok := p.(*Batcher); ok {
		return b.runMulti(ctx, m, keys, args)
	}
	c := &call{multi: m, keys: keys, args: args}
	m.split(m.Script.run(ctx, p, func(load bool) *redis.IntSliceCmd { return m.cmd(ctx, []*call{c}, load) }), []*call{c})
	return c.out, c.err
}

// cmd is the one command of calls: EVALSHA, or EVAL with load.
func (m *Multi) cmd(ctx context.Context, calls []*call, load bool) *redis.IntSliceCmd {
	name, body := "evalsha", m.Script.sha
	if load {
		name, body = "eval", m.Script.src
	}
	n := len(calls)
	a := make([]any, 3, 3+n*(m.Keys+m.Args))
	a[0], a[1], a[2] = name, body, n*m.Keys
	for _, c := range calls {
		for _, k := range c.keys {
			a = append(a, k)
		}
	}
	for _, c := range calls {
		a = append(a, c.args...)
	}
	cmd := redis.NewIntSliceCmd(ctx, a...)
	if m.Keys > 0 {
		cmd.SetFirstKeyPos(3)
	}
	return cmd
}

// split gives each of calls its part of cmd's reply, or its error.
func (m *Multi) split(cmd *redis.IntSliceCmd, calls []*call) {
	v, err := cmd.Result()
	if err == nil && len(v) != m.Width*len(calls) {
		err = fmt.Errorf("redisbatch: a reply of %d integers to %d calls of %d", len(v), len(calls), m.Width)
	}
	for i, c := range calls {
		if err != nil {
			c.err = err
			continue
		}
		c.out = v[i*m.Width : (i+1)*m.Width : (i+1)*m.Width]
	}
}

// IsNoScript reports whether err is Redis's answer to EVALSHA of a script
// it does not hold.
func IsNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }

// IsKeyError reports whether err is Redis's answer that a key holds a
// value of another type (WRONGTYPE): a failure of that key alone, which
// says nothing of Redis's health, so it should not make the caller skip
// Redis for its other keys.
func IsKeyError(err error) bool { return err != nil && redis.HasErrorPrefix(err, "WRONGTYPE") }
