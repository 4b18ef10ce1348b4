// Package fdxauth is the fdx_auth handler: an FDX v6 resource server's
// certificate-bound OAuth 2.0 access tokens, and the scope each endpoint
// requires.
package fdxauth

import (
	"cmp"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/fdx"
	"github.com/mxgate/mxgate/internal/servername"
	"github.com/mxgate/mxgate/internal/urlpath"
)

func init() {
	caddy.RegisterModule(FDXAuth{})
}

// FDXAuth protects an FDX v6 resource server: it refuses a request whose
// Host is not the TLS server name of its connection, and one whose
// connection verified no client certificate; it validates the OAuth 2.0
// access token of each request (a JWT against the authorization server's
// JWKS, or an opaque token by introspection), checks that the token is
// bound to the verified client certificate, and enforces the scope the
// endpoint requires. Failures answer as RFC 6750 says, with an FDX error
// body. Mutual TLS itself is Caddy's: tls { client_auth { … } }, with a
// trust pool (only a certificate the handshake verified counts).
type FDXAuth struct {
	// Issuer is the iss every token must carry.
	Issuer string `json:"issuer,omitempty"`
	// Audiences: a token's aud must hold one of them.
	Audiences []string `json:"audiences,omitempty"`
	// JWKSURL is the authorization server's key set, for JWT tokens.
	// Without it, the key set is the one the issuer's metadata names
	// (jwks_uri; RFC 8414, then OpenID Connect Discovery), unless
	// Introspection has a URL of its own: then every token is
	// introspected.
	JWKSURL string `json:"jwks_url,omitempty"`
	// JWKSMinRefresh is the least time between two fetches of the key set
	// made for tokens naming unknown key ids; however many such tokens
	// arrive, one fetch at a time. A token that arrives when the next such
	// fetch is at most a second away waits for it. Default: 1s.
	JWKSMinRefresh caddy.Duration `json:"jwks_min_refresh,omitempty"`
	// JWKSMaxAge is the age past which the key set is fetched again (in
	// the background, on its next use), so that a key the authorization
	// server removed stops being accepted. Default: 5m.
	JWKSMaxAge caddy.Duration `json:"jwks_max_age,omitempty"`
	// Introspection checks opaque tokens (RFC 7662).
	Introspection *FDXIntrospection `json:"introspection,omitempty"`
	// TLSTrustPoolRaw is the source of the CAs trusted for every
	// connection to the authorization server (discovery, JWKS,
	// introspection), a module of Caddy's tls.ca_pool.source namespace
	// (file, inline, pki_root, …); it replaces the system's roots for
	// these connections only. Default: the system's roots.
	TLSTrustPoolRaw json.RawMessage `json:"tls_trust_pool,omitempty" caddy:"namespace=tls.ca_pool.source inline_key=provider"`
	// TLSClientAuth is the client certificate presented on every
	// connection to the authorization server.
	TLSClientAuth *FDXClientCertificate `json:"tls_client_auth,omitempty"`
	// Algorithms allowed for JWT tokens. Default: PS256, ES256. none and
	// HMAC algorithms are refused.
	Algorithms []string `json:"algorithms,omitempty"`
	// Leeway for exp, nbf and iat. Default: 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// ClientCert is "require" or "optional". Required, a request whose
	// TLS connection verified no client certificate (one that came over
	// plain HTTP, or through a connection policy without client
	// authentication, or with a certificate no trust pool vouched for) is
	// refused with 400 invalid_request before its token is looked at, as
	// FAPI's mutual TLS requires. Optional lets it on to the token check,
	// for tokens bound by other means. Default: require.
	ClientCert string `json:"client_cert,omitempty"`
	// CertBound requires cnf.x5t#S256 to match the client certificate
	// that the TLS connection verified (RFC 8705); a certificate the
	// connection did not verify is never used. Default: true.
	CertBound *bool `json:"cert_bound,omitempty"`
	// Scopes add rows to the default FDX v6 table, or replace rows with the
	// same method and pattern. A path no row matches is refused.
	Scopes []FDXScope `json:"scopes,omitempty"`
	// ForwardClaims maps a claim to a request header for the upstream;
	// incoming copies of those headers are always removed.
	ForwardClaims map[string]string `json:"forward_claims,omitempty"`
	// Realm of WWW-Authenticate. Default: fdx.
	Realm string `json:"realm,omitempty"`

	// ErrorFormat is how a refusal is written: fdx
	// ({"code","message","debugMessage"}), json, mdx, text or
	// handle_errors. Default: fdx.
	ErrorFormat string `json:"error_format,omitempty"`

	format     gate.Format
	table      *fdx.Table
	unregister []func()
	validator  *fdx.Validator
	jwks       *fdx.JWKS
	introspect *fdx.Introspector
	discovery  *fdx.Discovery
	transport  *http.Transport
	logger     *zap.Logger
}

// The values of ClientCert.
const (
	ClientCertRequire  = "require"
	ClientCertOptional = "optional"
)

// FDXIntrospection configures RFC 7662 introspection.
type FDXIntrospection struct {
	// URL is the endpoint; empty, it is the one the issuer's metadata
	// names (introspection_endpoint, or its mutual-TLS alias with
	// tls_client_auth).
	URL      string `json:"url,omitempty"`
	ClientID string `json:"client_id"`
	// ClientSecret is for Auth basic; {env.*} and {file.*} work.
	ClientSecret string `json:"client_secret,omitempty"`
	// Auth is how the gateway authenticates as a client: basic
	// (client_secret_basic), tls_client_auth (RFC 8705 §2: the
	// certificate of TLSClientAuth) or private_key_jwt (RFC 7523: an
	// assertion signed with KeyFile). Default: basic.
	Auth string `json:"auth,omitempty"`
	// KeyFile is the PEM private key of private_key_jwt; KeyID, if set,
	// is the kid its assertions name.
	KeyFile string `json:"key_file,omitempty"`
	KeyID   string `json:"key_id,omitempty"`
	// RequireAudience refuses an active answer without aud (RFC 7662
	// makes it optional). An answer with an aud must hold one of the
	// audiences whatever this says. Default: true.
	RequireAudience *bool          `json:"require_aud,omitempty"`
	CacheFor        caddy.Duration `json:"cache_for,omitempty"`
}

// The values of FDXIntrospection.Auth.
const (
	AuthBasic         = "basic"
	AuthTLSClientAuth = "tls_client_auth"
	AuthPrivateKeyJWT = "private_key_jwt"
)

// FDXClientCertificate is a certificate and its key, PEM files.
type FDXClientCertificate struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// FDXScope is one scope-table row: "a|b" scopes, or "authenticated".
type FDXScope struct {
	Method  string `json:"method"`
	Pattern string `json:"pattern"`
	Scopes  string `json:"scopes"`
}

// CaddyModule returns the Caddy module information.
func (FDXAuth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.fdx_auth",
		New: func() caddy.Module { return new(FDXAuth) },
	}
}

// Provision builds the validator and the scope table.
func (a *FDXAuth) Provision(ctx caddy.Context) (err error) {
	defer gate.NameDirective(&err, "fdx_auth")
	gate.WarnUnredactedLogs(ctx, "fdx_auth", gate.AuthSecretHeaders...)
	a.logger = ctx.Logger()
	if a.format, err = gate.ParseFormat(a.ErrorFormat, gate.FormatFDX); err != nil {
		return err
	}
	if a.Issuer == "" || len(a.Audiences) == 0 {
		return errors.New("issuer and at least one audience are required")
	}
	// {env.*} and {file.*} placeholders, resolved once, as for jwks_url
	if a.Issuer = gate.Resolve(a.Issuer); a.Issuer == "" {
		return errors.New("issuer is empty (an unset {env.*} variable or an empty {file.*}?)")
	}
	audiences := make([]string, len(a.Audiences))
	for i, aud := range a.Audiences {
		if audiences[i] = gate.Resolve(aud); audiences[i] == "" {
			return fmt.Errorf("audience %d is empty (an unset {env.*} variable or an empty {file.*}?)", i+1)
		}
	}
	a.Audiences = audiences
	if a.Realm == "" {
		a.Realm = "fdx"
	}
	if a.CertBound == nil {
		on := true
		a.CertBound = &on
	}
	switch a.ClientCert {
	case "":
		a.ClientCert = ClientCertRequire
	case ClientCertRequire, ClientCertOptional:
	default:
		return fmt.Errorf("client_cert must be %s or %s, not %q", ClientCertRequire, ClientCertOptional, a.ClientCert)
	}
	if a.ClientCert == ClientCertOptional && !*a.CertBound {
		a.logger.Warn("fdx_auth: client_cert optional and cert_bound off: a token works from any client that holds it")
	}
	if len(a.Algorithms) == 0 {
		a.Algorithms = []string{"PS256", "ES256"}
	}
	if a.Leeway == 0 {
		a.Leeway = caddy.Duration(30 * time.Second)
	}
	if a.Leeway < 0 || a.JWKSMinRefresh < 0 || a.JWKSMaxAge < 0 {
		return errors.New("durations must be positive")
	}
	var algs []jose.SignatureAlgorithm
	for _, s := range a.Algorithms {
		alg, err := fdx.ParseAlgorithm(s)
		if err != nil {
			return err
		}
		algs = append(algs, alg)
	}
	var rows []fdx.Rule
	for _, s := range a.Scopes {
		r, err := fdx.NewRule(s.Method, s.Pattern, s.Scopes)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	a.table = fdx.DefaultTable().With(rows...)
	if err := a.provisionAuthorizationServer(ctx, algs); err != nil {
		return err
	}
	for claim, header := range a.ForwardClaims {
		if claim == "" || header == "" || strings.ContainsAny(header, " :") {
			return fmt.Errorf("bad forward_claims entry %q -> %q", claim, header)
		}
		a.ForwardClaims[claim] = textproto.CanonicalMIMEHeaderKey(header)
	}
	return gate.RegisterMetrics(ctx.GetMetricsRegistry())
}

// Cleanup withdraws the authorization server from readiness checks and
// closes its idle connections.
func (a *FDXAuth) Cleanup() error {
	for _, f := range a.unregister {
		f()
	}
	a.unregister = nil
	if a.transport != nil {
		a.transport.CloseIdleConnections()
	}
	return nil
}

// failure is an RFC 6750 failure with an FDX error body.
type failure struct {
	status int
	oauth  string // error attribute; "" for a request with no token or an unavailable server
	scope  string // required scope, with insufficient_scope
	debug  string // the reason; never holds the token
}

// ServeHTTP authorizes the request.
func (a *FDXAuth) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ids := r.Header.Values("X-Fapi-Interaction-Id")
	id := ""
	if len(ids) == 1 {
		id = ids[0]
	}
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		id = uuid.NewString()
	}
	r.Header.Set("X-Fapi-Interaction-Id", id)
	w.Header().Set("X-Fapi-Interaction-Id", id)
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Add(zap.String("fapi_interaction_id", id))
	}
	for _, h := range a.ForwardClaims {
		r.Header.Del(h)
	}
	if fail := a.checkConnection(r); fail != nil {
		return a.refuse(w, r, fail, id)
	}
	p, fail := a.checkForm(r, len(ids))
	if fail != nil {
		return a.refuse(w, r, fail, id)
	}
	claims, fail := a.authorize(r, p)
	if fail != nil {
		return a.refuse(w, r, fail, id)
	}
	for claim, h := range a.ForwardClaims {
		if v, ok := claims.All[claim]; ok {
			if s, isStr := v.(string); isStr {
				r.Header.Set(h, s)
			} else if b, err := json.Marshal(v); err == nil {
				r.Header.Set(h, string(b))
			}
		}
	}
	gate.SetUser(r, claims.ClientID)
	return next.ServeHTTP(w, r)
}

// checkConnection refuses, before anything else, a request whose Host is
// not the server name its TLS connection was made for (compared in ASCII,
// as internal/servername says: Caddy's strict_sni_host folds Unicode, and
// its connection policies and certificate lookup read the name otherwise
// than each other), and, unless ClientCert is optional, one whose
// connection verified no client certificate.
func (a *FDXAuth) checkConnection(r *http.Request) *failure {
	if r.TLS != nil {
		if err := servername.MatchHost(r.TLS.ServerName, r.Host); err != nil {
			debug := "the Host is not the TLS server name"
			switch err {
			case servername.ErrNoServerName:
				debug = "the TLS connection named no server (SNI)"
			case servername.ErrNotASCII:
				debug = "the TLS server name or the Host is not plain ASCII"
			case servername.ErrMalformed:
				debug = "the TLS server name or the Host is not a host name"
			}
			return &failure{status: http.StatusMisdirectedRequest, debug: debug}
		}
	}
	if a.ClientCert != ClientCertOptional && verifiedCert(r) == nil {
		return &failure{status: 400, oauth: "invalid_request", debug: "no client certificate verified by the TLS connection"}
	}
	return nil
}

// checkForm refuses, before any token is looked at, a request whose form
// would let the application behind the gateway read it otherwise than
// fdx_auth does: a path that is not canonical (as the client sent it), a
// second interaction id, trailers (headers that arrive after the body,
// unchecked), a ";" in the query (which some frameworks split on, hiding
// an access_token from Go's parser), or the interaction id sent also under
// a spelling with "_" for "-" (which CGI-style servers read as the same
// header). Copies of forward_claims headers under such a spelling are
// removed, as the headers themselves are. It returns the path as sent.
func (a *FDXAuth) checkForm(r *http.Request, interactionIDs int) (string, *failure) {
	invalid := func(debug string) (string, *failure) {
		return "", &failure{status: 400, oauth: "invalid_request", debug: debug}
	}
	target := r.RequestURI
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.RequestURI != "" {
		target = orig.RequestURI
	}
	_, rawQuery, _ := strings.Cut(target, "?")
	p, ok := urlpath.FromRequestURI(target)
	if !ok {
		return invalid("request path is not canonical: " + string(urlpath.NotAPath))
	}
	if err := urlpath.Check(p); err != nil {
		reason := urlpath.NotAPath
		var pe *urlpath.Error
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		return invalid("request path is not canonical: " + string(reason))
	}
	switch {
	case interactionIDs > 1:
		return invalid("more than one x-fapi-interaction-id")
	case len(r.Trailer) > 0 || len(r.Header["Trailer"]) > 0:
		return invalid("trailers are not accepted")
	case strings.Contains(rawQuery, ";"):
		return invalid("semicolon in the query string")
	}
	if q, _ := url.ParseQuery(rawQuery); q.Has("access_token") {
		return invalid("access tokens are accepted only in the Authorization header")
	}
	for k := range r.Header {
		if !strings.Contains(k, "_") {
			continue
		}
		alias := textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(k, "_", "-"))
		switch {
		case alias == "X-Fapi-Interaction-Id":
			return invalid("x-fapi-interaction-id sent under a second spelling")
		case a.claimHeader(alias):
			delete(r.Header, k)
		}
	}
	return p, nil
}

// claimHeader reports whether h is a forward_claims header.
func (a *FDXAuth) claimHeader(h string) bool {
	for _, fh := range a.ForwardClaims {
		if fh == h {
			return true
		}
	}
	return false
}

// authorize checks the token and the scope the endpoint at p (the path
// as sent, canonical) requires.
func (a *FDXAuth) authorize(r *http.Request, p string) (*fdx.Claims, *failure) {
	auths := r.Header.Values("Authorization")
	if len(auths) == 0 {
		return nil, &failure{status: 401, debug: "no access token"}
	}
	scheme, tok, _ := strings.Cut(auths[0], " ")
	if len(auths) > 1 || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return nil, &failure{status: 401, oauth: "invalid_token", debug: "the Authorization header is not one Bearer token"}
	}
	var claims *fdx.Claims
	var err error
	switch {
	case a.validator != nil && fdx.LooksLikeJWT(tok):
		claims, err = a.validator.Validate(r.Context(), tok)
	case a.introspect != nil:
		claims, err = a.introspect.Introspect(r.Context(), tok)
	default:
		err = &fdx.TokenError{Reason: "not a JWT"}
	}
	var te *fdx.TokenError
	switch {
	case err == nil:
	case errors.As(err, &te):
		return nil, &failure{status: 401, oauth: "invalid_token", debug: te.Reason}
	case errors.Is(err, fdx.ErrUnavailable):
		return nil, &failure{status: 503, debug: "the authorization server cannot be reached to check the token"}
	default:
		return nil, &failure{status: 401, oauth: "invalid_token", debug: "token could not be checked"}
	}
	if *a.CertBound {
		cert := verifiedCert(r)
		if cert == nil {
			return nil, &failure{status: 401, oauth: "invalid_token", debug: "no verified client certificate to bind the token to"}
		}
		if !claims.BoundTo(cert) {
			return nil, &failure{status: 401, oauth: "invalid_token", debug: "token is not bound to this client certificate"}
		}
	}
	rule, err := a.table.Match(r.Method, p)
	switch {
	case err != nil: // checkForm has refused these already
		return nil, &failure{status: 400, oauth: "invalid_request", debug: "request path is not canonical"}
	case rule == nil:
		return nil, &failure{status: 403, oauth: "insufficient_scope", debug: "no scope rule allows this endpoint"}
	case !rule.Allows(claims.Scopes):
		return nil, &failure{status: 403, oauth: "insufficient_scope", scope: rule.Required(), debug: "scope " + rule.Required() + " required"}
	}
	return claims, nil
}

func (a *FDXAuth) refuse(w http.ResponseWriter, r *http.Request, f *failure, id string) error {
	if ce := a.logger.Check(zapcore.DebugLevel, "FDX request refused"); ce != nil {
		ce.Write(zap.Int("status", f.status), zap.String("reason", f.debug), zap.String("fapi_interaction_id", id),
			zap.String("method", r.Method), zap.String("path", r.URL.Path))
	}
	reason := strconv.Itoa(f.status) + "_" + cmp.Or(f.oauth, "no_token")
	switch f.status {
	case http.StatusServiceUnavailable:
		reason = "authorization_server_unavailable"
		w.Header().Set("Retry-After", "1")
	case http.StatusMisdirectedRequest: // not an authentication failure: no challenge
		reason = "misdirected"
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
	default:
		challenge := `Bearer realm="` + a.Realm + `"`
		if f.oauth != "" {
			challenge += `, error="` + f.oauth + `", error_description="` + f.debug + `"`
		}
		if f.scope != "" {
			challenge += `, scope="` + f.scope + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	gate.CloseUnread(w, r)
	return gate.Refuse(w, r, "fdx_auth", a.format, gate.Refusal{Status: f.status, Reason: reason, Message: f.debug})
}

// verifiedCert returns the client certificate that r's TLS connection
// verified against a trust pool, if any. A certificate the connection
// merely received (client_auth mode request or require, or a leaf
// verifier) is not one.
func verifiedCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// Interface guards
var (
	_ caddy.Provisioner           = (*FDXAuth)(nil)
	_ caddy.CleanerUpper          = (*FDXAuth)(nil)
	_ caddyhttp.MiddlewareHandler = (*FDXAuth)(nil)
)
