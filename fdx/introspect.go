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
)

// Introspector checks opaque access tokens with an RFC 7662 introspection
// endpoint, authenticating as a client with Basic credentials. Answers are
// cached for CacheFor (never past the token's exp), in a bounded cache
// keyed by the token's SHA-256. It is safe for concurrent use.
type Introspector struct {
	URL, ClientID, ClientSecret string
	Issuer                      string   // if set, an answer's iss must match
	Audiences                   []string // if set, an answer's aud must hold one
	Client                      *http.Client
	CacheFor                    time.Duration // default 30s
	MaxEntries                  int           // default 10000
	Now                         func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]cached
	calls int
}

type cached struct {
	claims *Claims
	err    error
	until  time.Time
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

// Introspect returns the claims of an active token.
func (in *Introspector) Introspect(ctx context.Context, token string) (*Claims, error) {
	key := sha256.Sum256([]byte(token))
	now := in.now()
	in.mu.Lock()
	if c, ok := in.cache[key]; ok && now.Before(c.until) {
		in.mu.Unlock()
		return c.claims, c.err
	}
	in.calls++
	in.mu.Unlock()

	claims, err, cacheable := in.call(ctx, token)
	if !cacheable {
		return nil, err
	}
	ttl := in.CacheFor
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	until := now.Add(ttl)
	if claims != nil && !claims.Expiry.IsZero() && claims.Expiry.Before(until) {
		until = claims.Expiry
	}
	in.mu.Lock()
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
	in.cache[key] = cached{claims, err, until}
	in.mu.Unlock()
	return claims, err
}

// call asks the endpoint; cacheable is false for a failure of the endpoint
// itself (which must not stick).
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
