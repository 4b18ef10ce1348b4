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
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/internal/accept"
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
// sent, so that the app never holds an MX secret, and the Accept headers
// of the configured API version.
//
// The app's Accept becomes the version's media type when it says nothing
// (absent, empty) or names no MX type and admits JSON: "*/*",
// "application/*", "application/json", or a list such as the
// "application/json, text/plain, */*" that HTTP clients (MX's Node SDK
// among them) send by default, in which the most specific range matching
// application/json has a weight above 0. An Accept that names an MX type
// (application/vnd.mx.*) is the app's choice and kept; so is one that
// admits no JSON (text/html, application/xml, application/json;q=0), which
// MX then refuses with 406 as it would without the sidecar, and one that
// is malformed (RFC 9110's grammar, at most 64 ranges), which is passed on
// as the app wrote it rather than guessed at.
type AuthAttach struct {
	// ClientID and APIKey are the MX credentials; {env.*} and {file.*}
	// placeholders are resolved at provisioning.
	ClientID string `json:"client_id,omitempty"`
	APIKey   string `json:"api_key,omitempty"`

	// APIVersion is v20111101 (Accept application/vnd.mx.api.v1+json) or
	// v20250224 (Accept application/json and Accept-Version v20250224);
	// the Accept is set where the app's Accept asks for no particular type (see
	// above). Default: v20111101.
	APIVersion string `json:"api_version,omitempty"`

	// Callers (allow_callers) are who may have the credentials attached:
	// by default loopback and Unix-socket peers only; anyone else gets 403.
	client.Callers

	clientID      string
	authorization string
	accept        string
	acceptVersion string
	logger        *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (AuthAttach) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_auth_attach",
		New: func() caddy.Module { return new(AuthAttach) },
	}
}

// Provision resolves the credentials.
func (a *AuthAttach) Provision(ctx caddy.Context) (err error) {
	defer provision.NameDirective(&err, "mx_auth attach")
	secret.WarnUnredactedLogs(ctx, "mx_auth attach", secret.AuthHeaders...)
	a.logger = ctx.Logger()
	if err := a.Callers.Provision(ctx, "mx_auth", refusal.FormatJSON); err != nil {
		return err
	}
	id, err := secret.Read(a.ClientID)
	if err != nil {
		return fmt.Errorf("client_id %w", err)
	}
	key, err := secret.Read(a.APIKey)
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
	switch v := acceptVerdict(h.Values("Accept")); v {
	case acceptAny:
		h.Set("Accept", a.accept)
	case acceptNoJSON, acceptMalformed:
		if ce := a.logger.Check(zapcore.DebugLevel, "the app's Accept was passed on as sent: MX may answer 406"); ce != nil {
			ce.Write(zap.String("accept", string(v)))
		}
	}
	if a.acceptVersion != "" {
		h.Set("Accept-Version", a.acceptVersion)
	}
	return next.ServeHTTP(w, r)
}

// What the app's Accept asks for, as mx_auth attach sees it.
type acceptKind string

const (
	acceptAny       acceptKind = "any"       // nothing in particular, or JSON: replaced
	acceptMX        acceptKind = "mx_type"   // an MX media type: kept
	acceptNoJSON    acceptKind = "no_json"   // types that exclude JSON: kept
	acceptMalformed acceptKind = "malformed" // not RFC 9110's grammar: kept
)

// acceptVerdict classifies the values of the app's Accept field lines.
func acceptVerdict(fields []string) acceptKind {
	ranges, err := accept.Parse(fields)
	if err != nil {
		return acceptMalformed
	}
	if len(ranges) == 0 {
		return acceptAny
	}
	for _, r := range ranges {
		if r.Type == "application" && strings.HasPrefix(r.Subtype, "vnd.mx.") {
			return acceptMX
		}
	}
	if accept.Weight(ranges, "application", "json") > 0 {
		return acceptAny
	}
	return acceptNoJSON
}

// Credentials names the MX client whose credentials are attached: an
// mx_rate_limit beside this handler keeps that client's budget.
func (a *AuthAttach) Credentials() (kind, id string) { return "MX Platform API", a.clientID }

// AuthCheck (serving side: MX's webhooks, which carry no signature, or a
// local stand-in for MX) admits only requests with the Basic credentials
// of a configured client, and exposes the client id as {http.auth.user.id}
// (usable as a rate-limit key). A request with more than one
// Authorization header is refused whatever they hold. An unknown client
// costs the same time as a wrong secret (with clients of mixed hash kinds,
// as much as the slowest kind configured). Slow comparisons (bcrypt,
// argon2id) run at most MaxSlowHashes at once; a request that would need
// one more is answered 503 with Retry-After at once, without comparing.
// The checked Authorization header
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

	// MaxSlowHashes bounds the bcrypt and argon2id comparisons running at
	// once (each holds a core, and argon2id its memory, for tens of
	// milliseconds). A request that needs one more is refused at once with
	// 503 and Retry-After: 1, counted in mxgate_shed_total{where="mx_auth"}.
	// A secret that passed once costs an HMAC afterwards and needs no
	// slot. Default: GOMAXPROCS.
	MaxSlowHashes int `json:"max_slow_hashes,omitempty"`

	clients  map[string]*clientCred
	decoy    *clientCred   // an unknown client is compared against this
	slots    chan struct{} // one per slow comparison running
	measure  func(*clientCred) time.Duration
	cacheKey []byte // keys the tags of verified secrets
	format   refusal.Format
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
func (a *AuthCheck) Provision(ctx caddy.Context) (err error) {
	defer provision.NameDirective(&err, "mx_auth check")
	secret.WarnUnredactedLogs(ctx, "mx_auth check", secret.AuthHeaders...)
	a.logger = ctx.Logger()
	if a.format, err = refusal.ParseFormat(a.ErrorFormat, refusal.FormatJSON); err != nil {
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
	switch {
	case a.MaxSlowHashes == 0:
		a.MaxSlowHashes = runtime.GOMAXPROCS(0)
	case a.MaxSlowHashes < 0:
		return fmt.Errorf("max_slow_hashes must be at least 1, not %d", a.MaxSlowHashes)
	}
	a.slots = make(chan struct{}, a.MaxSlowHashes)
	a.clients = make(map[string]*clientCred, len(a.Clients))
	ordered := make([]*clientCred, 0, len(a.Clients))
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
		ordered = append(ordered, cred)
		kinds[cred.kind] = true
		if cred.slow != nil {
			a.logger.Info("a wrong secret for this client costs a full "+cred.kind+" comparison; for a high-entropy machine secret (an API key, a webhook secret) `mxgate hash-secret` makes each failure cost microseconds",
				zap.String("client", cred.id), zap.String("hash", slowHashCost(cred)))
		}
	}
	if a.measure == nil {
		a.measure = timeCompare
	}
	a.decoy = slowest(ordered, a.measure)
	if len(kinds) > 1 {
		a.logger.Warn("clients use different kinds of hash: an unknown client id costs what the slowest kind does ("+slowHashCost(a.decoy)+"), so a wrong secret for a client of a faster kind is refused sooner, and the time of a refusal may tell that such an id exists; use one kind (and cost) for all",
			zap.String("decoy", a.decoy.kind))
	}
	a.cacheKey = make([]byte, 32)
	if _, err := rand.Read(a.cacheKey); err != nil {
		return err
	}
	return metrics.Register(ctx.GetMetricsRegistry())
}

// slowest is the credential an unknown client id is compared against:
// the one whose comparison costs most, so that no id is refused sooner
// for being unknown than a known one with a wrong secret. A slow hash
// costs more than a fast one; among bcrypt hashes the highest cost wins,
// among argon2id ones the most memory times passes (then the fewest
// lanes); a bcrypt and an argon2id candidate are timed against each other
// with measure, once, at provisioning. Ties go to the first configured.
func slowest(creds []*clientCred, measure func(*clientCred) time.Duration) *clientCred {
	var bcrypt, argon *clientCred
	for _, cred := range creds {
		switch cred.kind {
		case kindBcrypt:
			if bcrypt == nil || bcryptCost(cred) > bcryptCost(bcrypt) {
				bcrypt = cred
			}
		case kindArgon2id:
			if argon == nil || argon2Heavier(cred, argon) {
				argon = cred
			}
		}
	}
	switch {
	case bcrypt != nil && argon != nil:
		if measure(argon) > measure(bcrypt) {
			return argon
		}
		return bcrypt
	case bcrypt != nil:
		return bcrypt
	case argon != nil:
		return argon
	}
	return creds[0] // every kind is fast
}

// bcryptCost is a bcrypt hash's cost ($2b$10$…: 10), 0 if unreadable.
func bcryptCost(c *clientCred) int {
	if len(c.hashed) < 7 {
		return 0
	}
	n, err := strconv.Atoi(string(c.hashed[4:6]))
	if err != nil {
		return 0
	}
	return n
}

// argon2Heavier reports whether argon2id hash a costs more than b: more
// memory times passes, or as much over fewer lanes.
func argon2Heavier(a, b *clientCred) bool {
	am, at, ap := argon2Params(a)
	bm, bt, bp := argon2Params(b)
	if am*at != bm*bt {
		return am*at > bm*bt
	}
	return ap < bp
}

// argon2Params reads m, t and p from an argon2id hash
// ($argon2id$v=19$m=47104,t=1,p=1$…); zeros where unreadable.
func argon2Params(c *clientCred) (m, t, p uint64) {
	parts := strings.Split(string(c.hashed), "$")
	if len(parts) < 4 {
		return 0, 0, 0
	}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, _ := strconv.ParseUint(v, 10, 32)
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			p = n
		}
	}
	return m, t, p
}

// timeCompare is how long one comparison against c takes, with a random
// secret (never a configured one).
func timeCompare(c *clientCred) time.Duration {
	var secret [16]byte
	_, _ = rand.Read(secret[:])
	start := time.Now()
	c.compare(secret[:])
	return time.Since(start)
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
	id, err := secret.Read(c.ID)
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
		plain, err := secret.Read(s)
		if err != nil {
			return nil, errors.New("the secret placeholder resolved to nothing (an unset {env.*} variable?)")
		}
		return &clientCred{id: id, kind: kindPlaceholder, digest: sha256.Sum256([]byte(plain))}, nil
	}
	return nil, errors.New("the secret must be a hash (mxgate hash-secret for a machine secret, mxgate hash-password for a password) or a placeholder such as {env.NAME}; a plain secret does not belong in the configuration")
}

// ServeHTTP checks the credentials.
func (a *AuthCheck) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rf := refusal.Refusal{Status: a.Failure, Reason: "credentials_missing", Message: "Unauthorized"}
	if len(r.Header.Values("Authorization")) > 1 {
		// Which one would the upstream believe? Neither.
		rf.Reason = "credentials_duplicated"
		return a.refuse(w, r, rf)
	}
	id, secret, ok := r.BasicAuth()
	var pass bool
	if ok {
		var busy bool
		if pass, busy = a.authenticate(id, secret); busy {
			metrics.ShedAuth.Inc()
			if ce := a.logger.Check(zapcore.DebugLevel, "credential check shed: every slow-hash slot busy"); ce != nil {
				ce.Write(zap.Int("max_slow_hashes", a.MaxSlowHashes), zap.String("client_ip", client.IP(r)))
			}
			w.Header().Set("Retry-After", "1")
			refusal.CloseUnread(w, r)
			return refusal.Refuse(w, r, "mx_auth", a.format, refuseHashBusy)
		}
	}
	if pass {
		client.SetUser(r, id)
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

func (a *AuthCheck) refuse(w http.ResponseWriter, r *http.Request, rf refusal.Refusal) error {
	if ce := a.logger.Check(zapcore.DebugLevel, "MX credentials refused"); ce != nil {
		ce.Write(zap.String("reason", rf.Reason), zap.String("client_ip", client.IP(r)))
	}
	if a.Failure == http.StatusNotFound {
		rf.Message = "Not Found"
	} else {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+a.Realm+`", charset="UTF-8"`)
	}
	refusal.CloseUnread(w, r)
	return refusal.Refuse(w, r, "mx_auth", a.format, rf)
}

// refuseHashBusy answers a request whose check would need a slow-hash
// comparison beyond MaxSlowHashes.
var refuseHashBusy = refusal.Refusal{Status: http.StatusServiceUnavailable, Reason: "slow_hash_busy",
	Message: "Service unavailable: too many credential checks in progress"}

// authenticate compares secret with id's; an unknown id is compared with
// the decoy, so it costs what a wrong secret for the slowest kind costs.
// A secret that passed a slow comparison is remembered (by its tag, in the
// client's one slot), so the client's next requests cost an HMAC. busy
// reports that the comparison needed a slow-hash slot and none was free:
// nothing was compared.
func (a *AuthCheck) authenticate(id, secret string) (ok, busy bool) {
	cred, known := a.clients[id]
	if !known {
		if !a.acquire(a.decoy) {
			return false, true
		}
		a.decoy.compare([]byte(secret))
		a.release(a.decoy)
		return false, false
	}
	if cred.slow == nil { // fast already: nothing to cache
		return cred.compare([]byte(secret)), false
	}
	tag := a.tag(secret)
	if last := cred.verified.Load(); last != nil && subtle.ConstantTimeCompare(tag[:], last[:]) == 1 {
		return true, false
	}
	if !a.acquire(cred) {
		return false, true
	}
	ok = cred.compare([]byte(secret))
	a.release(cred)
	if !ok {
		return false, false
	}
	cred.verified.Store(&tag)
	return true, false
}

// acquire takes a slow-hash slot for a comparison against c, if c's is
// slow; it reports false, at once, when every slot is taken.
func (a *AuthCheck) acquire(c *clientCred) bool {
	if c.slow == nil {
		return true
	}
	select {
	case a.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// release gives back the slot acquire took for c.
func (a *AuthCheck) release(c *clientCred) {
	if c.slow != nil {
		<-a.slots
	}
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
