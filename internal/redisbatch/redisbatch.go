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
	client redis.UniversalClient
	max    int

	mu      sync.Mutex
	queue   []*call // waiting; not empty only while max batches are in flight
	running int     // batches in flight
}

// New returns a Batcher over client that keeps at most maxBatches
// batches in flight (at least 1).
func New(client redis.UniversalClient, maxBatches int) *Batcher {
	return &Batcher{client: client, max: max(1, maxBatches)}
}

// call is one waiting command. done receives nil when the command has
// been run, or the batch the waiter must now run itself (it leads it).
type call struct {
	cmd  redis.Cmder
	done chan []*call
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
	c.cmd = nil
	calls.Put(c)
	return cmd.Err()
}

// run runs batch (led by its first call, the caller) as one pipeline,
// tells the others, and hands off.
func (b *Batcher) run(ctx context.Context, batch []*call) {
	// What queued while the leader woke goes too.
	b.mu.Lock()
	batch = append(batch, b.queue...)
	b.queue = nil
	b.mu.Unlock()
	cmds := make([]redis.Cmder, len(batch))
	for i, c := range batch {
		cmds[i] = c.cmd
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
	for _, c := range batch[1:] {
		c.done <- nil
	}
	b.handOff(err)
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
		c.cmd.SetErr(unsent)
		c.done <- nil
	}
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
	return s.cmd(ctx, "evalsha", s.sha, keys, args)
}

// EvalCmd returns the EVAL command of the script, which loads it.
func (s *Script) EvalCmd(ctx context.Context, keys []string, args ...any) *redis.Cmd {
	return s.cmd(ctx, "eval", s.src, keys, args)
}

func (s *Script) cmd(ctx context.Context, name, body string, keys []string, args []any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, name, body, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := redis.NewCmd(ctx, a...)
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

// IsNoScript reports whether err is Redis's answer to EVALSHA of a script
// it does not hold.
func IsNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }

// IsKeyError reports whether err is Redis's answer that a key holds a
// value of another type (WRONGTYPE): a failure of that key alone, which
// says nothing of Redis's health, so it should not make the caller skip
// Redis for its other keys.
func IsKeyError(err error) bool { return err != nil && redis.HasErrorPrefix(err, "WRONGTYPE") }
