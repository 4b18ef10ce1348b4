package fdx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/refetch"
)

// Metadata is what the gateway reads of an authorization server's
// metadata (RFC 8414; OpenID Connect Discovery 1.0).
type Metadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	TokenEndpoint         string `json:"token_endpoint"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	// MTLSEndpointAliases are the endpoints to use with mutual TLS, where
	// they differ (RFC 8705 §5).
	MTLSEndpointAliases struct {
		TokenEndpoint         string `json:"token_endpoint"`
		IntrospectionEndpoint string `json:"introspection_endpoint"`
	} `json:"mtls_endpoint_aliases"`
}

// IntrospectionURL is the introspection endpoint for a client that
// authenticates with mutual TLS (its alias, if the server names one) or
// otherwise.
func (m *Metadata) IntrospectionURL(mutualTLS bool) string {
	if mutualTLS && m.MTLSEndpointAliases.IntrospectionEndpoint != "" {
		return m.MTLSEndpointAliases.IntrospectionEndpoint
	}
	return m.IntrospectionEndpoint
}

// ErrNoEndpoint is returned when the metadata names no endpoint of the
// kind a caller needs.
var ErrNoEndpoint = errors.New("fdx: the authorization server's metadata names no such endpoint")

// CheckIssuer reports whether issuer can be discovered: an absolute http
// or https URL without a query or fragment (RFC 8414 §2).
func CheckIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil:
		return errors.New("fdx: the issuer must be an absolute https URL to be discovered")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return errors.New("fdx: an issuer with a query or fragment cannot be discovered (RFC 8414 §2)")
	}
	return nil
}

// WellKnownURLs returns where the metadata of issuer is published: RFC
// 8414's well-known URI (inserted between the host and the issuer's
// path), then OpenID Connect Discovery's (appended to the issuer).
func WellKnownURLs(issuer string) []string {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	oauth := *u
	oauth.Path, oauth.RawPath = "", ""
	oidc := oauth
	return []string{
		oauth.String() + "/.well-known/oauth-authorization-server" + path,
		oidc.String() + path + "/.well-known/openid-configuration",
	}
}

// Discovery fetches an authorization server's metadata from its issuer
// identifier: RFC 8414's well-known URI, then, if that answers with a
// status other than 200, OpenID Connect Discovery's. The document's issuer
// must be the configured one exactly, and, for an https issuer, every
// endpoint it names must be https. The metadata is fetched on first use
// and again, in the background, when it is older than MaxAge; after a
// failed fetch none is made until a backoff (doubling from a second up to
// 30s) has passed, and metadata fetched before stays in use. It is safe
// for concurrent use; fill the fields, then use it, and do not change
// them (Adopt changes the settings of a Discovery in use; Close ends it).
type Discovery struct {
	Issuer   string
	Client   *http.Client  // default: DefaultTimeout, no redirects
	MaxAge   time.Duration // default 1h
	MaxBytes int64         // default 256 KiB
	Now      func() time.Time
	// OnFetch, if set, hears the outcome of every fetch ("ok", "error",
	// with the error) and of every fetch asked for and not made
	// ("suppressed").
	OnFetch func(outcome string, err error)

	once sync.Once
	val  refetch.Value[discovered]
	opts atomic.Pointer[discoveryOptions] // the settings in force
}

// discoveryOptions are the settings of a Discovery that Adopt may change.
type discoveryOptions struct {
	client   *http.Client
	maxAge   time.Duration
	maxBytes int64
	onFetch  func(outcome string, err error)
}

func (d *Discovery) options() *discoveryOptions {
	o := &discoveryOptions{client: d.Client, maxAge: d.MaxAge, maxBytes: d.MaxBytes, onFetch: d.OnFetch}
	if o.maxAge <= 0 {
		o.maxAge = time.Hour
	}
	if o.maxBytes <= 0 {
		o.maxBytes = 256 << 10
	}
	return o
}

// Adopt makes the settings of o (Client, MaxAge, MaxBytes, OnFetch) those
// of d from now on; d keeps its metadata and its backoff. o's issuer and
// clock are not read; o is not used otherwise.
func (d *Discovery) Adopt(o *Discovery) {
	d.value()
	d.opts.Store(o.options())
}

// Close ends d: a fetch under way is cancelled, and none is made after;
// the metadata fetched before stays in use.
func (d *Discovery) Close() { d.value().Close() }

type discovered struct {
	md *Metadata
	at time.Time
}

func (d *Discovery) value() *refetch.Value[discovered] {
	d.once.Do(func() {
		d.opts.Store(d.options())
		d.val.MinBackoff, d.val.MaxBackoff = retryAfterFailure, maxRetryAfterFailure
		d.val.Now = d.now
		d.val.Observe = func(outcome string) {
			if f := d.opts.Load().onFetch; f != nil {
				f(outcome, errorOf(outcome, &d.val))
			}
		}
	})
	return &d.val
}

// errorOf is the error of the fetch whose outcome Observe heard.
func errorOf[T any](outcome string, v *refetch.Value[T]) error {
	if outcome != refetch.Error {
		return nil
	}
	return v.Failing()
}

func (d *Discovery) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Metadata returns the authorization server's metadata, fetching it if
// none was fetched yet (unless within the backoff after a failure, whose
// error it returns at once).
func (d *Discovery) Metadata(ctx context.Context) (*Metadata, error) {
	v := d.value()
	cur, gen := v.Load()
	if gen == 0 {
		cur, _, err := v.Renew(ctx, 0, d.fetch)
		if cur.md == nil {
			if err == nil {
				err = errors.New("fdx: no metadata")
			}
			return nil, err
		}
		return cur.md, nil
	}
	if d.now().Sub(cur.at) >= d.opts.Load().maxAge {
		v.Prefetch(ctx, gen, d.fetch)
	}
	return cur.md, nil
}

// Failing returns the error of the last fetch if it failed, or nil.
func (d *Discovery) Failing() error { return d.value().Failing() }

func (d *Discovery) fetch(ctx context.Context) (discovered, error) {
	o := d.opts.Load()
	if err := CheckIssuer(d.Issuer); err != nil {
		return discovered{}, err
	}
	var failures []string
	for _, wk := range WellKnownURLs(d.Issuer) {
		raw, err := get(ctx, o.client, wk, "authorization server's metadata", o.maxBytes)
		var se *statusError
		if errors.As(err, &se) {
			failures = append(failures, fmt.Sprintf("%s answered %d", RedactURL(wk), se.code))
			continue
		}
		if err != nil {
			return discovered{}, err
		}
		md, err := d.parse(raw)
		if err != nil {
			return discovered{}, fmt.Errorf("%w (from %s)", err, RedactURL(wk))
		}
		return discovered{md: md, at: d.now()}, nil
	}
	return discovered{}, fmt.Errorf("fdx: no metadata for the issuer: %s", strings.Join(failures, "; "))
}

// parse reads and checks a metadata document.
func (d *Discovery) parse(raw []byte) (*Metadata, error) {
	var md Metadata
	if err := json.Unmarshal(raw, &md); err != nil {
		return nil, errors.New("fdx: the authorization server's metadata does not parse as a JSON object with string endpoints")
	}
	if md.Issuer != d.Issuer {
		return nil, fmt.Errorf("fdx: the metadata's issuer %q is not the configured %q (RFC 8414 §3.3)", truncate(md.Issuer, 100), d.Issuer)
	}
	secure := strings.HasPrefix(d.Issuer, "https:")
	for name, ep := range map[string]string{
		"jwks_uri": md.JWKSURI, "token_endpoint": md.TokenEndpoint, "introspection_endpoint": md.IntrospectionEndpoint,
		"mtls_endpoint_aliases.token_endpoint":         md.MTLSEndpointAliases.TokenEndpoint,
		"mtls_endpoint_aliases.introspection_endpoint": md.MTLSEndpointAliases.IntrospectionEndpoint,
	} {
		if ep == "" {
			continue
		}
		u, err := url.Parse(ep)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.Fragment != "":
			return nil, fmt.Errorf("fdx: the metadata's %s is not an absolute http(s) URL", name)
		case secure && u.Scheme != "https":
			return nil, fmt.Errorf("fdx: the metadata's %s is not https, as the issuer is", name)
		}
	}
	return &md, nil
}

// truncate shortens s to at most n bytes of valid UTF-8.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
