package mxapi

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mxgate/mxgate/caddymodule/internal/bodies"
	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/caddymodule/internal/resend"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/mxconnect"
)

func init() {
	caddy.RegisterModule(MXConnectToken{})
}

// MXConnectToken sets Authorization: Bearer <JWT> on every request,
// replacing whatever the app sent, with a token from MX Connect's Security
// API, cached and refreshed before it expires. A 401 from the upstream
// makes it fetch a new token, once however many requests saw the same
// token refused and at most once per MinRefresh, and an idempotent request
// is sent once more with the newer token. While the Security API is
// unreachable or refuses the credentials, requests fail fast with 503 or
// 502 and a JSON error.
type MXConnectToken struct {
	// Endpoint is the Security API.
	// Default: https://api.mxconnect.com/security/v1/apiKey/authenticate
	Endpoint string `json:"endpoint,omitempty"`

	// Username and Password are the Basic credentials, APIKey the key sent
	// as {"value": …}; {env.*} and {file.*} placeholders work.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	APIKey   string `json:"api_key,omitempty"`

	// RefreshBefore is how long before the token's exp a new one is
	// fetched (in the background, while the old one is still served); a
	// token that lives less than that is renewed at half its lifetime,
	// and none sooner than 10s after the last fetch (a warning says so
	// once). Default: 1m.
	RefreshBefore caddy.Duration `json:"refresh_before,omitempty"`

	// MinRefresh is the least time between two token fetches caused by
	// an upstream's 401. A 401 within it is passed to the caller (after a
	// retry with a newer token, if another request fetched one).
	// Default: 30s.
	MinRefresh caddy.Duration `json:"min_refresh,omitempty"`

	// Timeout bounds one Security API call. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// MaxBody is the largest request body held to resend after a 401.
	// Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// ErrorFormat is how a refusal is written: json (MX's
	// {"error":{"message":…}}), mdx, fdx, text or handle_errors.
	// Default: json.
	ErrorFormat string `json:"error_format,omitempty"`

	// Callers (allow_callers) are who may have the token attached: by
	// default loopback and Unix-socket peers only; anyone else gets 403.
	client.Callers

	source  *mxconnect.Source // kept across reloads while the credentials stay
	release func()
	down    *atomic.Bool // a Security API outage episode is under way
	short   *atomic.Bool // the short-lived tokens hint was logged
	format  refusal.Format
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (MXConnectToken) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mxconnect_token",
		New: func() caddy.Module { return new(MXConnectToken) },
	}
}

// Validate checks the options among themselves, taking nothing. Caddy
// calls it after Provision; Provision calls it first, so that a bad
// configuration fails before a token source is taken.
func (m *MXConnectToken) Validate() (err error) {
	defer provision.NameDirective(&err, "mxconnect_token")
	if _, err := refusal.ParseFormat(m.ErrorFormat, refusal.FormatJSON); err != nil {
		return err
	}
	if m.RefreshBefore < 0 || m.MinRefresh < 0 || m.Timeout < 0 || m.MaxBody < 0 {
		return errors.New("durations and sizes must be positive")
	}
	if m.RefreshBefore >= caddy.Duration(mxconnect.DefaultLifetime) {
		return errors.New("refresh_before must be shorter than a token's life (" + mxconnect.DefaultLifetime.String() + ")")
	}
	return nil
}

// Provision checks the options (Validate), resolves the credentials, and takes the token source of the
// running configuration if it has the same endpoint and credentials: its
// token, and what it knows of past fetches (min_refresh, a backoff under
// way), outlive a reload; the new settings apply to it.
func (m *MXConnectToken) Provision(ctx caddy.Context) (err error) {
	if err := m.Validate(); err != nil {
		return err // named by Validate
	}
	defer provision.NameDirective(&err, "mxconnect_token")
	secret.WarnUnredactedLogs(ctx, "mxconnect_token", secret.AuthHeaders...)
	m.logger = ctx.Logger()
	m.down, m.short = new(atomic.Bool), new(atomic.Bool)
	if m.format, err = refusal.ParseFormat(m.ErrorFormat, refusal.FormatJSON); err != nil {
		return err
	}
	if err := m.Callers.Provision(ctx, "mxconnect_token", m.format); err != nil {
		return err
	}
	endpoint := provision.Resolve(m.Endpoint)
	if endpoint == "" {
		endpoint = mxconnect.DefaultEndpoint
	}
	if !strings.HasPrefix(endpoint, "https://") && !strings.HasPrefix(endpoint, "http://") {
		return errors.New("endpoint must be an http(s) URL")
	}
	creds := make([]string, 3)
	for i, f := range []struct{ name, raw string }{{"username", m.Username}, {"password", m.Password}, {"api_key", m.APIKey}} {
		if creds[i], err = secret.Read(f.raw); err != nil {
			return errors.New(f.name + " " + err.Error())
		}
	}
	if m.MinRefresh == 0 {
		m.MinRefresh = caddy.Duration(30 * time.Second)
	}
	if m.Timeout == 0 {
		m.Timeout = caddy.Duration(5 * time.Second)
	}
	if m.MaxBody == 0 {
		m.MaxBody = 1 << 20
	}
	src := &mxconnect.Source{
		Endpoint: endpoint, Username: creds[0], Password: creds[1], APIKey: creds[2],
		RefreshBefore:  time.Duration(m.RefreshBefore),
		MinRefresh:     time.Duration(m.MinRefresh),
		Client:         &http.Client{Timeout: time.Duration(m.Timeout)},
		OnRefreshError: func(error) { metrics.TokenRefreshFailures.Inc() },
		OnFetch:        metrics.CountCredentialFetches("mxconnect_token", "token"),
		OnShortLived:   m.shortLived,
	}
	// named by a keyed hash of what it fetches with: other credentials get
	// a source of their own, and the name holds no secret
	key := store.CredentialKey("mxconnect_token", endpoint, creds[0], creds[1], creds[2])
	if m.source, m.release, err = store.Keep(key, func() (*mxconnect.Source, func(), error) {
		return src, src.Close, nil
	}, (*mxconnect.Source).Adopt, src); err != nil {
		return err
	}
	return metrics.Register(ctx.GetMetricsRegistry())
}

// Cleanup lets go of the token source: the last configuration to hold it
// closes it (a fetch under way is cancelled).
func (m *MXConnectToken) Cleanup() error {
	if m.release != nil {
		m.release()
		m.release = nil
	}
	return nil
}

// shortLived logs, once per configuration, that tokens live less than
// refresh_before by this clock.
func (m *MXConnectToken) shortLived(life time.Duration) {
	if !m.short.Swap(true) {
		m.logger.Warn("MX Connect tokens live less than refresh_before by this clock: each is renewed at half its lifetime, and none sooner than 10s after the last fetch; check this host's clock (NTP), or lower refresh_before",
			zap.Duration("lifetime", life), zap.Duration("refresh_before", time.Duration(m.RefreshBefore)))
	}
}

// Credentials names the MX Connect client whose tokens are attached (its
// username): an mx_rate_limit beside this handler keeps that client's
// budget.
func (m *MXConnectToken) Credentials() (kind, id string) {
	if m.source == nil {
		return "MX Connect", ""
	}
	return "MX Connect", m.source.Username
}

// ServeHTTP attaches the token. An upstream's 401 is reported to the
// token source, which fetches a new token only if the one refused is still
// current and the last such fetch is at least min_refresh old; a
// replayable request is then sent once more with the token it hands out
// (new, or newer than the one refused). A 401 to that second attempt, or
// one the source will not fetch again for, is the caller's answer.
func (m *MXConnectToken) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !m.Callers.Allowed(r) {
		return m.Callers.Refuse(w, r)
	}
	var replay func()
	if resend.Idempotent(r.Method) {
		var err error
		if replay, err = resend.Replayable(r, m.MaxBody); err != nil {
			return caddyhttp.Error(http.StatusBadRequest, err)
		}
	}
	tok, gen, err := m.source.Get(r.Context())
	if err != nil {
		return m.refuse(w, r, err)
	}
	m.available()
	header := w.Header().Clone()
	buf := new(bytes.Buffer)
	back := func() {}
	defer func() { back() }() // the final trip's variables, for the access log
	for retried := false; ; retried = true {
		r.Header.Set("Authorization", "Bearer "+tok)
		if replay != nil {
			replay()
		}
		var trip *http.Request
		trip, back = resend.Trip(r)
		hold := replay != nil && !retried // a 401 is held back while a retry may follow
		buf.Reset()
		rec := caddyhttp.NewResponseRecorder(w, buf, func(status int, _ http.Header) bool {
			return hold && status == http.StatusUnauthorized
		})
		if err := next.ServeHTTP(rec, trip); err != nil {
			return err
		}
		if rec.Status() != http.StatusUnauthorized || retried {
			return nil // streamed: a final answer
		}
		tok, gen, err = m.source.Refused(r.Context(), gen)
		if !rec.Buffered() { // answered already; the next request gets the token Refused chose
			if err != nil && !errors.Is(err, mxconnect.ErrTooSoon) && r.Context().Err() == nil {
				m.unavailable(err)
			}
			return nil
		}
		switch {
		case errors.Is(err, mxconnect.ErrTooSoon):
			m.logger.Debug("upstream refused a recently refreshed MX Connect token; its 401 is the answer")
			return rec.WriteResponse()
		case err != nil:
			bodies.RestoreHeader(w.Header(), header)
			return m.refuse(w, r, err)
		}
		m.available()
		m.logger.Debug("upstream refused the MX Connect token; retrying once with a newer one")
		bodies.RestoreHeader(w.Header(), header)
	}
}

func (m *MXConnectToken) refuse(w http.ResponseWriter, r *http.Request, err error) error {
	if r.Context().Err() != nil {
		return caddyhttp.Error(499, r.Context().Err())
	}
	rf := refusal.Refusal{Status: http.StatusBadGateway, Reason: "token_refused", Message: "MX Connect token unavailable"}
	if errors.Is(err, mxconnect.ErrUnavailable) {
		rf.Status, rf.Reason = http.StatusServiceUnavailable, "token_unavailable"
		w.Header().Set("Retry-After", "1")
	}
	var me *mxconnect.Error
	if errors.As(err, &me) {
		rf.Message += ": " + me.Message()
	}
	m.unavailable(err)
	return refusal.Refuse(w, r, "mxconnect_token", m.format, rf)
}

// unavailable logs the start of an episode without tokens, once; errors
// carry the reason, never a credential.
func (m *MXConnectToken) unavailable(err error) {
	if !m.down.Swap(true) {
		m.logger.Error("no MX Connect token; failing requests fast until the Security API answers", zap.Error(err))
	}
}

// available logs the end of an episode without tokens, once, when the
// Security API has answered (not merely when a cached token was served).
func (m *MXConnectToken) available() {
	if m.down.Load() && m.source.Failing() == nil && m.down.Swap(false) {
		m.logger.Info("MX Connect tokens available again")
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*MXConnectToken)(nil)
	_ caddy.Validator             = (*MXConnectToken)(nil)
	_ caddy.CleanerUpper          = (*MXConnectToken)(nil)
	_ caddyhttp.MiddlewareHandler = (*MXConnectToken)(nil)
	_ store.Credentialed          = (*MXConnectToken)(nil)
)
