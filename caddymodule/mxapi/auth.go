// Package mxapi holds the handlers for the MX Platform API and MX Connect:
// on the egress side, mx_auth attach (Basic credentials), mxconnect_token
// (bearer tokens), mx_jwe decrypt (encrypted responses) and mx_retry; on a
// serving side (MX's webhooks, a local stand-in for MX), mx_auth check and
// mx_jwe encrypt.
package mxapi

import (
	stdhmac "crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/secrethash"
)

func init() {
	caddy.RegisterModule(AuthAttach{})
	caddy.RegisterModule(AuthCheck{})
}

// MX Platform API versions and the headers they need.
const (
	APIVersion20111101 = "v20111101" // Accept: application/vnd.mx.api.v1+json
	APIVersion20250224 = "v20250224" // Accept: application/json, Accept-Version: v20250224
)

// AuthAttach (the egress sidecar) sets Authorization: Basic
// base64(client_id:api_key) on every request, replacing whatever the app
// sent, and the Accept headers of the configured API version, so that the
// app never holds an MX secret.
type AuthAttach struct {
	// ClientID and APIKey are the MX credentials; {env.*} and {file.*}
	// placeholders are resolved at provisioning.
	ClientID string `json:"client_id,omitempty"`
	APIKey   string `json:"api_key,omitempty"`

	// APIVersion is v20111101 (Accept application/vnd.mx.api.v1+json when
	// the app sent none) or v20250224 (Accept application/json when the app
	// sent none, and Accept-Version v20250224). Default: v20111101.
	APIVersion string `json:"api_version,omitempty"`

	// Callers (allow_callers) are who may have the credentials attached:
	// by default loopback and Unix-socket peers only; anyone else gets 403.
	gate.Callers

	clientID      string
	authorization string
	accept        string
	acceptVersion string
}

// CaddyModule returns the Caddy module information.
func (AuthAttach) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_auth_attach",
		New: func() caddy.Module { return new(AuthAttach) },
	}
}

// Provision resolves the credentials.
func (a *AuthAttach) Provision(ctx caddy.Context) error {
	gate.WarnUnredactedLogs(ctx, "mx_auth attach", gate.AuthSecretHeaders...)
	if err := a.Callers.Provision(ctx, "mx_auth", gate.FormatJSON); err != nil {
		return err
	}
	id, err := gate.Secret(a.ClientID)
	if err != nil {
		return fmt.Errorf("client_id %w", err)
	}
	key, err := gate.Secret(a.APIKey)
	if err != nil {
		return fmt.Errorf("api_key %w", err)
	}
	if strings.Contains(id, ":") {
		return errors.New("client_id must not contain ':'")
	}
	a.clientID = id
	a.authorization = "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+key))
	switch a.APIVersion {
	case "", APIVersion20111101:
		a.APIVersion = APIVersion20111101
		a.accept = "application/vnd.mx.api.v1+json"
	case APIVersion20250224:
		a.accept, a.acceptVersion = "application/json", APIVersion20250224
	default:
		return fmt.Errorf("api_version must be %s or %s, not %q", APIVersion20111101, APIVersion20250224, a.APIVersion)
	}
	return nil
}

// ServeHTTP attaches the credentials.
func (a *AuthAttach) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !a.Callers.Allowed(r) {
		return a.Callers.Refuse(w, r)
	}
	h := r.Header
	h.Set("Authorization", a.authorization)
	if len(h.Values("Accept")) == 0 {
		h.Set("Accept", a.accept)
	}
	if a.acceptVersion != "" {
		h.Set("Accept-Version", a.acceptVersion)
	}
	return next.ServeHTTP(w, r)
}

// Credentials names the MX client whose credentials are attached: an
// mx_rate_limit beside this handler keeps that client's budget.
func (a *AuthAttach) Credentials() (kind, id string) { return "MX Platform API", a.clientID }

// AuthCheck (serving side: MX's webhooks, which carry no signature, or a
// local stand-in for MX) admits only requests with the Basic credentials
// of a configured client, and exposes the client id as {http.auth.user.id}
// (usable as a rate-limit key). A request with more than one
// Authorization header is refused whatever they hold. An unknown client
// costs the same time as a wrong secret. The checked Authorization header
// is removed before the request goes on, so the client's secret never
// reaches the upstream, unless KeepCredentials says otherwise; trailers,
// which arrive after the check, are never passed on.
type AuthCheck struct {
	// Clients are the accepted credentials.
	Clients []AuthClient `json:"clients,omitempty"`

	// Failure is the status of a refusal: 401 (with WWW-Authenticate) or
	// 404, which hides what exists. Default: 401.
	Failure int `json:"failure,omitempty"`

	// Realm is the WWW-Authenticate realm. Default: mxgate.
	Realm string `json:"realm,omitempty"`

	// ErrorFormat is how a refusal is written: json (MX's
	// {"error":{"message":…}}), mdx, fdx, text or handle_errors.
	// Default: json.
	ErrorFormat string `json:"error_format,omitempty"`

	// KeepCredentials forwards the checked Authorization header to the
	// next handler (and so the upstream). Default: off; it is removed.
	KeepCredentials bool `json:"keep_credentials,omitempty"`

	clients  map[string]*clientCred
	decoy    *clientCred // an unknown client is compared against this
	cacheKey []byte      // keys the tags of verified secrets
	format   gate.Format
	logger   *zap.Logger
}

// AuthClient is one accepted client of mx_auth check.
type AuthClient struct {
	// ID is the client id (the Basic user name); placeholders work.
	ID string `json:"id"`
	// Secret is one of: a fast keyed hash for a high-entropy machine
	// secret (API key, webhook secret: $hmac-sha256$…, as `mxgate
	// hash-secret` prints); a bcrypt or argon2id hash for a human-chosen
	// password (`mxgate hash-password`); or a placeholder such as
	// {env.MX_WEBHOOK_SECRET} that resolves to the secret itself. A plain
	// secret is refused: it would sit in the configuration.
	Secret string `json:"secret"`
}

// The kinds of stored secret.
const (
	kindKeyed       = "hmac-sha256"
	kindBcrypt      = "bcrypt"
	kindArgon2id    = "argon2id"
	kindPlaceholder = "placeholder"
)

type clientCred struct {
	id     string
	kind   string
	hashed []byte             // bcrypt or argon2id
	slow   caddyauth.Comparer // for hashed
	keyed  secrethash.Hash    // hmac-sha256
	digest [32]byte           // sha256 of a placeholder's secret

	// verified holds the tag (HMAC under the check's cache key) of the
	// last secret that passed a slow comparison: one slot per configured
	// client, written only on success, so wrong secrets, however many,
	// neither fill nor evict it.
	verified atomic.Pointer[[32]byte]
}

// compare runs the stored hash's comparison, uncached.
func (c *clientCred) compare(secret []byte) bool {
	switch c.kind {
	case kindKeyed:
		return c.keyed.Verify(secret)
	case kindPlaceholder:
		d := sha256.Sum256(secret)
		return subtle.ConstantTimeCompare(d[:], c.digest[:]) == 1
	}
	ok, err := c.slow.Compare(c.hashed, secret)
	return err == nil && ok
}

// CaddyModule returns the Caddy module information.
func (AuthCheck) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_auth_check",
		New: func() caddy.Module { return new(AuthCheck) },
	}
}

// Provision resolves the clients' secrets.
func (a *AuthCheck) Provision(ctx caddy.Context) error {
	gate.WarnUnredactedLogs(ctx, "mx_auth check", gate.AuthSecretHeaders...)
	a.logger = ctx.Logger()
	var err error
	if a.format, err = gate.ParseFormat(a.ErrorFormat, gate.FormatJSON); err != nil {
		return err
	}
	if len(a.Clients) == 0 {
		return errors.New("at least one client is required")
	}
	switch a.Failure {
	case 0:
		a.Failure = http.StatusUnauthorized
	case http.StatusUnauthorized, http.StatusNotFound:
	default:
		return fmt.Errorf("failure must be 401 or 404, not %d", a.Failure)
	}
	if a.Realm == "" {
		a.Realm = "mxgate"
	}
	a.clients = make(map[string]*clientCred, len(a.Clients))
	kinds := map[string]bool{}
	for i, c := range a.Clients {
		cred, err := parseClientCred(c)
		if err != nil {
			return fmt.Errorf("client %d (%s): %w", i+1, c.ID, err)
		}
		if _, dup := a.clients[cred.id]; dup {
			return fmt.Errorf("client %s given twice", cred.id)
		}
		a.clients[cred.id] = cred
		kinds[cred.kind] = true
		if a.decoy == nil {
			a.decoy = cred
		}
		if cred.slow != nil {
			a.logger.Info("a wrong secret for this client costs a full "+cred.kind+" comparison; for a high-entropy machine secret (an API key, a webhook secret) `mxgate hash-secret` makes each failure cost microseconds",
				zap.String("client", cred.id), zap.String("hash", slowHashCost(cred)))
		}
	}
	if len(kinds) > 1 {
		a.logger.Warn("clients use different kinds of hash: an unknown client id costs what the first client's does, so the time of a refusal may tell which ids exist; use one kind (and cost) for all")
	}
	a.cacheKey = make([]byte, 32)
	if _, err := rand.Read(a.cacheKey); err != nil {
		return err
	}
	return gate.RegisterMetrics(ctx.GetMetricsRegistry())
}

// slowHashCost names a bcrypt or argon2id hash's parameters.
func slowHashCost(c *clientCred) string {
	if c.kind == kindBcrypt && len(c.hashed) > 6 {
		return "bcrypt cost " + string(c.hashed[4:6])
	}
	if _, params, found := strings.Cut(string(c.hashed), "$m="); found && c.kind == kindArgon2id {
		p, _, _ := strings.Cut(params, "$")
		return "argon2id m=" + p
	}
	return c.kind
}

func parseClientCred(c AuthClient) (*clientCred, error) {
	id, err := gate.Secret(c.ID)
	if err != nil || strings.Contains(id, ":") {
		return nil, errors.New("the id must be non-empty and hold no ':'")
	}
	s := c.Secret
	switch {
	case strings.HasPrefix(s, secrethash.Prefix):
		h, err := secrethash.Parse(s)
		if err != nil {
			return nil, errors.New("the hmac-sha256 hash is malformed (want $hmac-sha256$<salt>$<mac>, as mxgate hash-secret prints)")
		}
		return &clientCred{id: id, kind: kindKeyed, keyed: h}, nil
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		return &clientCred{id: id, kind: kindBcrypt, hashed: []byte(s), slow: caddyauth.BcryptHash{}}, nil
	case strings.HasPrefix(s, "$argon2id$"):
		if _, _, err := caddyauth.DecodeHash([]byte(s)); err != nil {
			return nil, errors.New("the argon2id hash is malformed")
		}
		return &clientCred{id: id, kind: kindArgon2id, hashed: []byte(s), slow: caddyauth.Argon2idHash{}}, nil
	case strings.Contains(s, "{"):
		plain, err := gate.Secret(s)
		if err != nil {
			return nil, errors.New("the secret placeholder resolved to nothing (an unset {env.*} variable?)")
		}
		return &clientCred{id: id, kind: kindPlaceholder, digest: sha256.Sum256([]byte(plain))}, nil
	}
	return nil, errors.New("the secret must be a hash (mxgate hash-secret for a machine secret, mxgate hash-password for a password) or a placeholder such as {env.NAME}; a plain secret does not belong in the configuration")
}

// ServeHTTP checks the credentials.
func (a *AuthCheck) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rf := gate.Refusal{Status: a.Failure, Reason: "credentials_missing", Message: "Unauthorized"}
	if len(r.Header.Values("Authorization")) > 1 {
		// Which one would the upstream believe? Neither.
		rf.Reason = "credentials_duplicated"
		return a.refuse(w, r, rf)
	}
	id, secret, ok := r.BasicAuth()
	if ok && a.authenticate(id, secret) {
		gate.SetUser(r, id)
		if !a.KeepCredentials {
			r.Header.Del("Authorization")
		}
		// Trailers arrive after the check, unchecked (an Authorization
		// among them, say): none is passed on.
		r.Trailer = nil
		r.Header.Del("Trailer")
		return next.ServeHTTP(w, r)
	}
	if ok {
		rf.Reason = "credentials_invalid"
	}
	return a.refuse(w, r, rf)
}

func (a *AuthCheck) refuse(w http.ResponseWriter, r *http.Request, rf gate.Refusal) error {
	if ce := a.logger.Check(zapcore.InfoLevel, "MX credentials refused"); ce != nil {
		ce.Write(zap.String("reason", rf.Reason), zap.String("client_ip", gate.ClientIP(r)))
	}
	if a.Failure == http.StatusNotFound {
		rf.Message = "Not Found"
	} else {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+a.Realm+`", charset="UTF-8"`)
	}
	gate.CloseUnread(w, r)
	return gate.Refuse(w, "mx_auth", a.format, rf)
}

// authenticate compares secret with id's; an unknown id is compared with a
// configured client's hash, so it costs what a wrong secret costs. A
// secret that passed a slow comparison is remembered (by its tag, in the
// client's one slot), so the client's next requests cost an HMAC.
func (a *AuthCheck) authenticate(id, secret string) bool {
	cred, known := a.clients[id]
	if !known {
		a.decoy.compare([]byte(secret))
		return false
	}
	if cred.slow == nil { // fast already: nothing to cache
		return cred.compare([]byte(secret))
	}
	tag := a.tag(secret)
	if last := cred.verified.Load(); last != nil && subtle.ConstantTimeCompare(tag[:], last[:]) == 1 {
		return true
	}
	if !cred.compare([]byte(secret)) {
		return false
	}
	cred.verified.Store(&tag)
	return true
}

// tag is the HMAC of secret under the check's random cache key: what the
// cache holds instead of the secret or a plain digest of it.
func (a *AuthCheck) tag(secret string) [32]byte {
	m := stdhmac.New(sha256.New, a.cacheKey)
	m.Write([]byte(secret))
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AuthAttach)(nil)
	_ caddyhttp.MiddlewareHandler = (*AuthAttach)(nil)
	_ store.Credentialed          = (*AuthAttach)(nil)
	_ caddy.Provisioner           = (*AuthCheck)(nil)
	_ caddyhttp.MiddlewareHandler = (*AuthCheck)(nil)
)
