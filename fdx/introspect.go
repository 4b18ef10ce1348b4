package fdx

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mxgate/mxgate/internal/refetch"
)

// Introspector checks opaque access tokens with an RFC 7662 introspection
// endpoint, authenticating as a client (Auth; client_secret_basic with
// ClientID and ClientSecret if nil). Answers are cached in a bounded cache
// keyed by the token's SHA-256: an active token for CacheFor (never past
// its exp), an inactive or invalid one for CacheFor too, and a failure of
// the endpoint itself for a second (a client repeating a token during an
// outage costs one call a second, not one per request). Requests with the
// same token while one call for it is under way share that call.
//
// An active answer must name the configured Issuer as iss if it names one
// (RFC 7662 makes iss optional; the endpoint is the configured server's);
// it must hold one of Audiences in aud, and an answer without aud is
// refused unless AllowMissingAudience is set. It is safe for concurrent
// use; fill the fields, then use it, and do not change them.
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
	Now                  func() time.Time
	// OnCall, if set, hears the outcome of every call ("ok": the endpoint
	// answered, whether the token is active or not; "error", with the
	// error: it did not) and of every request answered from a cached
	// failure ("suppressed").
	OnCall func(outcome string, err error)

	flight singleflight.Group

	mu      sync.Mutex
	cache   map[[32]byte]cached
	calls   int
	lastErr error     // the last call's failure; nil once one answers
	probed  time.Time // when Probe last called the endpoint
}

// failureCacheFor is how long a failure of the endpoint is the answer for
// the token that met it.
const failureCacheFor = time.Second

type cached struct {
	claims *Claims
	err    error
	until  time.Time
	failed bool // the endpoint failed: no answer about the token
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
	if in.OnCall != nil {
		in.OnCall(outcome, err)
	}
}

// lookup returns the cached answer for key, if it is still good.
func (in *Introspector) lookup(key [32]byte, now time.Time) (cached, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, ok := in.cache[key]
	return c, ok && now.Before(c.until)
}

// Introspect returns the claims of an active token.
func (in *Introspector) Introspect(ctx context.Context, token string) (*Claims, error) {
	key := sha256.Sum256([]byte(token))
	if c, ok := in.lookup(key, in.now()); ok {
		if c.failed {
			in.observe(refetch.Suppressed, nil)
		}
		return c.claims, c.err
	}
	ch := in.flight.DoChan(string(key[:]), func() (any, error) {
		// a call that ended while this one waited for the flight has
		// cached its answer
		if c, ok := in.lookup(key, in.now()); ok {
			return c, nil
		}
		return in.ask(context.WithoutCancel(ctx), key, token), nil
	})
	select {
	case r := <-ch:
		c := r.Val.(cached)
		return c.claims, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// ask calls the endpoint and caches its answer.
func (in *Introspector) ask(ctx context.Context, key [32]byte, token string) cached {
	in.mu.Lock()
	in.calls++
	in.mu.Unlock()
	claims, err, answered := in.call(ctx, token)
	now := in.now()
	c := cached{claims: claims, err: err, failed: !answered}
	in.mu.Lock()
	if answered {
		in.lastErr = nil
	} else {
		in.lastErr = err
	}
	in.mu.Unlock()
	if answered {
		in.observe(refetch.OK, nil)
		ttl := in.CacheFor
		if ttl <= 0 {
			ttl = 30 * time.Second
		}
		c.until = now.Add(ttl)
		if claims != nil && !claims.Expiry.IsZero() && claims.Expiry.Before(c.until) {
			c.until = claims.Expiry
		}
	} else {
		in.observe(refetch.Error, err)
		c.until = now.Add(failureCacheFor)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cache == nil {
		in.cache = make(map[[32]byte]cached)
	}
	max := in.MaxEntries
	if max <= 0 {
		max = 10000
	}
	if len(in.cache) >= max {
		for k, c := range in.cache { // first the expired
			if !now.Before(c.until) {
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

// Probe checks that the endpoint answers, for a readiness check: nil if
// the last call was answered; otherwise (no call yet, or the last one
// failed) it asks about a random token that no server issued, at most
// once a second (within it, the last failure is the answer).
func (in *Introspector) Probe(ctx context.Context) error {
	in.mu.Lock()
	if in.calls > 0 && in.lastErr == nil {
		in.mu.Unlock()
		return nil
	}
	now := in.now()
	if !in.probed.IsZero() && now.Sub(in.probed) < failureCacheFor {
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
		return in.ask(context.WithoutCancel(ctx), key, token), nil
	})
	select {
	case r := <-ch:
		if c := r.Val.(cached); c.failed {
			return c.err
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: introspection endpoint did not answer in time", ErrUnavailable)
	}
}

// call asks the endpoint; answered is false for a failure of the endpoint
// itself (which is cached only briefly).
func (in *Introspector) call(ctx context.Context, token string) (*Claims, error, bool) {
	unavailable := func(format string, args ...any) (*Claims, error, bool) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrUnavailable}, args...)...), false
	}
	endpoint := in.URL
	if endpoint == "" {
		if in.Locate == nil {
			return unavailable("no introspection endpoint")
		}
		var err error
		if endpoint, err = in.Locate(ctx); err != nil {
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
	client := in.Client
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
