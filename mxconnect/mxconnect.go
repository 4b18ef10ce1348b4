// Package mxconnect obtains and caches the bearer tokens of the MX Connect
// APIs: a JWT from the Security API
//
//	POST https://api.mxconnect.com/security/v1/apiKey/authenticate
//	Authorization: Basic base64(username:password)
//	{"value":"<api key>"}          ->  {"token":"<JWT>"}
//
// valid for ten minutes. A Source caches the token, refreshes it before
// its exp claim (read, never trusted for anything else) in the background
// while the old one is still good, fetches at most once at a time however
// many callers need it, and after a failure fails fast, with bounded
// exponential backoff, rather than calling the Security API per request.
package mxconnect

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// DefaultEndpoint is MX Connect's Security API.
const DefaultEndpoint = "https://api.mxconnect.com/security/v1/apiKey/authenticate"

// DefaultLifetime is a token's lifetime when it carries no exp claim.
const DefaultLifetime = 10 * time.Minute

// Errors of Token. Their texts carry the reason, never a credential.
var (
	// ErrUnavailable: the Security API could not be reached or answered 5xx.
	ErrUnavailable = errors.New("mxconnect: Security API unavailable")
	// ErrRefused: the Security API refused the credentials (401 or 403).
	ErrRefused = errors.New("mxconnect: Security API refused the credentials")
	// ErrBadAnswer: the Security API answered, but not with a token.
	ErrBadAnswer = errors.New("mxconnect: Security API answered without a token")
)

// Source hands out MX Connect tokens. It is safe for concurrent use. The
// zero value is not usable: fill the exported fields and call Token.
type Source struct {
	Endpoint      string        // default DefaultEndpoint
	Username      string        // Basic user
	Password      string        // Basic password
	APIKey        string        // sent as {"value": APIKey}
	RefreshBefore time.Duration // refresh this long before exp; default 1m
	Client        *http.Client  // default: a client with a 5s timeout
	Now           func() time.Time
	// MinBackoff and MaxBackoff bound the wait after a failed fetch before
	// the next (doubling); defaults 1s and 30s.
	MinBackoff, MaxBackoff time.Duration

	flight singleflight.Group

	mu        sync.Mutex
	token     string
	expires   time.Time
	failures  int
	retryAt   time.Time // no fetch before this after a failure
	lastErr   error
	refreshes int // fetches that reached the Security API, for tests and metrics
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Token returns a valid token: the cached one (starting a background
// refresh when it is within RefreshBefore of expiry), or a fresh one. While
// the Security API is failing, it returns the last error at once until the
// backoff has passed.
func (s *Source) Token(ctx context.Context) (string, error) {
	now := s.now()
	s.mu.Lock()
	tok, exp := s.token, s.expires
	refreshAt := exp.Add(-s.refreshBefore())
	blocked := now.Before(s.retryAt)
	lastErr := s.lastErr
	s.mu.Unlock()

	switch {
	case tok != "" && now.Before(refreshAt):
		return tok, nil
	case tok != "" && now.Before(exp):
		if !blocked {
			go s.fetch(context.WithoutCancel(ctx)) // refresh ahead, keep serving
		}
		return tok, nil
	case blocked:
		return "", lastErr
	}
	ch := s.flight.DoChan("token", func() (any, error) { return s.fetchNow(context.WithoutCancel(ctx)) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// fetch refreshes through the single flight, discarding the result.
func (s *Source) fetch(ctx context.Context) {
	_, _, _ = s.flight.Do("token", func() (any, error) { return s.fetchNow(ctx) })
}

// Invalidate drops tok if it is still the cached token (an upstream
// answered 401 to it), so that the next Token fetches a fresh one.
func (s *Source) Invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == tok {
		s.token, s.expires = "", time.Time{}
	}
}

// Refreshes returns how many fetches reached the Security API.
func (s *Source) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

func (s *Source) refreshBefore() time.Duration {
	if s.RefreshBefore > 0 {
		return s.RefreshBefore
	}
	return time.Minute
}

// fetchNow calls the Security API once (the caller holds the flight).
func (s *Source) fetchNow(ctx context.Context) (string, error) {
	s.mu.Lock()
	if tok := s.token; tok != "" && s.now().Before(s.expires.Add(-s.refreshBefore())) {
		s.mu.Unlock()
		return tok, nil // another flight just refreshed it
	}
	s.refreshes++
	s.mu.Unlock()

	tok, err := s.call(ctx)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures++
		s.lastErr = err
		s.retryAt = now.Add(s.backoff())
		return "", err
	}
	s.failures, s.lastErr, s.retryAt = 0, nil, time.Time{}
	s.token = tok
	s.expires = expiry(tok, now)
	return tok, nil
}

func (s *Source) backoff() time.Duration {
	lo, hi := s.MinBackoff, s.MaxBackoff
	if lo <= 0 {
		lo = time.Second
	}
	if hi < lo {
		hi = max(lo, 30*time.Second)
	}
	d := lo << min(s.failures-1, 20)
	return min(d, hi)
}

// call performs the Security API request.
func (s *Source) call(ctx context.Context) (string, error) {
	endpoint := s.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	body, _ := json.Marshal(map[string]string{"value": s.APIKey})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("%w: bad endpoint", ErrUnavailable)
	}
	req.SetBasicAuth(s.Username, s.Password)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: %s", ErrUnavailable, transportReason(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: reading the answer failed", ErrUnavailable)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", fmt.Errorf("%w (status %d)", ErrRefused, resp.StatusCode)
	case resp.StatusCode >= 500:
		return "", fmt.Errorf("%w: status %d", ErrUnavailable, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("%w: status %d", ErrBadAnswer, resp.StatusCode)
	}
	var v struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(raw, &v) != nil || v.Token == "" || strings.ContainsAny(v.Token, " \r\n") {
		return "", ErrBadAnswer
	}
	return v.Token, nil
}

// transportReason describes a transport error without the URL (which
// could carry credentials) or anything the server said.
func transportReason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "no such host"):
		return "host not found"
	case strings.Contains(err.Error(), "certificate"):
		return "TLS certificate not trusted"
	}
	return "transport error"
}

// expiry reads the JWT's exp claim without trusting it for anything else;
// without one, the token lives DefaultLifetime from now.
func expiry(tok string, now time.Time) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) == 3 {
		if raw, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			var c struct {
				Exp *json.Number `json:"exp"`
			}
			if json.Unmarshal(raw, &c) == nil && c.Exp != nil {
				if f, err := c.Exp.Float64(); err == nil && f > 0 {
					exp := time.Unix(int64(f), 0)
					// a clock far off, or a claim far away, is bounded
					if exp.After(now) && exp.Before(now.Add(24*time.Hour)) {
						return exp
					}
				}
			}
		}
	}
	return now.Add(DefaultLifetime)
}
