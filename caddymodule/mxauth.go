package caddymodule

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(MXAuth{})
}

// MX Platform API versions and the headers they need.
const (
	APIVersion20111101 = "v20111101" // Accept: application/vnd.mx.api.v1+json
	APIVersion20250224 = "v20250224" // Accept: application/json, Accept-Version: v20250224
)

// MXAuth handles MX Platform API credentials in one of two modes.
//
// In "attach" mode (the egress sidecar) it sets Authorization: Basic
// base64(client_id:api_key) on every request, replacing whatever the app
// sent, and the Accept headers of the configured API version, so that the
// app never holds an MX secret.
//
// In "check" mode (serving side, e.g. MX's webhooks, which carry no
// signature, or a local stand-in for MX) it admits only requests with the
// Basic credentials of a configured client, and exposes the client id as
// {http.auth.user.id} (usable as a rate-limit key). An unknown client costs
// the same time as a wrong secret.
type MXAuth struct {
	// Mode is "attach" or "check".
	Mode string `json:"mode"`

	// ClientID and APIKey (attach) are the MX credentials; {env.*} and
	// {file.*} placeholders are resolved at provisioning.
	ClientID string `json:"client_id,omitempty"`
	APIKey   string `json:"api_key,omitempty"`

	// APIVersion (attach) is v20111101 (Accept application/vnd.mx.api.v1+json
	// when the app sent none) or v20250224 (Accept application/json when the
	// app sent none, and Accept-Version v20250224). Default: v20111101.
	APIVersion string `json:"api_version,omitempty"`

	// Clients (check) are the accepted credentials.
	Clients []AuthClient `json:"clients,omitempty"`

	// Failure (check) is the status of a refusal: 401 (with
	// WWW-Authenticate) or 404, which hides what exists. Default: 401.
	Failure int `json:"failure,omitempty"`

	// Realm (check) is the WWW-Authenticate realm. Default: mxgate.
	Realm string `json:"realm,omitempty"`

	// ErrorFormat (check) is how a refusal is written: json (MX's
	// {"error":{"message":…}}), mdx, text or handle_errors. Default: json.
	ErrorFormat string `json:"error_format,omitempty"`

	authorization string // attach: the Authorization value
	accept        string
	acceptVersion string

	clients   map[string]*clientCred
	decoy     *clientCred // an unknown client is compared against this
	okCache   *sync.Map   // sha256(id:secret) of credentials that passed
	cacheSize *atomic.Int64
	logger    *zap.Logger
}

// AuthClient is one accepted client of mx_auth check.
type AuthClient struct {
	// ID is the client id (the Basic user name); placeholders work.
	ID string `json:"id"`
	// Secret is a bcrypt or argon2id hash (as `mxgate hash-password`
	// prints), or a placeholder such as {env.MX_WEBHOOK_SECRET} that
	// resolves to the secret itself. A plain secret is refused: it would
	// sit in the configuration.
	Secret string `json:"secret"`
}

type clientCred struct {
	id       string
	hashed   []byte             // bcrypt or argon2id
	comparer caddyauth.Comparer // nil for a plain secret
	digest   [32]byte           // sha256 of a plain secret
}

func (c *clientCred) matches(secret []byte) bool {
	if c.comparer == nil {
		d := sha256.Sum256(secret)
		return subtle.ConstantTimeCompare(d[:], c.digest[:]) == 1
	}
	ok, err := c.comparer.Compare(c.hashed, secret)
	return err == nil && ok
}

// CaddyModule returns the Caddy module information.
func (MXAuth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_auth",
		New: func() caddy.Module { return new(MXAuth) },
	}
}

// Provision resolves the credentials.
func (a *MXAuth) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	switch a.Mode {
	case "attach":
		if len(a.Clients) != 0 || a.Failure != 0 {
			return errors.New("mx_auth attach: clients and failure belong to mx_auth check")
		}
		id := repl.ReplaceKnown(a.ClientID, "")
		key := repl.ReplaceKnown(a.APIKey, "")
		if strings.TrimSpace(id) == "" || strings.TrimSpace(key) == "" {
			return errors.New("mx_auth attach: client_id and api_key are required (an unset {env.*} variable?)")
		}
		if strings.Contains(id, ":") {
			return errors.New("mx_auth attach: client_id must not contain ':'")
		}
		a.authorization = "Basic " + base64.StdEncoding.EncodeToString([]byte(strings.TrimSpace(id)+":"+strings.TrimSpace(key)))
		switch a.APIVersion {
		case "", APIVersion20111101:
			a.APIVersion = APIVersion20111101
			a.accept = "application/vnd.mx.api.v1+json"
		case APIVersion20250224:
			a.accept, a.acceptVersion = "application/json", APIVersion20250224
		default:
			return fmt.Errorf("mx_auth attach: api_version must be %s or %s, not %q", APIVersion20111101, APIVersion20250224, a.APIVersion)
		}
	case "check":
		if a.ClientID != "" || a.APIKey != "" || a.APIVersion != "" {
			return errors.New("mx_auth check: client_id, api_key and api_version belong to mx_auth attach")
		}
		if len(a.Clients) == 0 {
			return errors.New("mx_auth check: at least one client is required")
		}
		switch a.Failure {
		case 0:
			a.Failure = http.StatusUnauthorized
		case http.StatusUnauthorized, http.StatusNotFound:
		default:
			return fmt.Errorf("mx_auth check: failure must be 401 or 404, not %d", a.Failure)
		}
		if a.Realm == "" {
			a.Realm = "mxgate"
		}
		if a.ErrorFormat == "" {
			a.ErrorFormat = FormatJSON
		}
		a.clients = make(map[string]*clientCred, len(a.Clients))
		for i, c := range a.Clients {
			cred, err := parseClientCred(repl, c)
			if err != nil {
				return fmt.Errorf("mx_auth check: client %d (%s): %w", i+1, c.ID, err)
			}
			if _, dup := a.clients[cred.id]; dup {
				return fmt.Errorf("mx_auth check: client %s given twice", cred.id)
			}
			a.clients[cred.id] = cred
			if a.decoy == nil {
				a.decoy = cred
			}
		}
		a.okCache, a.cacheSize = newAuthCache()
	default:
		return fmt.Errorf("mx_auth: mode must be attach or check, not %q", a.Mode)
	}
	return registerMetrics(ctx.GetMetricsRegistry())
}

func parseClientCred(repl *caddy.Replacer, c AuthClient) (*clientCred, error) {
	c.ID = strings.TrimSpace(repl.ReplaceKnown(c.ID, ""))
	if c.ID == "" || strings.Contains(c.ID, ":") {
		return nil, errors.New("the id must be non-empty and hold no ':'")
	}
	s := c.Secret
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		return &clientCred{id: c.ID, hashed: []byte(s), comparer: caddyauth.BcryptHash{}}, nil
	case strings.HasPrefix(s, "$argon2id$"):
		if _, _, err := caddyauth.DecodeHash([]byte(s)); err != nil {
			return nil, errors.New("the argon2id hash is malformed")
		}
		return &clientCred{id: c.ID, hashed: []byte(s), comparer: caddyauth.Argon2idHash{}}, nil
	case strings.Contains(s, "{"):
		plain := repl.ReplaceKnown(s, "")
		if strings.TrimSpace(plain) == "" || strings.ContainsAny(plain, "{}") {
			return nil, errors.New("the secret placeholder resolved to nothing (an unset {env.*} variable?)")
		}
		return &clientCred{id: c.ID, digest: sha256.Sum256([]byte(strings.TrimSpace(plain)))}, nil
	}
	return nil, errors.New("the secret must be a bcrypt or argon2id hash (mxgate hash-password) or a placeholder such as {env.NAME}; a plain secret does not belong in the configuration")
}

// Validate checks the configuration.
func (a *MXAuth) Validate() error {
	if a.Mode == "check" {
		if err := checkErrorFormat(a.ErrorFormat); err != nil {
			return fmt.Errorf("mx_auth: %w", err)
		}
	}
	return nil
}

// ServeHTTP attaches or checks credentials.
func (a *MXAuth) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if a.Mode == "attach" {
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

	id, secret, ok := r.BasicAuth()
	if ok && a.authenticate(id, secret) {
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			repl.Set("http.auth.user.id", id)
		}
		return next.ServeHTTP(w, r)
	}
	reason := "credentials_missing"
	if ok {
		reason = "credentials_invalid"
	}
	countRejection("mx_auth", reason)
	if ce := a.logger.Check(zapcore.InfoLevel, "MX credentials refused"); ce != nil {
		ce.Write(zap.String("reason", reason), zap.String("client_ip", clientIPString(r)))
	}
	rej := rejection{status: a.Failure, reason: reason, message: "Unauthorized"}
	if a.Failure == http.StatusNotFound {
		rej.message = "Not Found"
	} else {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+a.Realm+`", charset="UTF-8"`)
	}
	return rej.respond(w, a.ErrorFormat)
}

// authenticate compares secret with id's; an unknown id is compared with a
// configured client's hash, so it costs what a wrong secret costs.
func (a *MXAuth) authenticate(id, secret string) bool {
	sum := sha256.Sum256([]byte(id + ":" + secret))
	if _, ok := a.okCache.Load(sum); ok {
		return true
	}
	cred, known := a.clients[id]
	if !known {
		cred = a.decoy
	}
	ok := cred.matches([]byte(secret)) && known
	if ok && a.cacheSize.Add(1) <= 1000 {
		a.okCache.Store(sum, struct{}{})
	}
	return ok
}

// newAuthCache returns the cache of verified credentials and its counter.
func newAuthCache() (*sync.Map, *atomic.Int64) { return new(sync.Map), new(atomic.Int64) }

// Interface guards
var (
	_ caddy.Provisioner           = (*MXAuth)(nil)
	_ caddy.Validator             = (*MXAuth)(nil)
	_ caddyhttp.MiddlewareHandler = (*MXAuth)(nil)
)
