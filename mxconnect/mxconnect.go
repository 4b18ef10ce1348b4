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
// many callers need it, fetches again for a token an upstream refused at
// most once per MinRefresh however many requests saw it refused, and after
// a failure fails fast, with bounded exponential backoff, rather than
// calling the Security API per request.
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

	"github.com/mxgate/mxgate/internal/refetch"
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

// ErrTooSoon is Refused's answer when a token was fetched because of a
// refusal less than MinRefresh ago: the refusal stands, and is the
// caller's answer.
var ErrTooSoon = errors.New("mxconnect: token refreshed too recently to refresh again")

// Source hands out MX Connect tokens. It is safe for concurrent use. The
// zero value is not usable: fill the exported fields, then call Token, Get
// or Refused; do not change the fields after.
//
// Each token has a generation (Get returns it). An upstream that refuses a
// token is reported with Refused and the generation used: only a report
// about the current token fetches a new one, at most once per MinRefresh
// however many requests saw it refused; a report about an older token gets
// the current one without a fetch. So a token that is refused whatever it
// is (an endpoint the credentials may not use) costs one extra fetch per
// MinRefresh, not one per request.
type Source struct {
	Endpoint      string        // default DefaultEndpoint
	Username      string        // Basic user
	Password      string        // Basic password
	APIKey        string        // sent as {"value": APIKey}
	RefreshBefore time.Duration // refresh this long before exp; default 1m
	// MinRefresh is the least time between two fetches forced by refused
	// tokens (Refused). Default: 30s.
	MinRefresh time.Duration
	Client     *http.Client // default: a client with a 5s timeout
	Now        func() time.Time
	// MinBackoff and MaxBackoff bound the wait after a failed fetch before
	// the next (doubling); defaults 1s and 30s.
	MinBackoff, MaxBackoff time.Duration
	// OnRefreshError, if set, hears of every failed fetch (its error holds
	// no credential), in the goroutine that fetched.
	OnRefreshError func(error)
	// OnFetch, if set, hears the outcome of every fetch ("ok", "error") and
	// of every fetch asked for and not made ("suppressed": too soon after
	// the last forced one, or within the backoff after a failure).
	OnFetch func(outcome string)

	once sync.Once
	val  refetch.Value[token]

	mu        sync.Mutex
	refreshes int // fetches that reached the Security API, for tests and metrics
}

// token is one JWT and when it expires.
type token struct {
	jwt     string
	expires time.Time
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Source) value() *refetch.Value[token] {
	s.once.Do(func() {
		s.val.MinInterval = s.MinRefresh
		if s.val.MinInterval <= 0 {
			s.val.MinInterval = 30 * time.Second
		}
		s.val.MinBackoff, s.val.MaxBackoff = s.MinBackoff, s.MaxBackoff
		s.val.Now = s.now
		s.val.Observe = func(outcome string) {
			if s.OnFetch != nil {
				s.OnFetch(outcome)
			}
		}
	})
	return &s.val
}

// Token returns a valid token: the cached one (starting a background
// refresh when it is within RefreshBefore of expiry), or a fresh one. While
// the Security API is failing, it returns the last error at once until the
// backoff has passed.
func (s *Source) Token(ctx context.Context) (string, error) {
	tok, _, err := s.Get(ctx)
	return tok, err
}

// Get is Token, with the token's generation, to report to Refused.
func (s *Source) Get(ctx context.Context) (string, uint64, error) {
	v := s.value()
	t, gen := v.Load()
	now := s.now()
	if gen != 0 && now.Before(t.expires) {
		if !now.Before(t.expires.Add(-s.refreshBefore())) {
			v.Prefetch(ctx, gen, s.fetch) // refresh ahead, keep serving
		}
		return t.jwt, gen, nil
	}
	t, gen, err := v.Renew(ctx, gen, s.fetch)
	if err != nil {
		return "", 0, err
	}
	return t.jwt, gen, nil
}

// Refused reports that the token of generation gen was refused (an
// upstream answered 401 to it) and returns the token to try instead: the
// current one if gen is no longer current, else a freshly fetched one
// (one fetch for every caller reporting gen). If the last fetch forced by
// a refusal started less than MinRefresh ago, it fetches nothing and
// returns ErrTooSoon; within the backoff after a failed fetch, it returns
// that failure.
func (s *Source) Refused(ctx context.Context, gen uint64) (string, uint64, error) {
	t, gen, err := s.value().Refused(ctx, gen, s.fetch)
	switch {
	case errors.Is(err, refetch.ErrTooSoon):
		return "", 0, ErrTooSoon
	case err != nil:
		return "", 0, err
	case !s.now().Before(t.expires): // a newer token, expired since: renew
		return s.Get(ctx)
	}
	return t.jwt, gen, nil
}

// Failing returns the error of the last fetch if it failed, or nil.
func (s *Source) Failing() error { return s.value().Failing() }

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

// fetch calls the Security API once (in the Value's single flight).
func (s *Source) fetch(ctx context.Context) (token, error) {
	s.mu.Lock()
	s.refreshes++
	s.mu.Unlock()
	tok, err := s.call(ctx)
	if err != nil {
		if s.OnRefreshError != nil {
			s.OnRefreshError(err)
		}
		return token{}, err
	}
	return token{jwt: tok, expires: expiry(tok, s.now())}, nil
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
