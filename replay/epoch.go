package replay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Redis that lost its data (restarted without persistence, flushed, or
// failed over to a replica that had nothing) answers every SET NX as if
// no signature had ever been used. To notice, each cache keeps an epoch
// beside its keys: a key that every replica sets if it is absent, and
// never changes or expires. A replica remembers the epoch it last saw; an
// epoch that is gone, or another one, means that the store lost what it
// held (recovery.go says what a replica then does).
//
// Redis's run_id (INFO server) is not used: it changes on every restart,
// persisted data or not, and stays the same across FLUSHALL.

// epochScript returns the cache's epoch, setting it first when absent:
// {epoch, Redis's time in ms, 1 if this call set it}. An epoch is a random
// id and the time it was set, in ms on Redis's clock.
var epochScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if v then
	return {v, now, 0}
end
v = ARGV[1] .. ':' .. now
redis.call('SET', KEYS[1], v)
return {v, now, 1}
`)

// epochKey is the key of c's epoch: beside the cache's keys (hex), under
// the same prefix, so that ACL key patterns for the cache cover it.
func (c *Redis) epochKey() string { return c.prefix + "epoch" }

// watchKey is the key a replica blocks on (BLPOP) to hear at once of a
// lost connection; nothing ever pushes to it.
func (c *Redis) watchKey() string { return c.prefix + "watch" }

// epochState is what the epoch script answered.
type epochState struct {
	value   string
	now     int64 // Redis's time, ms
	created bool  // the epoch was absent, and this call set it
}

// start is when the epoch was set, in ms on Redis's clock (0 if it does
// not say).
func (e epochState) start() int64 {
	_, ms, ok := strings.Cut(e.value, ":")
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// epoch returns the cache's epoch, setting it if it is absent. It does
// not use the breaker: the caller decides what a failure means.
func (c *Redis) epoch(ctx context.Context) (epochState, error) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	res, err := epochScript.Run(ctx, c.client, []string{c.epochKey()}, hex.EncodeToString(id[:])).Slice()
	if err != nil {
		return epochState{}, err
	}
	if len(res) != 3 {
		return epochState{}, errors.New("replay: unexpected epoch answer")
	}
	v, _ := res[0].(string)
	now, _ := res[1].(int64)
	created, _ := res[2].(int64)
	if v == "" {
		return epochState{}, errors.New("replay: unexpected epoch answer")
	}
	return epochState{value: v, now: now, created: created == 1}, nil
}

// watchBlock is how long one watch blocks: a lost connection ends it at
// once, and a stopped watch ends within it.
const watchBlock = time.Second

// watch blocks on a connection of its own for watchBlock, and returns an
// error at once if the connection is lost (Redis stopped or restarted).
func (c *Redis) watch(ctx context.Context) error {
	err := c.client.BLPop(ctx, watchBlock, c.watchKey()).Err()
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// isReply reports whether err is an error Redis answered (a refused
// command, say), rather than a lost or failed connection.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}

// errEpochUnsettled is returned when the store keeps changing while a
// request waits to use it.
var errEpochUnsettled = fmt.Errorf("%w: the store changed again while it was checked", ErrUnavailable)
