package fdxauth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/readiness"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/fdx"
	"github.com/mxgate/mxgate/internal/refetch"
)

// provisionAuthorizationServer builds what talks to the authorization
// server: one HTTP client with its own TLS settings (trust pool, client
// certificate) for discovery, the JWKS and introspection, and each of
// those that the configuration uses.
func (a *FDXAuth) provisionAuthorizationServer(ctx caddy.Context, algs []jose.SignatureAlgorithm) error {
	in := a.Introspection
	var jwksURL, introURL string
	if a.JWKSURL != "" {
		if jwksURL = provision.Resolve(a.JWKSURL); !isHTTPURL(jwksURL) {
			return errors.New("jwks_url must be an http(s) URL")
		}
	}
	if in != nil && in.URL != "" {
		if introURL = provision.Resolve(in.URL); !isHTTPURL(introURL) {
			return errors.New("the introspection URL must be an http(s) URL")
		}
	}
	// JWTs are checked here unless introspection has a URL of its own and
	// no jwks_url is given (then every token is introspected, as before
	// discovery)
	checkJWTs := jwksURL != "" || in == nil || introURL == ""
	if (checkJWTs && jwksURL == "") || (in != nil && introURL == "") {
		if err := fdx.CheckIssuer(a.Issuer); err != nil {
			return fmt.Errorf("the issuer cannot be discovered, and jwks_url or the introspection URL is not given: %v", err)
		}
	}
	client, trust, err := a.provisionClient(ctx)
	if err != nil {
		return err
	}
	// What is fetched (the metadata, the key set, introspection answers)
	// outlives a reload while what it is fetched with stays: each is kept
	// under a keyed hash of its endpoint, credentials and TLS trust, and
	// takes the new configuration's settings.
	if (checkJWTs && jwksURL == "") || (in != nil && introURL == "") {
		d := &fdx.Discovery{Issuer: a.Issuer, Client: client,
			OnFetch: a.watchFetches("discovery",
				"fdx_auth: the authorization server's metadata could not be fetched; endpoints discovered before stay in use",
				"fdx_auth: the authorization server's metadata fetched again")}
		if a.discovery, err = keep(a, store.CredentialKey("fdx_auth discovery", a.Issuer, trust), d, d.Close, (*fdx.Discovery).Adopt); err != nil {
			return err
		}
	}
	if checkJWTs {
		j := &fdx.JWKS{URL: jwksURL, Client: client,
			MinRefresh: time.Duration(a.JWKSMinRefresh), MaxAge: time.Duration(a.JWKSMaxAge),
			OnFetch: a.watchFetches("jwks",
				"fdx_auth: the authorization server's JWKS could not be fetched; keys fetched before stay in use, and a token that needs another is refused until it can be",
				"fdx_auth: the authorization server's JWKS fetched again")}
		located := ""
		if jwksURL == "" {
			j.Locate = a.locate("jwks_uri", func(md *fdx.Metadata) string { return md.JWKSURI })
			located = a.Issuer
		}
		if a.jwks, err = keep(a, store.CredentialKey("fdx_auth jwks", jwksURL, located, trust), j, j.Close, (*fdx.JWKS).Adopt); err != nil {
			return err
		}
		a.validator = &fdx.Validator{Issuer: a.Issuer, Audiences: a.Audiences, Algorithms: algs, Leeway: time.Duration(a.Leeway), Keys: a.jwks}
		// Fetched on the first token (the key server may be this very
		// process), or by the first readiness check.
		jwks := a.jwks
		a.unregister = append(a.unregister, readiness.Register(readiness.Dependency{
			Name: "fdx_auth JWKS",
			Check: func(ctx context.Context) error {
				var err error
				if !jwks.HasKeys() {
					err = jwks.Refresh(ctx)
				}
				if jwks.HasKeys() {
					return nil
				}
				if failing := jwks.Failing(); failing != nil {
					err = failing
				}
				if err == nil {
					err = errors.New("not fetched yet")
				}
				return errors.New("no signing key could be fetched: " + fdx.Cause(err))
			},
		}))
	}
	if in != nil {
		if err := a.provisionIntrospection(in, introURL, client, trust); err != nil {
			return err
		}
	}
	return nil
}

// validateAuthorizationServer checks the options of the authorization
// server's client and of introspection among themselves.
func (a *FDXAuth) validateAuthorizationServer() error {
	if c := a.TLSClientAuth; c != nil && (c.CertFile == "" || c.KeyFile == "") {
		return errors.New("tls_client_auth needs a certificate file and a key file")
	}
	in := a.Introspection
	if in == nil {
		return nil
	}
	if in.ClientID == "" {
		return errors.New("introspection needs a client id")
	}
	switch in.Auth {
	case "", AuthBasic:
	case AuthTLSClientAuth:
		if a.TLSClientAuth == nil {
			return errors.New("introspection_auth tls_client_auth needs tls_client_auth <cert_file> <key_file>: the certificate to authenticate with")
		}
	case AuthPrivateKeyJWT:
		if in.KeyFile == "" {
			return errors.New("introspection_auth private_key_jwt needs a key file")
		}
	default:
		return fmt.Errorf("introspection_auth must be %s, %s or %s, not %q", AuthBasic, AuthTLSClientAuth, AuthPrivateKeyJWT, in.Auth)
	}
	auth := cmp.Or(in.Auth, AuthBasic)
	if auth != AuthBasic && in.ClientSecret != "" {
		return fmt.Errorf("introspection_auth %s uses no client secret: remove it from introspection", auth)
	}
	if auth != AuthPrivateKeyJWT && (in.KeyFile != "" || in.KeyID != "") {
		return fmt.Errorf("a key file is for introspection_auth %s only", AuthPrivateKeyJWT)
	}
	return nil
}

// keep takes the value kept under key across reloads (fresh, if no loaded
// configuration holds one; closed when the last lets go), with fresh's
// settings applied to it; a's Cleanup lets go of it.
func keep[T any](a *FDXAuth, key string, fresh T, close func(), adopt func(T, T)) (T, error) {
	v, release, err := store.Keep(key, func() (T, func(), error) { return fresh, close, nil }, adopt, fresh)
	if err != nil {
		return v, err
	}
	a.unregister = append(a.unregister, release)
	return v, nil
}

// provisionIntrospection sets up the introspection client.
func (a *FDXAuth) provisionIntrospection(in *FDXIntrospection, introURL string, client *http.Client, trust string) error {
	if in.Auth == "" {
		in.Auth = AuthBasic
	}
	var auth fdx.ClientAuth
	var credential string // what the client authenticates with, for the key of the kept answers
	switch in.Auth {
	case AuthBasic:
		plain, err := secret.Read(in.ClientSecret)
		if err != nil {
			return errors.New("introspection needs a URL, a client id and a secret with introspection_auth basic: the secret " + err.Error())
		}
		auth, credential = fdx.ClientSecretBasic{ClientID: in.ClientID, Secret: plain}, plain
	case AuthTLSClientAuth:
		auth = fdx.TLSClientAuth{ClientID: in.ClientID}
	case AuthPrivateKeyJWT:
		pemBytes, err := os.ReadFile(provision.Resolve(in.KeyFile))
		if err != nil {
			return fmt.Errorf("introspection_auth private_key_jwt: reading the key file: %v", err)
		}
		key, err := fdx.ParsePrivateKeyPEM(pemBytes)
		if err != nil {
			return fmt.Errorf("introspection_auth private_key_jwt: %v", err)
		}
		auth, credential = fdx.PrivateKeyJWT{ClientID: in.ClientID, Audience: a.Issuer, Key: key, KeyID: in.KeyID}, string(pemBytes)+"\x00"+in.KeyID
	default:
		return fmt.Errorf("introspection_auth must be %s, %s or %s, not %q", AuthBasic, AuthTLSClientAuth, AuthPrivateKeyJWT, in.Auth)
	}
	requireAud := in.RequireAudience == nil || *in.RequireAudience
	fresh := &fdx.Introspector{URL: introURL, Auth: auth, Client: client,
		Issuer: a.Issuer, Audiences: a.Audiences, AllowMissingAudience: !requireAud, CacheFor: time.Duration(in.CacheFor),
		OnCall: a.watchFetches("introspection",
			"fdx_auth: the introspection endpoint failed; opaque tokens it has not answered for are refused with 503 until it answers or a backoff (1s, doubling up to 30s) has passed",
			"fdx_auth: the introspection endpoint answers again")}
	if introURL == "" {
		mutualTLS := auth.MutualTLS()
		fresh.Locate = a.locate("introspection_endpoint", func(md *fdx.Metadata) string { return md.IntrospectionURL(mutualTLS) })
	}
	// the answers kept are those of this endpoint, client and credential,
	// checked against this issuer and these audiences
	parts := []string{introURL, a.Issuer, in.ClientID, in.Auth, credential, trust, strconv.FormatBool(requireAud)}
	var err error
	if a.introspect, err = keep(a, store.CredentialKey("fdx_auth introspection", append(parts, a.Audiences...)...),
		fresh, fresh.Close, (*fdx.Introspector).Adopt); err != nil {
		return err
	}
	intro := a.introspect
	a.unregister = append(a.unregister, readiness.Register(readiness.Dependency{
		Name: "fdx_auth introspection",
		Check: func(ctx context.Context) error {
			if err := intro.Probe(ctx); err != nil {
				return errors.New("the endpoint does not answer: " + fdx.Cause(err))
			}
			return nil
		},
	}))
	return nil
}

// locate returns a function that finds an endpoint in the issuer's
// metadata.
func (a *FDXAuth) locate(name string, endpoint func(*fdx.Metadata) string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		md, err := a.discovery.Metadata(ctx)
		if err != nil {
			return "", err
		}
		if u := endpoint(md); u != "" {
			return u, nil
		}
		return "", fmt.Errorf("%w: the issuer's metadata has no %s", fdx.ErrNoEndpoint, name)
	}
}

// provisionClient builds the HTTP client for the authorization server:
// its own transport, trusting only tls_trust_pool's CAs if it is given,
// presenting tls_client_auth's certificate if it is given. Nothing else
// in the process uses it, and it changes nothing process-wide.
//
// It returns too a digest of the trust it sets up (the trusted CAs, or the
// pool's configuration where its certificates cannot be read; the client
// certificate), so that what was fetched under other trust is not kept.
func (a *FDXAuth) provisionClient(ctx caddy.Context) (*http.Client, string, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	trust := sha256.New()
	if a.TLSTrustPoolRaw == nil {
		trust.Write([]byte("system roots\x00"))
	} else {
		mod, err := ctx.LoadModule(a, "TLSTrustPoolRaw")
		if err != nil {
			return nil, "", fmt.Errorf("tls_trust_pool: %v", err)
		}
		ca, ok := mod.(caddytls.CA)
		if !ok {
			return nil, "", fmt.Errorf("tls_trust_pool: %T is not a CA pool source", mod)
		}
		if cp, ok := mod.(caddytls.CertificateProvider); ok {
			if len(cp.Certificates()) == 0 {
				return nil, "", errors.New("tls_trust_pool holds no certificate: it would trust nothing")
			}
			for _, c := range cp.Certificates() {
				sum := sha256.Sum256(c.Raw)
				trust.Write(sum[:])
			}
		} else {
			trust.Write(a.TLSTrustPoolRaw)
		}
		if cfg.RootCAs = ca.CertPool(); cfg.RootCAs == nil {
			return nil, "", errors.New("tls_trust_pool holds no certificate pool")
		}
	}
	trust.Write([]byte("\x00client certificate\x00"))
	if c := a.TLSClientAuth; c != nil {
		cert, err := tls.LoadX509KeyPair(provision.Resolve(c.CertFile), provision.Resolve(c.KeyFile))
		if err != nil {
			return nil, "", fmt.Errorf("tls_client_auth: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
		sum := sha256.Sum256(cert.Certificate[0])
		trust.Write(sum[:])
	}
	dialer := &net.Dialer{Timeout: fdx.DefaultTimeout, KeepAlive: 30 * time.Second}
	a.transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       cfg,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          8,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   fdx.DefaultTimeout,
		ResponseHeaderTimeout: fdx.DefaultTimeout,
	}
	return &http.Client{Transport: a.transport, Timeout: fdx.DefaultTimeout, CheckRedirect: fdx.NoRedirects}, hex.EncodeToString(trust.Sum(nil)), nil
}

// watchFetches counts the fetches of one kind, and logs the first failure
// of an episode, with its cause, and the first success after it. The
// cause never holds a token, a secret or a URL's query (fdx.Cause).
func (a *FDXAuth) watchFetches(kind, failed, recovered string) func(outcome string, err error) {
	count := metrics.CountCredentialFetches("fdx_auth", kind)
	down := new(atomic.Bool)
	return func(outcome string, err error) {
		count(outcome)
		switch {
		case outcome == refetch.Error && !down.Swap(true):
			a.logger.Error(failed, zap.String("cause", fdx.Cause(err)))
		case outcome == refetch.OK && down.Load() && down.Swap(false):
			a.logger.Info(recovered)
		}
	}
}

// isHTTPURL reports whether s is an absolute http or https URL. One that is
// not would fail every request at run time: a JWKS as 503, an
// introspection endpoint as 401 invalid_token.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
