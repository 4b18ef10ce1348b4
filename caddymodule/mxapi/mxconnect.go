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

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/mxconnect"
)

func init() {
	caddy.RegisterModule(MXConnectToken{})
}

// MXConnectToken sets Authorization: Bearer <JWT> on every request,
// replacing whatever the app sent, with a token from MX Connect's Security
// API, cached and refreshed before it expires. A 401 from the upstream
// drops the token and, for idempotent methods, the request is sent once
// more with a fresh one. While the Security API is unreachable or refuses
// the credentials, requests fail fast with 503 or 502 and a JSON error.
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
	// fetched (in the background, while the old one is still served).
	// Default: 1m.
	RefreshBefore caddy.Duration `json:"refresh_before,omitempty"`

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
	gate.Callers

	source *mxconnect.Source
	down   *atomic.Bool // a Security API outage episode is under way
	format gate.Format
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (MXConnectToken) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mxconnect_token",
		New: func() caddy.Module { return new(MXConnectToken) },
	}
}

// Provision resolves the credentials.
func (m *MXConnectToken) Provision(ctx caddy.Context) error {
	gate.WarnUnredactedLogs(ctx, "mxconnect_token", gate.AuthSecretHeaders...)
	m.logger = ctx.Logger()
	m.down = new(atomic.Bool)
	var err error
	if m.format, err = gate.ParseFormat(m.ErrorFormat, gate.FormatJSON); err != nil {
		return err
	}
	if err := m.Callers.Provision(ctx, "mxconnect_token", m.format); err != nil {
		return err
	}
	endpoint := gate.Resolve(m.Endpoint)
	if endpoint == "" {
		endpoint = mxconnect.DefaultEndpoint
	}
	if !strings.HasPrefix(endpoint, "https://") && !strings.HasPrefix(endpoint, "http://") {
		return errors.New("endpoint must be an http(s) URL")
	}
	creds := make([]string, 3)
	for i, f := range []struct{ name, raw string }{{"username", m.Username}, {"password", m.Password}, {"api_key", m.APIKey}} {
		if creds[i], err = gate.Secret(f.raw); err != nil {
			return errors.New(f.name + " " + err.Error())
		}
	}
	if m.RefreshBefore < 0 || m.Timeout < 0 || m.MaxBody < 0 {
		return errors.New("durations and sizes must be positive")
	}
	if m.RefreshBefore >= caddy.Duration(mxconnect.DefaultLifetime) {
		return errors.New("refresh_before must be shorter than a token's life (" + mxconnect.DefaultLifetime.String() + ")")
	}
	if m.Timeout == 0 {
		m.Timeout = caddy.Duration(5 * time.Second)
	}
	if m.MaxBody == 0 {
		m.MaxBody = 1 << 20
	}
	m.source = &mxconnect.Source{
		Endpoint: endpoint, Username: creds[0], Password: creds[1], APIKey: creds[2],
		RefreshBefore:  time.Duration(m.RefreshBefore),
		Client:         &http.Client{Timeout: time.Duration(m.Timeout)},
		OnRefreshError: func(error) { gate.Metrics.TokenRefreshFailures.Inc() },
	}
	return gate.RegisterMetrics(ctx.GetMetricsRegistry())
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

// ServeHTTP attaches the token, and retries once after a 401.
func (m *MXConnectToken) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !m.Callers.Allowed(r) {
		return m.Callers.Refuse(w, r)
	}
	var replay func()
	if gate.Idempotent(r.Method) {
		var err error
		if replay, err = gate.Replayable(r, m.MaxBody); err != nil {
			return caddyhttp.Error(http.StatusBadRequest, err)
		}
	}
	header := w.Header().Clone()
	buf := new(bytes.Buffer)
	for attempt := 1; ; attempt++ {
		tok, err := m.source.Token(r.Context())
		if err != nil {
			return m.refuse(w, r, err)
		}
		if m.down.Load() && m.down.Swap(false) {
			m.logger.Info("MX Connect tokens available again")
		}
		r.Header.Set("Authorization", "Bearer "+tok)
		again := replay != nil && attempt == 1
		if replay != nil {
			replay()
		}
		buf.Reset()
		rec := caddyhttp.NewResponseRecorder(w, buf, func(status int, _ http.Header) bool {
			return again && status == http.StatusUnauthorized
		})
		if err := next.ServeHTTP(rec, r); err != nil {
			return err
		}
		if rec.Status() == http.StatusUnauthorized {
			m.source.Invalidate(tok)
		}
		if !rec.Buffered() {
			return nil
		}
		m.logger.Debug("upstream refused the MX Connect token; retrying once with a fresh one")
		gate.RestoreHeader(w.Header(), header)
	}
}

func (m *MXConnectToken) refuse(w http.ResponseWriter, r *http.Request, err error) error {
	if r.Context().Err() != nil {
		return caddyhttp.Error(499, r.Context().Err())
	}
	rf := gate.Refusal{Status: http.StatusBadGateway, Reason: "token_refused", Message: "MX Connect token unavailable"}
	if errors.Is(err, mxconnect.ErrUnavailable) {
		rf.Status, rf.Reason = http.StatusServiceUnavailable, "token_unavailable"
		w.Header().Set("Retry-After", "1")
	}
	var me *mxconnect.Error
	if errors.As(err, &me) {
		rf.Message += ": " + me.Message()
	}
	if !m.down.Swap(true) { // once per episode; errors carry the reason, never a credential
		m.logger.Error("no MX Connect token; failing requests fast until the Security API answers", zap.Error(err))
	}
	return gate.Refuse(w, "mxconnect_token", m.format, rf)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*MXConnectToken)(nil)
	_ caddyhttp.MiddlewareHandler = (*MXConnectToken)(nil)
	_ store.Credentialed          = (*MXConnectToken)(nil)
)
