// Package fdxauth is the fdx_auth handler: an FDX v6 resource server's
// sender-constrained OAuth 2.0 access tokens (bound to a client
// certificate, or to a DPoP key), the scope each endpoint requires, and
// the accounts and consent a token's consent grants.
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

	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
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
// bound to the verified client certificate, or to the key of the DPoP
// proof that comes with it (RFC 9449), and enforces the scope the
// endpoint requires and, when told where the token lists them, the
// accounts and consent its consent grants. Failures answer as RFC 6750
// and RFC 9449 say, with an FDX error body. Mutual TLS itself is Caddy's:
// tls { client_auth { … } }, with a trust pool (only a certificate the
// handshake verified counts).
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
	// CertBound requires every token to be sender-constrained: a token
	// with cnf.x5t#S256 must name the client certificate that the TLS
	// connection verified (RFC 8705; a certificate the connection did not
	// verify is never used), and one without it must be DPoP-bound
	// (cnf.jkt, with DPoP allowed or required). Off, a token with neither
	// passes as a bearer token, and cnf.x5t#S256 is not compared; a
	// DPoP-bound token needs its proof whatever this says. Default: true.
	CertBound *bool `json:"cert_bound,omitempty"`

	// DPoP is off, allowed or required (RFC 9449). Off, a DPoP-bound
	// token (cnf.jkt) is refused. Allowed, a DPoP-bound token is accepted
	// only as Authorization: DPoP with a valid proof in the DPoP header,
	// and other tokens as Bearer, as without DPoP. Required, only
	// DPoP-bound tokens, with their proofs, are accepted. A DPoP-bound
	// token sent as Bearer is always refused. Default: off.
	DPoP string `json:"dpop,omitempty"`
	// DPoPAlgorithms a proof may be signed with: asymmetric algorithms
	// only (none and HMAC are refused). Default: ES256, PS256.
	DPoPAlgorithms []string `json:"dpop_algorithms,omitempty"`
	// DPoPMaxAge is how old (by its iat) a proof may be; one whose iat is
	// more than Leeway ahead is refused too. Each proof's jti is refused a
	// second time for DPoPMaxAge + Leeway + 1s. Default: 60s.
	DPoPMaxAge caddy.Duration `json:"dpop_max_age,omitempty"`
	// DPoPNonce makes the gateway issue server nonces (DPoP-Nonce) and
	// require them in proofs (RFC 9449 §9). Nonces are stateless: an HMAC
	// of a period of DPoPMaxAge. Default: false.
	DPoPNonce bool `json:"dpop_nonce,omitempty"`
	// DPoPNonceKey is the base64 of the nonces' key, at least 32 bytes;
	// {env.*} and {file.*} work. Replicas given the same key accept each
	// other's nonces. Default: a random key of this process.
	DPoPNonceKey string `json:"dpop_nonce_key,omitempty"`
	// DPoPOrigin is the scheme, host and port clients address
	// (https://fdx.bank.example), which a proof's htu must begin with;
	// for a gateway behind a TLS-terminating balancer. Default: https
	// (or http over plain HTTP) and the request's Host.
	DPoPOrigin string `json:"dpop_origin,omitempty"`
	// DPoPJTICacheSize bounds the jtis remembered at once; when the cache
	// is full, DPoP requests are refused with 503 until entries expire.
	// Default: 1000000.
	DPoPJTICacheSize int `json:"dpop_jti_cache_size,omitempty"`
	// The jti cache's store: in this process (default) or in Redis, so
	// that a proof replayed to another replica is refused too.
	store.Config

	// AccountClaim, when set, is where a token lists the accounts its
	// consent grants: a path's {accountId} must be one of them (403
	// otherwise, and for a token without the claim).
	AccountClaim *FDXGrantClaim `json:"account_claim,omitempty"`
	// ConsentClaim, when set, is where a token names its consent: a
	// path's {consentId} must be it.
	ConsentClaim *FDXGrantClaim `json:"consent_claim,omitempty"`
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

	format     refusal.Format
	table      *fdx.Table
	unregister []func()
	validator  *fdx.Validator
	jwks       *fdx.JWKS
	introspect *fdx.Introspector
	discovery  *fdx.Discovery
	transport  *http.Transport
	logger     *zap.Logger

	dpopAlgs []jose.SignatureAlgorithm
	algsAttr string // the challenge's algs
	proofs   *fdx.ProofChecker
	nonces   *fdx.Nonces
	origin   string // dpop_origin, normalised
	jti      *store.Binding[jtiState]
	jtiStore *store.Provisioned
	grants   *fdx.Grants
	closers  []func()
	now      func() time.Time
}

// FDXGrantClaim is where a token lists what its consent grants: a claim
// (Claim: for accounts a JSON array of strings, for a consent a string),
// or, with Claim "authorization_details" (RFC 9396), the member Member of
// every entry of type Type (an array of strings, or a string).
type FDXGrantClaim struct {
	Claim  string `json:"claim"`
	Type   string `json:"type,omitempty"`
	Member string `json:"member,omitempty"`
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

// Validate checks the options among themselves, taking nothing: it reads
// no file and resolves no placeholder. Caddy calls it after Provision;
// Provision calls it first, so that a bad configuration fails before the
// DPoP jti cache, a Redis client or what is fetched from the
// authorization server (kept across reloads) is taken.
func (a *FDXAuth) Validate() (err error) {
	defer provision.NameDirective(&err, "fdx_auth")
	if _, err := refusal.ParseFormat(a.ErrorFormat, refusal.FormatFDX); err != nil {
		return err
	}
	if a.Issuer == "" || len(a.Audiences) == 0 {
		return errors.New("issuer and at least one audience are required")
	}
	switch a.ClientCert {
	case "", ClientCertRequire, ClientCertOptional:
	default:
		return fmt.Errorf("client_cert must be %s or %s, not %q", ClientCertRequire, ClientCertOptional, a.ClientCert)
	}
	if a.Leeway < 0 || a.JWKSMinRefresh < 0 || a.JWKSMaxAge < 0 {
		return errors.New("durations must be positive")
	}
	for _, s := range a.Algorithms {
		if _, err := fdx.ParseAlgorithm(s); err != nil {
			return err
		}
	}
	for _, s := range a.Scopes {
		if _, err := fdx.NewRule(s.Method, s.Pattern, s.Scopes); err != nil {
			return err
		}
	}
	if _, err := a.buildGrants(); err != nil {
		return err
	}
	if err := a.validateDPoP(); err != nil {
		return err
	}
	if err := a.validateAuthorizationServer(); err != nil {
		return err
	}
	for claim, header := range a.ForwardClaims {
		if claim == "" || header == "" || strings.ContainsAny(header, " :") {
			return fmt.Errorf("bad forward_claims entry %q -> %q", claim, header)
		}
	}
	return nil
}

// Provision checks the options (Validate), builds the validator and the
// scope table, and takes the DPoP jti cache and what is fetched from the
// authorization server.
func (a *FDXAuth) Provision(ctx caddy.Context) (err error) {
	if err := a.Validate(); err != nil {
		return err // named by Validate
	}
	defer provision.NameDirective(&err, "fdx_auth")
	secret.WarnUnredactedLogs(ctx, "fdx_auth", secret.AuthHeaders...)
	a.logger = ctx.Logger()
	if a.format, err = refusal.ParseFormat(a.ErrorFormat, refusal.FormatFDX); err != nil {
		return err
	}
	// {env.*} and {file.*} placeholders, resolved once, as for jwks_url
	if a.Issuer = provision.Resolve(a.Issuer); a.Issuer == "" {
		return errors.New("issuer is empty (an unset {env.*} variable or an empty {file.*}?)")
	}
	audiences := make([]string, len(a.Audiences))
	for i, aud := range a.Audiences {
		if audiences[i] = provision.Resolve(aud); audiences[i] == "" {
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
	if a.ClientCert == "" {
		a.ClientCert = ClientCertRequire
	}
	if a.ClientCert == ClientCertOptional && !*a.CertBound && a.DPoP != DPoPRequired {
		a.logger.Warn("fdx_auth: client_cert optional and cert_bound off: a token that is not DPoP-bound works from any client that holds it")
	}
	if len(a.Algorithms) == 0 {
		a.Algorithms = []string{"PS256", "ES256"}
	}
	if a.Leeway == 0 {
		a.Leeway = caddy.Duration(30 * time.Second)
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
	if a.grants, err = a.buildGrants(); err != nil {
		return err
	}
	if err := a.provisionDPoP(ctx); err != nil {
		return err
	}
	if err := a.provisionAuthorizationServer(ctx, algs); err != nil {
		return err
	}
	for claim, header := range a.ForwardClaims {
		a.ForwardClaims[claim] = textproto.CanonicalMIMEHeaderKey(header)
	}
	return metrics.Register(ctx.GetMetricsRegistry())
}

// buildGrants checks account_claim and consent_claim; nil when neither
// is given.
func (a *FDXAuth) buildGrants() (*fdx.Grants, error) {
	g := &fdx.Grants{}
	for _, c := range []struct {
		name string
		in   *FDXGrantClaim
		out  **fdx.GrantClaim
	}{{"account_claim", a.AccountClaim, &g.Accounts}, {"consent_claim", a.ConsentClaim, &g.Consent}} {
		if c.in == nil {
			continue
		}
		gc := fdx.GrantClaim{Claim: c.in.Claim, Type: c.in.Type, Member: c.in.Member}
		if err := gc.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %v", c.name, err)
		}
		*c.out = &gc
	}
	if g.Accounts == nil && g.Consent == nil {
		return nil, nil
	}
	return g, nil
}

// Cleanup withdraws the authorization server from readiness checks, lets
// go of the key set, metadata and introspection answers kept across
// reloads (the last configuration to hold one closes it: a fetch under
// way is cancelled) and of the DPoP jti cache, and closes its idle
// connections.
func (a *FDXAuth) Cleanup() error {
	for _, f := range a.unregister {
		f()
	}
	a.unregister = nil
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
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
	reason string // the refusal's reason in metrics, if not <status>_<oauth>
	dpop   bool   // the error is the DPoP challenge's (the request used DPoP)
	nonce  bool   // send a fresh DPoP-Nonce
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
	claims, fail := a.authorize(w, r, p)
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
	client.SetUser(r, claims.ClientID)
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

// authorize checks the token, its binding (to the client certificate,
// or to the key of its DPoP proof), the scope the endpoint at p (the path
// as sent, canonical) requires, and the accounts and consent it grants.
func (a *FDXAuth) authorize(w http.ResponseWriter, r *http.Request, p string) (*fdx.Claims, *failure) {
	auths := r.Header.Values("Authorization")
	if len(auths) == 0 {
		return nil, &failure{status: 401, debug: "no access token"}
	}
	scheme, tok, _ := strings.Cut(auths[0], " ")
	dpop := a.DPoP != DPoPOff && strings.EqualFold(scheme, "DPoP")
	if len(auths) > 1 || !(dpop || strings.EqualFold(scheme, "Bearer")) || tok == "" || strings.ContainsAny(tok, " \t") {
		debug := "the Authorization header is not one Bearer token"
		if a.DPoP != DPoPOff {
			debug = "the Authorization header is not one Bearer or DPoP token"
		}
		return nil, &failure{status: 401, oauth: "invalid_token", debug: debug}
	}
	claims, fail := a.authorizeToken(w, r, p, tok, dpop)
	if fail != nil && dpop {
		fail.dpop = true // the error is the scheme's the client used
	}
	return claims, fail
}

// authorizeToken checks tok, sent with the DPoP scheme or Bearer.
func (a *FDXAuth) authorizeToken(w http.ResponseWriter, r *http.Request, p, tok string, dpop bool) (*fdx.Claims, *failure) {
	if a.DPoP == DPoPRequired && !dpop {
		return nil, &failure{status: 401, oauth: "invalid_token", debug: "DPoP is required: send a DPoP-bound token as Authorization: DPoP, with its proof"}
	}
	var proof *fdx.Proof
	if dpop {
		var fail *failure
		if proof, fail = a.readProof(r); fail != nil {
			return nil, fail
		}
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
	if fail := a.checkBinding(w, r, p, tok, claims, proof); fail != nil {
		return nil, fail
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
	if a.grants != nil {
		if err := a.grants.Check(rule, p, claims.All); err != nil {
			var ge *fdx.GrantError
			debug := "not granted"
			if errors.As(err, &ge) {
				debug = ge.Reason
			}
			return nil, &failure{status: 403, oauth: "insufficient_scope", reason: "403_not_granted", debug: debug}
		}
	}
	return claims, nil
}

// checkBinding checks that the token is used by the client it was issued
// to: a DPoP-bound token (cnf.jkt) only with the DPoP scheme and a valid
// proof by its key, never as a bearer token nor with dpop off; a token
// with cnf.x5t#S256, with cert_bound on, only over a connection that
// verified that certificate; and, with cert_bound on, no token bound to
// neither.
func (a *FDXAuth) checkBinding(w http.ResponseWriter, r *http.Request, p, tok string, claims *fdx.Claims, proof *fdx.Proof) *failure {
	jkt := claims.KeyThumbprint
	switch {
	case jkt != "" && a.DPoP == DPoPOff:
		return &failure{status: 401, oauth: "invalid_token", debug: "the token is DPoP-bound (cnf.jkt), and this resource server does not accept DPoP"}
	case jkt != "" && proof == nil:
		return &failure{status: 401, oauth: "invalid_token", dpop: true, debug: "the token is DPoP-bound: send it as Authorization: DPoP, with its proof"}
	case jkt == "" && proof != nil:
		return &failure{status: 401, oauth: "invalid_token", debug: "the token is not DPoP-bound (no cnf.jkt): send it as a Bearer token"}
	case jkt != "":
		method := r.Method
		if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.Method != "" {
			method = orig.Method
		}
		if fail := a.checkProof(w, r, method, p, tok, jkt, proof); fail != nil {
			return fail
		}
	}
	if !*a.CertBound || (jkt != "" && claims.CertThumbprint == "") {
		return nil
	}
	cert := verifiedCert(r)
	if cert == nil {
		return &failure{status: 401, oauth: "invalid_token", debug: "no verified client certificate to bind the token to"}
	}
	if !claims.BoundTo(cert) {
		return &failure{status: 401, oauth: "invalid_token", debug: "token is not bound to this client certificate"}
	}
	return nil
}

func (a *FDXAuth) refuse(w http.ResponseWriter, r *http.Request, f *failure, id string) error {
	if ce := a.logger.Check(zapcore.DebugLevel, "FDX request refused"); ce != nil {
		ce.Write(zap.Int("status", f.status), zap.String("reason", f.debug), zap.String("fapi_interaction_id", id),
			zap.String("method", r.Method), zap.String("path", r.URL.Path))
	}
	reason := cmp.Or(f.reason, strconv.Itoa(f.status)+"_"+cmp.Or(f.oauth, "no_token"))
	switch f.status {
	case http.StatusServiceUnavailable:
		reason = cmp.Or(f.reason, "authorization_server_unavailable")
		w.Header().Set("Retry-After", "1")
	case http.StatusMisdirectedRequest: // not an authentication failure: no challenge
		reason = "misdirected"
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
	default:
		a.challenges(w.Header(), f)
	}
	refusal.CloseUnread(w, r)
	return refusal.Refuse(w, r, "fdx_auth", a.format, refusal.Refusal{Status: f.status, Reason: reason, Message: f.debug})
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
	_ caddy.Validator             = (*FDXAuth)(nil)
	_ caddy.CleanerUpper          = (*FDXAuth)(nil)
	_ caddyhttp.MiddlewareHandler = (*FDXAuth)(nil)
)
