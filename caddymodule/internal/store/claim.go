package store

import (
	"context"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/ratelimit"
	"github.com/mxgate/mxgate/replay"
)

// A ReplayClaim is a signature that mdx_hmac verify has found authentic
// and leaves to the mx_rate_limit right after it to record: that handler
// records it in the same Redis call that takes the request's token, so
// that a signed request costs one round trip, not two. It is what the
// replay cache would have decided on its own, decided at the same point
// of the request (before anything after mdx_hmac verify sees it) and with
// the same outcome:
//
//   - a signature already recorded within the window (by this replica, or
//     in Redis by any) is refused by mdx_hmac (412), and no token is
//     taken;
//   - a fresh one is recorded, then the budget decides; a request the
//     budget refuses (429) keeps its signature recorded, as when the two
//     decided in turn: its client signs again to retry;
//   - while Redis cannot be reached, each directive does what its
//     on_store_error says, the replay cache first (local: this replica's
//     cache decides and the signature is written back later; deny: 503,
//     and no token is taken), then the budget (local: this replica's
//     buckets; deny: 503). An answer lost after Redis ran the script
//     leaves the signature recorded and the token taken: the request may
//     be refused once (its client signs again), never a replay admitted.
//
// mdx_hmac verify makes a claim only when the store's app has found, in
// the loaded configuration, that the very next handler of every request
// it passes is that mx_rate_limit, on the same Redis client (see pair.go);
// the mx_rate_limit decides every claim it finds before anything else,
// whichever way the request goes.
type ReplayClaim struct {
	decider caddyhttp.MiddlewareHandler
	key     replay.Key
	now     time.Time
	cache   replay.Store
	verdict Verdict
	decided bool
}

// Verdict answers a request for the replay cache's outcome: true if the
// request may go on; otherwise it has written mdx_hmac verify's refusal
// and returns false and what ServeHTTP returns.
type Verdict func(w http.ResponseWriter, r *http.Request, fresh bool, err error) (bool, error)

// NewReplayClaim returns the claim of key, seen at now, on cache, to be
// decided by decider; verdict answers its outcome.
func NewReplayClaim(decider caddyhttp.MiddlewareHandler, cache replay.Store, key replay.Key, now time.Time, verdict Verdict) *ReplayClaim {
	return &ReplayClaim{decider: decider, key: key, now: now, cache: cache, verdict: verdict}
}

type claimCtxKey struct{}

// claimVar is the request variable (caddyhttp.VarsCtxKey) that carries a
// claim from mdx_hmac verify to the handler right after it. A variable
// costs a map entry; a context value would cost a copy of the request.
const claimVar = "mxgate.replay_claim"

// WithClaim returns r carrying c, for the handler after it: in the
// request's variables when it has them (every request a Caddy server
// serves does), in a copy of r with c in its context otherwise.
func WithClaim(r *http.Request, c *ReplayClaim) *http.Request {
	if vars, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		vars[claimVar] = c
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), claimCtxKey{}, c))
}

// PendingClaim returns r's claim if it is still to be decided.
func PendingClaim(r *http.Request) *ReplayClaim {
	ctx := r.Context()
	c, _ := ctx.Value(claimCtxKey{}).(*ReplayClaim)
	if vars, ok := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any); ok && c == nil {
		c, _ = vars[claimVar].(*ReplayClaim)
	}
	if c == nil || c.decided {
		return nil
	}
	return c
}

// String is what a placeholder of the request's variables shows of c
// ({http.vars.mxgate.replay_claim}): never the record's key.
func (c *ReplayClaim) String() string {
	if c.decided {
		return "replay record (decided)"
	}
	return "replay record (pending)"
}

// Decided reports whether c has been decided.
func (c *ReplayClaim) Decided() bool { return c.decided }

// For reports whether h is the handler c was left to.
func (c *ReplayClaim) For(h caddyhttp.MiddlewareHandler) bool { return c.decider == h }

// Decide decides c on its own: the replay cache records the signature as
// mdx_hmac verify would have (one round trip for a Redis store). It
// returns false, with ServeHTTP's error, when the request was refused.
func (c *ReplayClaim) Decide(w http.ResponseWriter, r *http.Request) (bool, error) {
	c.decided = true
	fresh, err := c.cache.Check(r.Context(), c.key, c.now)
	return c.verdict(w, r, fresh, err)
}

// Decision is the outcome of DecideWith.
type Decision struct {
	// Refused: the replay cache refused the request, and mdx_hmac's
	// refusal is written; ServeHTTP returns Err.
	Refused bool
	Err     error
	// Took: the budget was decided too, with Res and TakeErr as
	// Store.Take returns them; otherwise the caller takes the token.
	Took    bool
	Res     ratelimit.Result
	TakeErr error
}

// DecideWith decides c and, in the same Redis call, takes a token of
// class for key from shared, the Redis of fb (the budget's store): the
// replay record first, the token only for a fresh signature (see
// ReplayClaim). now and maxWait are the budget's.
func (c *ReplayClaim) DecideWith(w http.ResponseWriter, r *http.Request, shared *ratelimit.Redis, fb *ratelimit.Fallback,
	key string, class ratelimit.Class, now time.Time, maxWait time.Duration) Decision {
	c.decided = true
	ctx := r.Context()
	tiered, ok := c.cache.(*replay.Tiered)
	if !ok || tiered.Full(c.now) {
		// A full cache refuses a fresh signature after Redis has recorded
		// it: decided on its own, so that no token is taken for it.
		fresh, err := c.cache.Check(ctx, c.key, c.now)
		return c.decision(w, r, fresh, err)
	}
	var (
		cr    ratelimit.ClaimResult
		terr  error
		tried bool
	)
	rec := func(ctx context.Context, name string, ttl time.Duration, wait int, waitTimeout time.Duration) (bool, int, error) {
		cr, terr = shared.TakeClaim(ctx, key, class, maxWait, ratelimit.Claim{Key: name, TTL: ttl, WaitReplicas: wait, WaitTimeout: waitTimeout})
		if !cr.Tried {
			// The budget's store is waiting to probe Redis again: the
			// signature is recorded on its own, the token taken after.
			return tiered.Shared().Record(ctx, name, ttl, wait, waitTimeout)
		}
		tried = true
		if terr != nil {
			return false, 0, terr
		}
		return cr.Claimed, cr.Replicas, nil
	}
	fresh, err := tiered.CheckVia(ctx, c.key, c.now, rec)
	admitted := err == nil && fresh
	var d Decision
	if tried {
		d.Took = true
		switch {
		case terr != nil:
			if fb.Observer != nil {
				fb.Observer.Failed(terr)
			}
			if admitted { // the replay cache decided locally
				if fb.FailClosed {
					d.TakeErr = terr // wraps ErrStoreUnavailable
				} else {
					d.Res, d.TakeErr = fb.Local.Take(ctx, key, class, now, maxWait)
				}
			}
		default:
			if fb.Observer != nil {
				fb.Observer.Succeeded()
			}
			switch {
			case cr.Claimed && admitted:
				d.Res = cr.Result
			case cr.Claimed && cr.Allowed:
				// Refused after all (replicas short, or the local cache
				// full or racing): a refused request keeps no token.
				shared.GiveBack(ctx, key, class)
			}
		}
	}
	if ok, herr := c.verdict(w, r, fresh, err); !ok {
		d.Refused, d.Err = true, herr
	}
	return d
}

func (c *ReplayClaim) decision(w http.ResponseWriter, r *http.Request, fresh bool, err error) Decision {
	if ok, herr := c.verdict(w, r, fresh, err); !ok {
		return Decision{Refused: true, Err: herr}
	}
	return Decision{}
}
