package fdx

import (
	"context"
	"crypto/sha256"
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
// endpoint, authenticating as a client with Basic credentials. Answers are
// cached in a bounded cache keyed by the token's SHA-256: an active token
// for CacheFor (never past its exp), an inactive or invalid one for
// CacheFor too, and a failure of the endpoint itself for a second (a
// client repeating a token during an outage costs one call a second, not
// one per request). Requests with the same token while one call for it is
// under way share that call. It is safe for concurrent use; fill the
// fields, then use it, and do not change them.
type Introspector struct {
	URL, ClientID, ClientSecret string
	Issuer                      string   // if set, an answer's iss must match
	Audiences                   []string // if set, an answer's aud must hold one
	Client                      *http.Client
	CacheFor                    time.Duration // default 30s
	MaxEntries                  int           // default 10000
	Now                         func() time.Time
	// OnCall, if set, hears the outcome of every call ("ok": the endpoint
	// answered, whether the token is active or not; "error": it did not)
	// and of every request answered from a cached failure ("suppressed").
	OnCall func(outcome string)

	flight singleflight.Group

	mu    sync.Mutex
	cache map[[32]byte]cached
	calls int
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

func (in *Introspector) observe(outcome string) {
	if in.OnCall != nil {
		in.OnCall(outcome)
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
			in.observe(refetch.Suppressed)
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
	if answered {
		in.observe(refetch.OK)
		ttl := in.CacheFor
		if ttl <= 0 {
			ttl = 30 * time.Second
		}
		c.until = now.Add(ttl)
		if claims != nil && !claims.Expiry.IsZero() && claims.Expiry.Before(c.until) {
			c.until = claims.Expiry
		}
	} else {
		in.observe(refetch.Error)
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

// call asks the endpoint; answered is false for a failure of the endpoint
// itself (which is cached only briefly).
func (in *Introspector) call(ctx context.Context, token string) (*Claims, error, bool) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("fdx: introspection: %w", err), false
	}
	req.SetBasicAuth(url.QueryEscape(in.ClientID), url.QueryEscape(in.ClientSecret))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	client := in.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: introspection endpoint unreachable", ErrUnavailable), false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: introspection endpoint answered %d", ErrUnavailable, resp.StatusCode), false
	}
	var v struct {
		Active   bool            `json:"active"`
		Scope    string          `json:"scope"`
		ClientID string          `json:"client_id"`
		Sub      string          `json:"sub"`
		Iss      string          `json:"iss"`
		Aud      json.RawMessage `json:"aud"`
		Exp      *float64        `json:"exp"`
		Nbf      *float64        `json:"nbf"`
		Cnf      struct {
			X5tS256 string `json:"x5t#S256"`
		} `json:"cnf"`
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || json.Unmarshal(raw, &v) != nil {
		return nil, fmt.Errorf("%w: introspection answer does not parse", ErrUnavailable), false
	}
	var all map[string]any
	_ = json.Unmarshal(raw, &all)
	now := in.now()
	switch {
	case !v.Active:
		return nil, invalid("token is not active"), true
	case v.Exp != nil && now.After(time.Unix(int64(*v.Exp), 0)):
		return nil, invalid("expired"), true
	case v.Nbf != nil && now.Before(time.Unix(int64(*v.Nbf), 0)):
		return nil, invalid("not yet valid"), true
	case in.Issuer != "" && v.Iss != in.Issuer:
		return nil, invalid("wrong issuer"), true
	case len(in.Audiences) > 0 && !audienceHolds(v.Aud, in.Audiences):
		return nil, invalid("wrong audience"), true
	}
	c := &Claims{Issuer: v.Iss, Subject: v.Sub, ClientID: v.ClientID, Scopes: strings.Fields(v.Scope), CertThumbprint: v.Cnf.X5tS256, All: all}
	if v.Exp != nil {
		c.Expiry = time.Unix(int64(*v.Exp), 0)
	}
	return c, nil, true
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
