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
//
// Renewals that no refusal forced (ahead of expiry, or at it) are bounded
// whatever the token's lifetime and whatever the clocks say: a token is
// renewed at the later of RefreshBefore before its exp and half its
// lifetime, and never sooner than MinRenewal after the last fetch ended;
// within MinRenewal of its fetch a token is served even if this clock
// says it has expired (a clock ahead of the issuer's: the upstream, not
// this clock, is the judge, and its 401 is a refusal like any other).
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/internal/refetch"
)

// DefaultEndpoint is MX Connect's Security API.
const DefaultEndpoint = "https://api.mxconnect.com/security/v1/apiKey/authenticate"

// DefaultLifetime is a token's lifetime when it carries no exp claim.
const DefaultLifetime = 10 * time.Minute

// Defaults of a Source's zero fields.
const (
	DefaultRefreshBefore = time.Minute
	DefaultMinRefresh    = 30 * time.Second
	DefaultMinRenewal    = 10 * time.Second
)

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
// or Refused; do not change the fields after (Adopt changes the settings
// of a Source in use).
//
// Each token has a generation (Get returns it). An upstream that refuses a
// token is reported with Refused and the generation used: only a report
// about the current token fetches a new one, at most once per MinRefresh
// however many requests saw it refused; a report about an older token gets
// the current one without a fetch. So a token that is refused whatever it
// is (an endpoint the credentials may not use) costs one extra fetch per
// MinRefresh, not one per request.
type Source struct {
	Endpoint string // default DefaultEndpoint
	Username string // Basic user
	Password string // Basic password
	APIKey   string // sent as {"value": APIKey}
	// RefreshBefore: a token is renewed, in the background, this long
	// before its exp, or at half its lifetime if that is later (a token
	// that lives less than RefreshBefore). Default: DefaultRefreshBefore.
	RefreshBefore time.Duration
	// MinRefresh is the least time between two fetches forced by refused
	// tokens (Refused). Default: DefaultMinRefresh.
	MinRefresh time.Duration
	// MinRenewal is the least time from the end of a successful fetch to
	// the next fetch no refusal forced; within it a token is served even
	// if this clock says it has expired. Default: DefaultMinRenewal.
	MinRenewal time.Duration
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
	// OnShortLived, if set, hears of every token fetched that lives less
	// than RefreshBefore by this clock, with its lifetime (a hint for an
	// operator: tokens that short-lived, or a clock ahead of MX's).
	OnShortLived func(lifetime time.Duration)

	once sync.Once
	val  refetch.Value[token]
	opts atomic.Pointer[options] // the settings in force

	mu        sync.Mutex
	refreshes int // fetches that reached the Security API, for tests and metrics
}

// options are the settings of a Source that Adopt may change.
type options struct {
	refreshBefore, minRenewal time.Duration
	client                    *http.Client
	onRefreshError            func(error)
	onFetch                   func(string)
	onShortLived              func(time.Duration)
}

// token is one JWT, when it expires and when it was fetched (by Now).
type token struct {
	jwt     string
	expires time.Time
	fetched time.Time
}

// usable reports whether t may be served at now: before its exp, or
// within MinRenewal of its fetch whatever its exp says.
func (t token) usable(now time.Time, o *options) bool {
	return now.Before(t.expires) || now.Before(t.fetched.Add(o.minRenewal))
}

// renewAt is when t is to be renewed in the background: RefreshBefore
// before its exp, but not before half its lifetime, nor within MinRenewal
// of its fetch.
func (t token) renewAt(o *options) time.Time {
	at := t.expires.Add(-o.refreshBefore)
	if half := t.fetched.Add(t.expires.Sub(t.fetched) / 2); half.After(at) {
		at = half
	}
	if floor := t.fetched.Add(o.minRenewal); floor.After(at) {
		at = floor
	}
	return at
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Source) value() *refetch.Value[token] {
	s.once.Do(func() {
		s.opts.Store(s.options())
		s.val.MinInterval = s.minRefresh()
		s.val.MinBackoff, s.val.MaxBackoff = s.MinBackoff, s.MaxBackoff
		s.val.Now = s.now
		s.val.Observe = func(outcome string) {
			if f := s.opts.Load().onFetch; f != nil {
				f(outcome)
			}
		}
	})
	return &s.val
}

// options reads the settings from the fields, with their defaults.
func (s *Source) options() *options {
	o := &options{refreshBefore: s.RefreshBefore, minRenewal: s.MinRenewal, client: s.Client,
		onRefreshError: s.OnRefreshError, onFetch: s.OnFetch, onShortLived: s.OnShortLived}
	if o.refreshBefore <= 0 {
		o.refreshBefore = DefaultRefreshBefore
	}
	if o.minRenewal <= 0 {
		o.minRenewal = DefaultMinRenewal
	}
	if o.client == nil {
		o.client = &http.Client{Timeout: 5 * time.Second}
	}
	return o
}

func (s *Source) minRefresh() time.Duration {
	if s.MinRefresh > 0 {
		return s.MinRefresh
	}
	return DefaultMinRefresh
}

// Adopt makes the settings of o (RefreshBefore, MinRefresh, MinRenewal,
// Client, MinBackoff, MaxBackoff and the On… functions) those of s from
// now on; s keeps its credentials, its token and what it knows of past
// fetches (the last forced one, a backoff under way), so that a new
// configuration with the same credentials fetches no more than the old
// one would have. o's credentials, endpoint and clock are not read; o is
// not used otherwise.
func (s *Source) Adopt(o *Source) {
	v := s.value()
	s.opts.Store(o.options())
	v.SetLimits(o.minRefresh(), o.MinBackoff, o.MaxBackoff)
}

// Close ends s: a fetch under way is cancelled, and every later call that
// needs one fails (ErrUnavailable) without calling the Security API.
func (s *Source) Close() { s.value().Close() }

// Token returns a valid token: the cached one (starting a background
// refresh when it is due: RefreshBefore before its exp, at half its
// lifetime, or MinRenewal after its fetch, whichever is last), or a fresh
// one. While the Security API is failing, it returns the last error at
// once until the backoff has passed.
func (s *Source) Token(ctx context.Context) (string, error) {
	tok, _, err := s.Get(ctx)
	return tok, err
}

// Get is Token, with the token's generation, to report to Refused.
func (s *Source) Get(ctx context.Context) (string, uint64, error) {
	v := s.value()
	o := s.opts.Load()
	t, gen := v.Load()
	now := s.now()
	if gen != 0 && t.usable(now, o) {
		if !now.Before(t.renewAt(o)) {
			v.Prefetch(ctx, gen, s.fetch) // refresh ahead, keep serving
		}
		return t.jwt, gen, nil
	}
	t, gen, err := v.Renew(ctx, gen, s.fetch)
	if err != nil {
		return "", 0, closedError(err)
	}
	return t.jwt, gen, nil
}

// closedError says ErrUnavailable for a closed Source.
func closedError(err error) error {
	if errors.Is(err, refetch.ErrClosed) {
		return fail(ErrUnavailable, "the token source is closed")
	}
	return err
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
		return "", 0, closedError(err)
	case !t.usable(s.now(), s.opts.Load()): // a newer token, expired since: renew
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

// fetch calls the Security API once (in the Value's single flight).
func (s *Source) fetch(ctx context.Context) (token, error) {
	s.mu.Lock()
	s.refreshes++
	s.mu.Unlock()
	o := s.opts.Load()
	tok, err := s.call(ctx, o.client)
	if err != nil {
		if o.onRefreshError != nil && ctx.Err() == nil { // not a fetch Close cancelled
			o.onRefreshError(err)
		}
		return token{}, err
	}
	now := s.now()
	t := token{jwt: tok, expires: expiry(tok, now), fetched: now}
	if life := t.expires.Sub(now); life < o.refreshBefore && o.onShortLived != nil {
		o.onShortLived(life)
	}
	return t, nil
}

// call performs the Security API request.
func (s *Source) call(ctx context.Context, client *http.Client) (string, error) {
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
