package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/breaker"
	"github.com/mxgate/mxgate/internal/redisbatch"
)

// ErrStoreUnavailable is returned (wrapped) when Redis cannot be reached or
// answered wrongly, and, without trying Redis, while the store waits to
// probe it again after such a failure.
var ErrStoreUnavailable = errors.New("ratelimit: store unavailable")

// takeScript is GCRA (the generic cell rate algorithm), for the calls of
// many requests in one run: each call's bucket key holds its theoretical
// arrival time (TAT) in microseconds on the Redis server's clock, and a
// request is admitted when its TAT lies no further than burst intervals
// (plus the allowed wait) ahead of now; a refused request changes
// nothing. Calls are decided in turn, as if each were a run of its own,
// at one now (the server's TIME, read once).
//
// A call may carry a claim: a key set (SET NX PX) before its take, the
// take made only if the key was not there. A claim found already there
// takes nothing. The claim stays recorded whether the take admits or
// refuses.
//
// A call's bucket is read before anything of it is written: Redis does
// not undo what a script wrote before an error, so a bucket that cannot
// be read (a key of another type, WRONGTYPE) records nothing and takes
// nothing, and its call answers so (-2) while the others go on. Its error
// is caught (pcall) so that a claim already there is still answered as
// one: a broken bucket never turns a replay into an error. Any other
// error of the read (an ACL that forbids GET, …) fails the whole run, as
// Redis's, not one key's.
//
// Each Redis command a script calls costs Redis about a microsecond
// beyond the command itself, so a call calls one (SET NX of its claim)
// beyond the first read of each bucket, the one TIME and the last write
// of each bucket it changed.
//
// Buckets are written once, at the end of the run, so a claim's key must
// never be a bucket's (claims and buckets live under prefixes of their
// own: mxgate:replay:, mxgate:rl:).
//
// Call i: KEYS[2i-1] its bucket; KEYS[2i] its claim, or the bucket again
// for none; ARGV[4i-3] interval (µs, may be fractional); ARGV[4i-2]
// burst; ARGV[4i-1] max wait (µs); ARGV[4i] the claim's time to live
// (ms), 0 for none. It answers three integers: {1 admitted, 0 refused, -1
// a claim already there, -2 the bucket cannot be read}, the reset (µs),
// the delay (admitted) or retry (refused) in µs.
var takeScript = redisbatch.NewScript(takeLua)

const takeLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats, dirty, out = {}, {}, {}
for i = 1, #KEYS / 2 do
	local bk, ck, a = KEYS[2*i-1], KEYS[2*i], 4*i-4
	local ttl = ARGV[a+4]
	local tat = tats[bk]
	if tat == nil then
		local b = redis.pcall('GET', bk)
		if type(b) == 'table' and b.err then
			if string.sub(b.err, 1, 9) ~= 'WRONGTYPE' then
				return b
			end
			tat = false
		else
			tat = tonumber(b) or 0
		end
		tats[bk] = tat
	end
	local code, reset, delay = -1, 0, 0
	if tat == false then
		if ttl == '0' or redis.call('EXISTS', ck) == 0 then
			code = -2
		end
	elseif ttl == '0' or redis.call('SET', ck, '1', 'NX', 'PX', ttl) then
		local interval = tonumber(ARGV[a+1])
		if tat < now then tat = now end
		local newtat = tat + interval
		delay = newtat - now - tonumber(ARGV[a+2]) * interval
		if delay < 0 then delay = 0 end
		if delay > tonumber(ARGV[a+3]) then
			code, reset = 0, math.ceil(tat - now)
		else
			code, reset = 1, math.ceil(newtat - now)
			tats[bk], dirty[bk] = newtat, true
		end
		delay = math.ceil(delay)
	end
	out[3*i-2], out[3*i-1], out[3*i] = code, reset, delay
end
for bk in pairs(dirty) do
	local tat = tats[bk]
	redis.call('SET', bk, string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
return out
`

// takes runs takeScript's calls, those of concurrent requests together
// through a Batcher.
var takes = &redisbatch.Multi{Script: takeScript, Keys: 2, Args: 4, Width: 3}

// Codes of takeScript's answers.
const (
	codeRefused    = 0
	codeAdmitted   = 1
	codeClaimThere = -1
	codeUnreadable = -2
)

// errUnreadable is a call's answer when its bucket holds a value of
// another type: Redis's WRONGTYPE, for that key alone (IsKeyError).
type errUnreadable struct{}

func (errUnreadable) Error() string {
	return "WRONGTYPE the budget's bucket key holds a value of another type"
}

// RedisError makes it a redis.Error: Redis's answer, not a lost connection.
func (errUnreadable) RedisError() {}

// cancelScript gives back one interval of a reservation that will not be
// used. KEYS[1] bucket; ARGV[1] interval (µs).
var cancelScript = redisbatch.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
tat = tat - tonumber(ARGV[1])
if tat <= now then
	redis.call('DEL', KEYS[1])
else
	redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
return 1
`)

// Redis is a Store shared by every replica that uses the same Redis and
// prefix. Each Take is one atomic script run; time is the Redis server's
// (the now argument is ignored), so replicas' clocks do not matter.
//
// After a failure the store reports ErrStoreUnavailable at once, without
// trying Redis, until ProbeInterval has passed; then one request probes
// Redis again. It is safe for concurrent use. The zero value is not
// usable: call NewRedis.
type Redis struct {
	client  redis.UniversalClient
	proc    redisbatch.Processor // runs Take's script: client, or a Batcher over it
	prefix  string
	policy  Policy
	breaker breaker.Breaker

	// Per class, made once: the interval (µs) and the burst as the
	// scripts take them, and the bucket of the empty key.
	interval, burst [NumClasses]any
	siteKey         [NumClasses]string
}

// DefaultProbeInterval is how long a Redis store waits after a failure
// before trying Redis again.
const DefaultProbeInterval = time.Second

// NewRedis returns a Redis store for policy. prefix namespaces its keys;
// give every site and directive its own. client should have short
// timeouts: a Take waits no longer than they allow.
func NewRedis(client redis.UniversalClient, prefix string, policy Policy) (*Redis, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("ratelimit: nil Redis client")
	}
	s := &Redis{client: client, proc: client, prefix: prefix, policy: policy, breaker: breaker.Breaker{Probe: DefaultProbeInterval}}
	for c, l := range policy {
		if !l.Unlimited() {
			s.interval[c], s.burst[c] = strconv.FormatFloat(1e6/l.Rate, 'f', 3, 64), l.Burst
		}
		s.siteKey[c] = prefix + Class(c).String() + ":"
	}
	return s, nil
}

// SetBatcher makes Take and TakeClaim send their script through p, a
// redisbatch.Batcher over the store's client, so that the calls of
// concurrent requests share round trips. Call it before use.
func (s *Redis) SetBatcher(p redisbatch.Processor) {
	if p != nil {
		s.proc = p
	}
}

// SetProbeInterval sets how long to wait after a failure before trying
// Redis again. Call it before use.
func (s *Redis) SetProbeInterval(d time.Duration) { s.breaker.Probe = d }

// bucketKey is prefix + class + ":" + key; keys longer than 64 bytes (they
// may come from request input) are replaced by their SHA-256.
func (s *Redis) bucketKey(key string, c Class) string {
	if key == "" {
		return s.siteKey[c]
	}
	if len(key) > 64 {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	return s.prefix + c.String() + ":" + key
}

func (s *Redis) fail(err error) error {
	if !redisbatch.IsKeyError(err) {
		s.breaker.Fail()
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

// Healthy reports whether the last contact with Redis succeeded.
func (s *Redis) Healthy() bool { return s.breaker.Healthy() }

// Take implements Store.
func (s *Redis) Take(ctx context.Context, key string, c Class, _ time.Time, maxWait time.Duration) (Result, error) {
	l := s.policy[c]
	if l.Unlimited() {
		return Result{Allowed: true}, nil
	}
	if !s.breaker.Allow() {
		return Result{}, ErrStoreUnavailable
	}
	interval := 1e6 / l.Rate // µs
	bk := s.bucketKey(key, c)
	v, err := takes.Run(ctx, s.proc, []string{bk, bk}, []any{s.interval[c], s.burst[c], max(0, maxWait.Microseconds()), "0"})
	if err == nil && v[0] < codeRefused {
		err = errUnreadable{}
	}
	if err != nil {
		return Result{}, s.fail(err)
	}
	s.breaker.Succeed()
	return s.result(l, bk, interval, v), nil
}

// result reads the script's reply v for limit l of bucket bk.
func (s *Redis) result(l Limit, bk string, interval float64, v []int64) Result {
	reset := time.Duration(v[1]) * time.Microsecond
	res := Result{Allowed: v[0] == codeAdmitted, Limit: l.Burst, Reset: reset}
	used := float64(v[1]) / interval // tokens' worth of TAT ahead of now
	res.Remaining = max(0, int(float64(l.Burst)-used))
	if res.Allowed {
		res.Delay = time.Duration(v[2]) * time.Microsecond
		if res.Delay > 0 {
			res.cancel = redisReservation{s, bk, interval}
		}
	} else {
		res.Remaining = 0
		res.RetryAfter = time.Duration(v[2]) * time.Microsecond
	}
	return res
}

// Claim is a key that TakeClaim records, with the take, in one atomic
// step: SET NX with a time to live, before the take, and the take only
// if the key was not there. It is how a replay cache's record of a
// signature and the budget the request draws on are decided in one round
// trip. In a Redis Cluster the claim's key and the bucket's must be in one
// slot. A claim's key is never a bucket's: give claims a prefix of their
// own (calls that share a script run write their buckets last).
type Claim struct {
	Key string
	TTL time.Duration // at least 1ms
	// WaitReplicas, if positive, makes TakeClaim wait (Redis's WAIT, on
	// the connection that recorded the claim, in the same round trip) for
	// that many replicas, for at most WaitTimeout, and report how many
	// acknowledged.
	WaitReplicas int
	WaitTimeout  time.Duration
}

// ClaimResult is what TakeClaim did.
type ClaimResult struct {
	// Result is the take's, when Claimed. An admitted request's token can
	// be given back (GiveBack), if the request is refused after all.
	Result
	// Tried is false when Redis was not asked: the store waits to probe
	// it again after a failure (the error is ErrStoreUnavailable). Nothing
	// was recorded or taken.
	Tried bool
	// Claimed is true when the claim's key was recorded now, and the take
	// made; false when the key was there already, and nothing was taken.
	Claimed bool
	// Replicas is how many replicas acknowledged, with WaitReplicas.
	Replicas int
}

// TakeClaim records claim and, if it was not recorded already, takes a
// token of class c for key, in one atomic script run (and, with
// WaitReplicas, WAIT in the same round trip). A claim found already
// recorded takes nothing. Class c must be limited. An error after Tried
// means the outcome is unknown: the claim may be recorded and the token
// taken.
func (s *Redis) TakeClaim(ctx context.Context, key string, c Class, maxWait time.Duration, claim Claim) (ClaimResult, error) {
	l := s.policy[c]
	if l.Unlimited() {
		return ClaimResult{}, errors.New("ratelimit: TakeClaim of an unlimited class")
	}
	if claim.TTL < time.Millisecond {
		return ClaimResult{}, errors.New("ratelimit: a claim must live at least 1ms")
	}
	if !s.breaker.Allow() {
		return ClaimResult{}, ErrStoreUnavailable
	}
	interval := 1e6 / l.Rate // µs
	bk := s.bucketKey(key, c)
	keys := []string{bk, claim.Key}
	args := []any{s.interval[c], s.burst[c], max(0, maxWait.Microseconds()), claim.TTL.Milliseconds()}
	out := ClaimResult{Tried: true}
	var v []int64
	var err error
	if claim.WaitReplicas <= 0 {
		v, err = takes.Run(ctx, s.proc, keys, args)
	} else {
		v, out.Replicas, err = s.claimAndWait(ctx, keys, args, claim)
	}
	if err == nil && v[0] == codeUnreadable {
		err = errUnreadable{}
	}
	if err != nil {
		return out, s.fail(err)
	}
	s.breaker.Succeed()
	if v[0] == codeClaimThere {
		return out, nil
	}
	out.Claimed = true
	out.Result = s.result(l, bk, interval, v)
	return out, nil
}

// GiveBack returns the token of class c that TakeClaim took for key for a
// request refused after all (best effort, on a context of its own).
func (s *Redis) GiveBack(ctx context.Context, key string, c Class) {
	if l := s.policy[c]; !l.Unlimited() {
		redisReservation{s, s.bucketKey(key, c), 1e6 / l.Rate}.cancel(ctx, time.Time{})
	}
}

// claimAndWait runs the claim script and WAIT pipelined on one connection
// (WAIT counts the replicas holding every write of its connection), not
// batched with other callers' commands, which WAIT would hold up.
func (s *Redis) claimAndWait(ctx context.Context, keys []string, args []any, claim Claim) ([]int64, int, error) {
	run := func(cmd *redis.IntSliceCmd) ([]int64, int, error) {
		var wait *redis.Cmd
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			_ = p.Process(ctx, cmd)
			wait = p.Do(ctx, "WAIT", claim.WaitReplicas, max(1, claim.WaitTimeout.Milliseconds()))
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
		n, err := wait.Int()
		if err != nil {
			return nil, 0, err
		}
		v, err := cmd.Result()
		if err == nil && len(v) != takes.Width {
			err = fmt.Errorf("ratelimit: a reply of %d integers to one call", len(v))
		}
		return v, n, err
	}
	// One call's keys and arguments are the script's.
	v, n, err := run(takeScript.IntsCmd(ctx, keys, args...))
	if redisbatch.IsNoScript(err) {
		v, n, err = run(takeScript.EvalIntsCmd(ctx, keys, args...))
	}
	return v, n, err
}

type redisReservation struct {
	s        *Redis
	key      string
	interval float64
}

func (rr redisReservation) cancel(ctx context.Context, _ time.Time) {
	// Best effort, on a context of its own: the request's is already done.
	ctx, stop := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer stop()
	_ = cancelScript.Run(ctx, rr.s.proc, []string{rr.key}, strconv.FormatFloat(rr.interval, 'f', 3, 64)).Err()
}
