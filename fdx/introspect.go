package fdx

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mxgate/mxgate/internal/refetch"
)

// Introspector checks opaque access tokens with an RFC 7662 introspection
// endpoint, authenticating as a client (Auth; client_secret_basic with
// ClientID and ClientSecret if nil). Answers are cached in a bounded cache
// keyed by the token's SHA-256: an active token for CacheFor (never past
// its exp), an inactive or invalid one for CacheFor too. Requests with the
// same token while one call for it is under way share that call.
//
// A failure of the endpoint itself (unreachable, a status other than 200,
// an answer that is not RFC 7662's) is no answer about the token, and is
// not cached; instead no call is made, for any token, until a backoff has
// passed (doubling from MinBackoff up to MaxBackoff after each failure in a
// row; a call that is answered ends it): a token without a cached answer
// gets the failure at once. So a failing endpoint gets one call per
// backoff however many distinct tokens clients send. A token with a
// cached answer keeps it throughout.
//
// An active answer must name the configured Issuer as iss if it names one
// (RFC 7662 makes iss optional; the endpoint is the configured server's);
// it must hold one of Audiences in aud, and an answer without aud is
// refused unless AllowMissingAudience is set. It is safe for concurrent
// use; fill the fields, then use it, and do not change them (Adopt
// changes the settings of an Introspector in use; Close ends it).
type Introspector struct {
	// URL is the endpoint's; if empty, Locate finds it (from the
	// authorization server's metadata) for each call.
	URL                  string
	Locate               func(context.Context) (string, error)
	ClientID             string
	ClientSecret         string
	Auth                 ClientAuth
	Issuer               string   // if set, an answer's iss, if any, must match
	Audiences            []string // if set, an answer's aud must hold one
	AllowMissingAudience bool     // an answer without aud passes the audience check
	Client               *http.Client
	CacheFor             time.Duration // default 30s
	MaxEntries           int           // default 10000
	// MinBackoff and MaxBackoff bound the wait after a failed call before
	// the next (doubling); defaults refetch.DefaultMinBackoff and
	// refetch.DefaultMaxBackoff (1s and 30s).
	MinBackoff, MaxBackoff time.Duration
	Now                    func() time.Time
	// OnCall, if set, hears the outcome of every call ("ok": the endpoint
	// answered, whether the token is active or not; "error", with the
	// error: it did not) and of every call asked for and not made, within
	// the backoff after a failure ("suppressed").
	OnCall func(outcome string, err error)

	flight singleflight.Group
	opts   atomic.Pointer[introspectOptions] // the settings in force
	once   sync.Once
	ctx    context.Context // of every call; cancelled by Close
	cancel context.CancelFunc

	mu       sync.Mutex
	cache    map[[32]byte]cached
	calls    int
	backoff  refetch.Backoff // after failed calls
	failedAt time.Time       // when the last failure that counted ended
	lastErr  error           // the last call's failure; nil once one answers
	probed   time.Time       // when Probe last called the endpoint
}

// introspectOptions are the settings of an Introspector that Adopt may
// change.
type introspectOptions struct {
	locate     func(context.Context) (string, error)
	client     *http.Client
	cacheFor   time.Duration
	maxEntries int
	minBackoff time.Duration
	maxBackoff time.Duration
	onCall     func(outcome string, err error)
}

func (in *Introspector) options() *introspectOptions {
	o := &introspectOptions{locate: in.Locate, client: in.Client, cacheFor: in.CacheFor, maxEntries: in.MaxEntries,
		minBackoff: in.MinBackoff, maxBackoff: in.MaxBackoff, onCall: in.OnCall}
	if o.cacheFor <= 0 {
		o.cacheFor = 30 * time.Second
	}
	if o.maxEntries <= 0 {
		o.maxEntries = 10000
	}
	return o
}

// init fills the settings in force from the fields, once.
func (in *Introspector) init() *introspectOptions {
	in.once.Do(func() {
		in.opts.Store(in.options())
		in.ctx, in.cancel = context.WithCancel(context.Background())
	})
	return in.opts.Load()
}

// Adopt makes the settings of o (Locate, Client, CacheFor, MaxEntries,
// MinBackoff, MaxBackoff, OnCall) those of in from now on; in keeps its
// cached answers (a changed CacheFor applies to them too: an answer is
// good for CacheFor from when it came) and its backoff, so that a new
// configuration calls no more than the old one would have. o's URL,
// client credentials, issuer, audiences and clock are not read; o is not
// used otherwise.
func (in *Introspector) Adopt(o *Introspector) {
	in.init()
	in.opts.Store(o.options())
}

// Close ends in: calls under way are cancelled, and none is made after
// (a token without a cached answer gets ErrUnavailable).
func (in *Introspector) Close() {
	in.init()
	in.cancel()
}

type cached struct {
	claims *Claims
	err    error
	at     time.Time // when the answer came
}

// until is when an answer stops being good: CacheFor after it came, and
// never past the token's exp.
func (c cached) until(cacheFor time.Duration) time.Time {
	u := c.at.Add(cacheFor)
	if c.claims != nil && !c.claims.Expiry.IsZero() && c.claims.Expiry.Before(u) {
		u = c.claims.Expiry
	}
	return u
}

// Calls returns how many introspection requests were made.
func (in *Introspector) Calls() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.calls
}

func (in *Introspector) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

func (in *Introspector) observe(outcome string, err error) {
	if f := in.opts.Load().onCall; f != nil {
		f(outcome, err)
	}
}

// lookup returns the cached answer for key, if it is still good; else,
// within the backoff after a failed call, the failure (held is true for
// either). in.mu is held.
func (in *Introspector) lookup(key [32]byte, now time.Time, o *introspectOptions) (c cached, held, suppressed bool) {
	if c, ok := in.cache[key]; ok && now.Before(c.until(o.cacheFor)) {
		return c, true, false
	}
	if in.ctx.Err() != nil {
		return cached{err: fmt.Errorf("%w: the introspection client is closed", ErrUnavailable)}, true, false
	}
	if now.Before(in.backoff.Until()) {
		return cached{err: in.lastErr}, true, true
	}
	return cached{}, false, false
}

// Introspect returns the claims of an active token.
func (in *Introspector) Introspect(ctx context.Context, token string) (*Claims, error) {
	o := in.init()
	key := sha256.Sum256([]byte(token))
	in.mu.Lock()
	c, held, suppressed := in.lookup(key, in.now(), o)
	in.mu.Unlock()
	if held {
		if suppressed {
			in.observe(refetch.Suppressed, nil)
		}
		return c.claims, c.err
	}
	ch := in.flight.DoChan(string(key[:]), func() (any, error) {
		// a call that ended while this one waited for the flight has
		// cached its answer, or failed
		in.mu.Lock()
		c, held, suppressed := in.lookup(key, in.now(), in.opts.Load())
		in.mu.Unlock()
		if held {
			if suppressed {
				in.observe(refetch.Suppressed, nil)
			}
			return c, nil
		}
		return in.ask(key, token), nil
	})
	select {
	case r := <-ch:
		c := r.Val.(cached)
		return c.claims, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// ask calls the endpoint, and caches its answer or starts (or lengthens)
// the backoff.
func (in *Introspector) ask(key [32]byte, token string) cached {
	in.mu.Lock()
	in.calls++
	in.mu.Unlock()
	o := in.opts.Load()
	started := in.now()
	claims, err, answered := in.call(in.ctx, o, token)
	now := in.now()
	c := cached{claims: claims, err: err, at: now}
	if !answered {
		in.mu.Lock()
		closed := in.ctx.Err() != nil
		if !closed {
			in.lastErr = err
			// calls that were under way together fail together: the
			// backoff doubles once for them, not once each
			if !started.Before(in.failedAt) || !now.Before(in.backoff.Until()) {
				in.failedAt = now
				in.backoff.Min, in.backoff.Max = o.minBackoff, o.maxBackoff
				in.backoff.Failed(now)
			}
		}
		in.mu.Unlock()
		if !closed { // a call Close cancelled is no outcome
			in.observe(refetch.Error, err)
		}
		return c
	}
	in.observe(refetch.OK, nil)
	in.mu.Lock()
	defer in.mu.Unlock()
	in.lastErr = nil
	in.backoff.Succeeded()
	if in.cache == nil {
		in.cache = make(map[[32]byte]cached)
	}
	if max := o.maxEntries; len(in.cache) >= max {
		for k, c := range in.cache { // first the expired
			if !now.Before(c.until(o.cacheFor)) {
				delete(in.cache, k)
			}
		}
		for k := range in.cache { // then any, down to 90 %
			if len(in.cache) < max*9/10 {
				break
			}
			delete(in.cache, k)
		}
	}
	in.cache[key] = c
	return c
}

// Failing returns the error of the last call if it failed, or nil.
func (in *Introspector) Failing() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.lastErr
}

// probeEvery is the least time between two calls Probe makes while no
// call has been answered.
const probeEvery = time.Second

// Probe checks that the endpoint answers, for a readiness check: nil if
// the last call was answered; within the backoff after a failed call,
// that failure; otherwise (no call yet, or the backoff passed) it asks
// about a random token that no server issued, at most once a second.
func (in *Introspector) Probe(ctx context.Context) error {
	in.init()
	in.mu.Lock()
	if in.calls > 0 && in.lastErr == nil {
		in.mu.Unlock()
		return nil
	}
	now := in.now()
	if now.Before(in.backoff.Until()) || (!in.probed.IsZero() && now.Sub(in.probed) < probeEvery) {
		err := in.lastErr
		in.mu.Unlock()
		if err == nil {
			err = fmt.Errorf("%w: introspection endpoint not checked yet", ErrUnavailable)
		}
		return err
	}
	in.probed = now
	in.mu.Unlock()
	var nonce [24]byte
	_, _ = rand.Read(nonce[:])
	token := "mxgate-readiness-" + base64.RawURLEncoding.EncodeToString(nonce[:])
	key := sha256.Sum256([]byte(token))
	ch := in.flight.DoChan(string(key[:]), func() (any, error) {
		c := in.ask(key, token)
		in.mu.Lock()
		delete(in.cache, key) // the probe's own answer is of no use
		in.mu.Unlock()
		return c, nil
	})
	select {
	case r := <-ch:
		if c := r.Val.(cached); c.err != nil && errors.Is(c.err, ErrUnavailable) {
			return c.err
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: introspection endpoint did not answer in time", ErrUnavailable)
	}
}

// call asks the endpoint; answered is false for a failure of the endpoint
// itself (which is cached only briefly).
func (in *Introspector) call(ctx context.Context, o *introspectOptions, token string) (*Claims, error, bool) {
	unavailable := func(format string, args ...any) (*Claims, error, bool) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrUnavailable}, args...)...), false
	}
	endpoint := in.URL
	if endpoint == "" {
		if o.locate == nil {
			return unavailable("no introspection endpoint")
		}
		var err error
		if endpoint, err = o.locate(ctx); err != nil {
			return unavailable("locating the introspection endpoint: %s", Cause(err))
		}
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	h := http.Header{}
	auth := in.Auth
	if auth == nil {
		auth = ClientSecretBasic{ClientID: in.ClientID, Secret: in.ClientSecret}
	}
	if err := auth.Authenticate(h, form); err != nil {
		return unavailable("authenticating to the introspection endpoint: %s", Cause(err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return unavailable("a bad introspection URL (%s)", RedactURL(endpoint))
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	client := o.client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return unavailable("introspection endpoint unreachable: %s", Cause(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return unavailable("introspection endpoint %s answered %d", RedactURL(endpoint), resp.StatusCode)
	}
	var v struct {
		Active   *bool             `json:"active"`
		Scope    string            `json:"scope"`
		ClientID string            `json:"client_id"`
		Sub      string            `json:"sub"`
		Iss      *string           `json:"iss"`
		Aud      json.RawMessage   `json:"aud"`
		Exp      *float64          `json:"exp"`
		Nbf      *float64          `json:"nbf"`
		Cnf      map[string]string `json:"cnf"` // its shape; confirmation reads it
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil:
		return unavailable("reading the introspection answer: %s", Cause(err))
	case len(raw) > maxAnswer:
		return unavailable("the introspection answer is larger than %d bytes", maxAnswer)
	}
	var all map[string]any
	if json.Unmarshal(raw, &all) != nil || json.Unmarshal(raw, &v) != nil || v.Active == nil {
		return unavailable("the introspection answer is not a JSON object with a boolean active and claims of their RFC 7662 types")
	}
	now := in.now()
	switch {
	case !*v.Active:
		return nil, invalid("token is not active"), true
	case v.Exp != nil && now.After(time.Unix(int64(*v.Exp), 0)):
		return nil, invalid("expired"), true
	case v.Nbf != nil && now.Before(time.Unix(int64(*v.Nbf), 0)):
		return nil, invalid("not yet valid"), true
	case in.Issuer != "" && v.Iss != nil && *v.Iss != in.Issuer:
		return nil, invalid("wrong issuer"), true
	case len(in.Audiences) > 0 && !hasAudience(v.Aud):
		if !in.AllowMissingAudience {
			return nil, invalid("aud missing in the introspection answer"), true
		}
	case len(in.Audiences) > 0 && !audienceHolds(v.Aud, in.Audiences):
		return nil, invalid("wrong audience"), true
	}
	iss := in.Issuer
	if v.Iss != nil {
		iss = *v.Iss
	}
	x5t, jkt, err := confirmation(all)
	if err != nil {
		return nil, err, true
	}
	c := &Claims{Issuer: iss, Subject: v.Sub, ClientID: v.ClientID, Scopes: strings.Fields(v.Scope), CertThumbprint: x5t, KeyThumbprint: jkt, All: all}
	if v.Exp != nil {
		c.Expiry = time.Unix(int64(*v.Exp), 0)
	}
	return c, nil, true
}

// maxAnswer bounds an introspection answer.
const maxAnswer = 1 << 20

// hasAudience reports whether an answer's aud is present: not absent, not
// null, not an empty string or list.
func hasAudience(raw json.RawMessage) bool {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch a := v.(type) {
	case string:
		return a != ""
	case []any:
		return len(a) > 0
	}
	return v != nil
}

func audienceHolds(raw json.RawMessage, want []string) bool {
	var list []string
	var one string
	if json.Unmarshal(raw, &one) == nil {
		list = []string{one}
	} else if json.Unmarshal(raw, &list) != nil {
		return false
	}
	for _, a := range list {
		for _, w := range want {
			if a == w {
				return true
			}
		}
	}
	return false
}
