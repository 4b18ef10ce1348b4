package fdx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mxgate/mxgate/internal/refetch"
)

// JWKS is a KeySource over an authorization server's JSON Web Key Set.
// Keys are fetched on first use and cached. A token naming a key id not in
// the cache makes the set be fetched again: once however many tokens name
// unknown key ids at the same time, and at most once per MinRefresh (a
// token that arrives when the next refetch is at most a second away waits
// for it, so that a key published and used within MinRefresh of the last
// refetch is found). A set older than MaxAge is fetched again in the
// background on its next use, so that a key the server removed stops being
// accepted. After a failed fetch none is made until a backoff (doubling
// from a second up to 30s) has passed. During an outage the cached keys
// keep working; an unknown key id is an invalid token. It is safe for
// concurrent use; fill the fields, then use it, and do not change them
// (Adopt changes the settings of a JWKS in use; Close ends it).
type JWKS struct {
	// URL is the key set's; if empty, Locate finds it (from the
	// authorization server's metadata) for each fetch.
	URL    string
	Locate func(context.Context) (string, error)
	Client *http.Client // default: DefaultTimeout, no redirects
	// MinRefresh is the least time between two fetches made for unknown
	// key ids. Default: DefaultMinRefresh.
	MinRefresh time.Duration
	// MaxAge is the age past which the set is fetched again, in the
	// background. Default: DefaultMaxAge.
	MaxAge   time.Duration
	MaxBytes int64 // default 1 MiB
	Now      func() time.Time
	// OnFetch, if set, hears the outcome of every fetch ("ok"; "error",
	// with its error) and of every fetch asked for and not made
	// ("suppressed").
	OnFetch func(outcome string, err error)

	once sync.Once
	set  refetch.Value[keySet]
	opts atomic.Pointer[jwksOptions] // the settings in force
	// sleep waits d or until ctx ends; tests replace it to move their
	// clock instead.
	sleep func(ctx context.Context, d time.Duration) error

	mu      sync.Mutex
	fetches int
}

// jwksOptions are the settings of a JWKS that Adopt may change.
type jwksOptions struct {
	locate   func(context.Context) (string, error)
	client   *http.Client
	maxAge   time.Duration
	maxBytes int64
	onFetch  func(outcome string, err error)
}

func (j *JWKS) options() *jwksOptions {
	o := &jwksOptions{locate: j.Locate, client: j.Client, maxAge: j.MaxAge, maxBytes: j.MaxBytes, onFetch: j.OnFetch}
	if o.maxAge <= 0 {
		o.maxAge = DefaultMaxAge
	}
	if o.maxBytes <= 0 {
		o.maxBytes = 1 << 20
	}
	return o
}

// limits are the refetch limits of MinRefresh: the interval, and the
// backoff after a failure (from a second, or MinRefresh if shorter, up to
// 30s, or MinRefresh if longer).
func (j *JWKS) limits() (interval, minBackoff, maxBackoff time.Duration) {
	interval = j.MinRefresh
	if interval <= 0 {
		interval = DefaultMinRefresh
	}
	return interval, min(interval, retryAfterFailure), max(interval, maxRetryAfterFailure)
}

// Adopt makes the settings of o (MinRefresh, MaxAge, MaxBytes, Client,
// Locate, OnFetch) those of j from now on; j keeps its keys and what it
// knows of past fetches (the last refetch for an unknown kid, a backoff
// under way), so that a new configuration fetches no more than the old
// one would have. o's URL and clock are not read; o is not used
// otherwise.
func (j *JWKS) Adopt(o *JWKS) {
	v := j.value()
	j.opts.Store(o.options())
	v.SetLimits(o.limits())
}

// Close ends j: a fetch under way is cancelled, and none is made after;
// the keys fetched before stay usable.
func (j *JWKS) Close() { j.value().Close() }

// keySet is a fetched set and when it was fetched.
type keySet struct {
	keys map[string]jose.JSONWebKey
	at   time.Time
}

// Defaults of JWKS.
const (
	DefaultMinRefresh = time.Second
	DefaultMaxAge     = 5 * time.Minute
)

// retryAfterFailure is the first wait after a failed fetch (or MinRefresh,
// if shorter); it doubles up to maxRetryAfterFailure.
const (
	retryAfterFailure    = time.Second
	maxRetryAfterFailure = 30 * time.Second
)

// maxKeyWait is the longest a token naming an unknown key id waits for
// the next refetch to be allowed.
const maxKeyWait = time.Second

// ErrUnknownKey is returned when no key of a freshly fetched set matches a
// token's key id.
var ErrUnknownKey = invalid("unknown signing key")

func (j *JWKS) value() *refetch.Value[keySet] {
	j.once.Do(func() {
		j.opts.Store(j.options())
		j.set.MinInterval, j.set.MinBackoff, j.set.MaxBackoff = j.limits()
		j.set.Now = j.now
		j.set.Observe = func(outcome string) {
			if f := j.opts.Load().onFetch; f != nil {
				f(outcome, errorOf(outcome, &j.set))
			}
		}
	})
	return &j.set
}

func (j *JWKS) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}

// HasKeys reports whether the set holds a signing key.
func (j *JWKS) HasKeys() bool {
	set, _ := j.value().Load()
	return len(set.keys) > 0
}

// Failing returns the error of the last fetch if it failed, or nil.
func (j *JWKS) Failing() error { return j.value().Failing() }

// Fetches returns how many times the set was fetched.
func (j *JWKS) Fetches() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetches
}

// Key implements KeySource.
func (j *JWKS) Key(ctx context.Context, kid string, alg jose.SignatureAlgorithm) (any, error) {
	v := j.value()
	set, gen := v.Load()
	if k, ok := lookup(set.keys, kid, alg); ok {
		if j.now().Sub(set.at) >= j.opts.Load().maxAge {
			v.Prefetch(ctx, gen, j.fetch)
		}
		return k, nil
	}
	var err error
	if gen == 0 { // never fetched: fetch, unless within the backoff
		set, _, _ = v.Renew(ctx, gen, j.fetch)
	} else { // an unknown kid: refetch, at most once per MinRefresh
		set, gen, err = v.Refused(ctx, gen, j.fetch)
		if errors.Is(err, refetch.ErrTooSoon) {
			if wait := v.NextForced().Sub(j.now()); wait > 0 && wait <= maxKeyWait && j.wait(ctx, wait) == nil {
				set, _, _ = v.Refused(ctx, gen, j.fetch)
			}
		}
	}
	if k, ok := lookup(set.keys, kid, alg); ok {
		return k, nil
	}
	if len(set.keys) == 0 { // no key at all: the set could not be fetched to know
		return nil, fmt.Errorf("%w: the JWKS could not be fetched", ErrUnavailable)
	}
	return nil, ErrUnknownKey
}

// wait waits d, or until ctx ends.
func (j *JWKS) wait(ctx context.Context, d time.Duration) error {
	if j.sleep != nil {
		return j.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lookup finds a signing key for kid usable with alg. A token without a
// kid may use the only signing key of a set that has exactly one.
func lookup(keys map[string]jose.JSONWebKey, kid string, alg jose.SignatureAlgorithm) (any, bool) {
	var found *jose.JSONWebKey
	if kid != "" {
		if k, ok := keys[kid]; ok {
			found = &k
		}
	} else if len(keys) == 1 {
		for _, k := range keys {
			found = &k
		}
	}
	if found == nil || (found.Algorithm != "" && found.Algorithm != string(alg)) {
		return nil, false
	}
	return found.Key, true
}

// Refresh fetches the set now, unless a fetch is under way (whose result
// it waits for) or the backoff after a failed fetch has not passed (it
// returns that failure). On failure the cached keys stay.
func (j *JWKS) Refresh(ctx context.Context) error {
	v := j.value()
	_, gen := v.Load()
	_, _, err := v.Renew(ctx, gen, j.fetch)
	return err
}

func (j *JWKS) fetch(ctx context.Context) (keySet, error) {
	j.mu.Lock()
	j.fetches++
	j.mu.Unlock()
	o := j.opts.Load()
	u := j.URL
	if u == "" {
		if o.locate == nil {
			return keySet{}, errors.New("fdx: no JWKS URL")
		}
		var err error
		if u, err = o.locate(ctx); err != nil {
			return keySet{}, fmt.Errorf("fdx: locating the JWKS: %w", err)
		}
	}
	raw, err := get(ctx, o.client, u, "JWKS", o.maxBytes)
	if err != nil {
		return keySet{}, err
	}
	// each key on its own: one of a type go-jose does not know (a newer
	// algorithm published beside ours) is skipped, not the whole set
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return keySet{}, fmt.Errorf("fdx: the JWKS from %s does not parse as a JSON Web Key Set", RedactURL(u))
	}
	keys := make(map[string]jose.JSONWebKey)
	for _, rawKey := range set.Keys {
		var k jose.JSONWebKey
		if k.UnmarshalJSON(rawKey) != nil || k.Use == "enc" || !k.Valid() {
			continue
		}
		pub := k.Public()
		if !pub.Valid() || !pub.IsPublic() {
			continue
		}
		keys[k.KeyID] = pub
	}
	if len(keys) == 0 {
		return keySet{}, fmt.Errorf("fdx: the JWKS from %s holds no usable signing key", RedactURL(u))
	}
	return keySet{keys: keys, at: j.now()}, nil
}
