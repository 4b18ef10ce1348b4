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
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// Error is a failure to obtain a token. It matches its Kind (ErrUnavailable,
// ErrRefused or ErrBadAnswer) with errors.Is; Reason says what happened,
// and never holds a credential or anything the server said.
type Error struct {
	Kind   error
	Reason string
}

func (e *Error) Error() string { return e.Kind.Error() + ": " + e.Reason }

// Unwrap returns the Kind.
func (e *Error) Unwrap() error { return e.Kind }

// Message says what failed and why, for a caller to read.
func (e *Error) Message() string { return kindText[e.Kind] + ": " + e.Reason }

var kindText = map[error]string{
	ErrUnavailable: "Security API unavailable",
	ErrRefused:     "Security API refused the credentials",
	ErrBadAnswer:   "Security API answered without a token",
}

func fail(kind error, reason string) error { return &Error{Kind: kind, Reason: reason} }

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
	// OnRefreshError, if set, hears of every failed fetch (its error holds
	// no credential), in the goroutine that fetched.
	OnRefreshError func(error)

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
	if err != nil && s.OnRefreshError != nil {
		s.OnRefreshError(err)
	}
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
		return "", fail(ErrUnavailable, "bad endpoint")
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
		return "", fail(ErrUnavailable, transportReason(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case err != nil:
		return "", fail(ErrUnavailable, "reading the answer failed")
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", fail(ErrRefused, "status "+strconv.Itoa(resp.StatusCode))
	case resp.StatusCode >= 500:
		return "", fail(ErrUnavailable, "status "+strconv.Itoa(resp.StatusCode))
	case resp.StatusCode != http.StatusOK:
		return "", fail(ErrBadAnswer, "status "+strconv.Itoa(resp.StatusCode))
	}
	var v struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(raw, &v) != nil || v.Token == "" || strings.ContainsAny(v.Token, " \r\n") {
		return "", fail(ErrBadAnswer, "no token in the answer")
	}
	return v.Token, nil
}

// transportReason describes a transport error without the URL (which
// could carry credentials) or anything the server said.
func transportReason(err error) string {
	var dns *net.DNSError
	var cert *tls.CertificateVerificationError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dns):
		return "host not found"
	case errors.As(err, &cert):
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
