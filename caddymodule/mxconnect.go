package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

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

	source *mxconnect.Source
	down   *atomic.Bool // a Security API outage episode is under way
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
	m.logger = ctx.Logger()
	m.down = new(atomic.Bool)
	repl := caddy.NewReplacer()
	endpoint := repl.ReplaceKnown(m.Endpoint, "")
	if endpoint == "" {
		endpoint = mxconnect.DefaultEndpoint
	}
	if !strings.HasPrefix(endpoint, "https://") && !strings.HasPrefix(endpoint, "http://") {
		return errors.New("mxconnect_token: endpoint must be an http(s) URL")
	}
	user, pass, key := repl.ReplaceKnown(m.Username, ""), repl.ReplaceKnown(m.Password, ""), repl.ReplaceKnown(m.APIKey, "")
	if strings.TrimSpace(user) == "" || strings.TrimSpace(pass) == "" || strings.TrimSpace(key) == "" {
		return errors.New("mxconnect_token: username, password and api_key are required (an unset {env.*} variable?)")
	}
	if m.RefreshBefore < 0 || m.Timeout < 0 || m.MaxBody < 0 {
		return errors.New("mxconnect_token: durations and sizes must be positive")
	}
	if m.RefreshBefore >= caddy.Duration(mxconnect.DefaultLifetime) {
		return fmt.Errorf("mxconnect_token: refresh_before must be shorter than a token's life (%v)", mxconnect.DefaultLifetime)
	}
	if m.Timeout == 0 {
		m.Timeout = caddy.Duration(5 * time.Second)
	}
	if m.MaxBody == 0 {
		m.MaxBody = 1 << 20
	}
	m.source = &mxconnect.Source{
		Endpoint: endpoint, Username: strings.TrimSpace(user), Password: strings.TrimSpace(pass), APIKey: strings.TrimSpace(key),
		RefreshBefore: time.Duration(m.RefreshBefore),
		Client:        &http.Client{Timeout: time.Duration(m.Timeout)},
	}
	return registerMetrics(ctx.GetMetricsRegistry())
}

// ServeHTTP attaches the token, and retries once after a 401.
func (m *MXConnectToken) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	var body []byte
	retry := idempotent(r.Method) && r.ContentLength <= m.MaxBody
	if retry && r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, m.MaxBody+1))
		if err != nil {
			return caddyhttp.Error(http.StatusBadRequest, err)
		}
		if int64(len(b)) > m.MaxBody {
			retry = false
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), r.Body))
		} else {
			body = b
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
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		again := retry && attempt == 1
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
		restoreHeader(w.Header(), header)
	}
}

func (m *MXConnectToken) refuse(w http.ResponseWriter, r *http.Request, err error) error {
	if r.Context().Err() != nil {
		return caddyhttp.Error(499, r.Context().Err())
	}
	status, reason := http.StatusBadGateway, "token_refused"
	if errors.Is(err, mxconnect.ErrUnavailable) {
		status, reason = http.StatusServiceUnavailable, "token_unavailable"
	}
	countRejection("mxconnect_token", reason)
	if !m.down.Swap(true) { // once per episode; errors carry the reason, never a credential
		m.logger.Error("no MX Connect token; failing requests fast until the Security API answers", zap.Error(err))
	}
	rej := rejection{status: status, reason: reason, message: "MX Connect token unavailable: " + strings.TrimPrefix(err.Error(), "mxconnect: ")}
	return rej.respond(w, FormatJSON)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*MXConnectToken)(nil)
	_ caddyhttp.MiddlewareHandler = (*MXConnectToken)(nil)
)
