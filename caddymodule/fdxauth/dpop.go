package fdxauth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/fdx"
	"github.com/mxgate/mxgate/replay"
)

// The values of DPoP.
const (
	DPoPOff      = "off"
	DPoPAllowed  = "allowed"
	DPoPRequired = "required"
)

// DefaultDPoPJTICacheSize is DPoPJTICacheSize's default.
const DefaultDPoPJTICacheSize = 1_000_000

// jtiState is the DPoP jti replay cache once named.
type jtiState struct {
	replay.Store
}

// provisionDPoP sets up the proof checker, its nonces and its jti replay
// cache, which is named (by the issuer, the audiences and the site) and
// bound once the configuration is loaded.
func (a *FDXAuth) provisionDPoP(ctx caddy.Context) error {
	if a.DPoP == "" {
		a.DPoP = DPoPOff
	}
	if a.DPoP == DPoPOff {
		return nil
	}
	if len(a.DPoPAlgorithms) == 0 {
		for _, alg := range fdx.DefaultProofAlgorithms {
			a.DPoPAlgorithms = append(a.DPoPAlgorithms, string(alg))
		}
	}
	a.dpopAlgs = nil
	for _, s := range a.DPoPAlgorithms {
		alg, err := fdx.ParseAlgorithm(s)
		if err != nil {
			return fmt.Errorf("dpop_algorithms: %v", err)
		}
		a.dpopAlgs = append(a.dpopAlgs, alg)
	}
	a.algsAttr = strings.Join(a.DPoPAlgorithms, " ")
	if a.DPoPMaxAge == 0 {
		a.DPoPMaxAge = caddy.Duration(fdx.DefaultProofMaxAge)
	}
	a.proofs = &fdx.ProofChecker{MaxAge: time.Duration(a.DPoPMaxAge), Leeway: time.Duration(a.Leeway)}
	if a.DPoPNonce {
		key, err := a.nonceKey()
		if err != nil {
			return err
		}
		if a.nonces, err = fdx.NewNonces(key, time.Duration(a.DPoPMaxAge)); err != nil {
			return err
		}
		a.proofs.Nonces = a.nonces
	}
	if a.DPoPOrigin != "" {
		u, err := url.Parse(provision.Resolve(a.DPoPOrigin))
		if err != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
			return errors.New("dpop_origin must be scheme://host[:port], nothing more: the URL clients address, before the path")
		}
		if a.origin, err = fdx.NormalizeOrigin(u.Scheme, u.Host); err != nil {
			return fmt.Errorf("dpop_origin: %v", err)
		}
	}
	var err error
	if a.jtiStore, err = a.Config.Provision(ctx, "fdx_auth"); err != nil {
		return fmt.Errorf("the DPoP jti cache: %v", err)
	}
	a.closers = append(a.closers, a.jtiStore.Release)
	audiences := slices.Clone(a.Audiences)
	slices.Sort(audiences)
	spec := store.Spec{Directive: "fdx_auth", Kind: "dpop", Options: []string{"issuer", a.Issuer, "audiences", strings.Join(audiences, " ")},
		Limits: "dpop jti window " + a.proofs.ReplayWindow().String()}
	if a.jti, err = store.Register(ctx, a, a.jtiStore, a.Namespace, spec, a.bindJTI); err != nil {
		return err
	}
	a.closers = append(a.closers, a.jti.Release)
	return nil
}

// validateDPoP checks the DPoP options among themselves, and the jti
// cache's store options.
func (a *FDXAuth) validateDPoP() error {
	switch a.DPoP {
	case "", DPoPOff:
		if len(a.DPoPAlgorithms) > 0 || a.DPoPMaxAge != 0 || a.DPoPNonce || a.DPoPNonceKey != "" || a.DPoPOrigin != "" ||
			a.DPoPJTICacheSize != 0 || a.Config != (store.Config{}) {
			return errors.New("dpop_algorithms, dpop_max_age, dpop_nonce, dpop_nonce_key, dpop_origin, dpop_jti_cache_size and the jti cache's store options " +
				"(store, on_store_error, redis_timeout, redis_tls, redis_wait_replicas, namespace) need dpop allowed or required")
		}
		return nil
	case DPoPAllowed, DPoPRequired:
	default:
		return fmt.Errorf("dpop must be %s, %s or %s, not %q", DPoPOff, DPoPAllowed, DPoPRequired, a.DPoP)
	}
	for _, s := range a.DPoPAlgorithms {
		if _, err := fdx.ParseAlgorithm(s); err != nil {
			return fmt.Errorf("dpop_algorithms: %v", err)
		}
	}
	if a.DPoPMaxAge != 0 && a.DPoPMaxAge < caddy.Duration(time.Second) {
		return errors.New("dpop_max_age must be at least a second")
	}
	if a.DPoPJTICacheSize < 0 {
		return errors.New("dpop_jti_cache_size must be positive")
	}
	if a.DPoPNonceKey != "" && !a.DPoPNonce {
		return errors.New("dpop_nonce_key needs dpop_nonce on")
	}
	if err := a.Config.Validate(); err != nil {
		return fmt.Errorf("the DPoP jti cache: %v", err)
	}
	return nil
}

// nonceKey is dpop_nonce_key, decoded (base64, at least 32 bytes), or
// this process's key.
func (a *FDXAuth) nonceKey() ([]byte, error) {
	if a.DPoPNonceKey == "" {
		return processNonceKey(), nil
	}
	s, err := secret.Read(a.DPoPNonceKey)
	if err != nil {
		return nil, errors.New("dpop_nonce_key " + err.Error())
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawURLEncoding.DecodeString(s)
	}
	if err != nil || len(key) < fdx.MinNonceKey {
		return nil, errors.New("dpop_nonce_key must be the base64 of at least 32 bytes (openssl rand -base64 32)")
	}
	return key, nil
}

// processNonceKey is the nonce key of this process, made once: it
// outlives reloads, and another process (a replica) has its own.
var processNonceKey = sync.OnceValue(func() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
})

// bindJTI takes the jti cache named n from the pool that keeps it across
// reloads and, for a Redis store, layers the shared cache over it.
func (a *FDXAuth) bindJTI(n store.Naming) (*jtiState, func(), error) {
	window := a.proofs.ReplayWindow()
	size := a.DPoPJTICacheSize
	if size == 0 {
		size = DefaultDPoPJTICacheSize
	}
	// jti records go a round trip each, not through the Batcher.
	cache, release, err := a.jtiStore.ReplayCache("dpop:"+n.Namespace, "mxgate:dpop:"+n.Namespace+":", window, size, false)
	if err != nil {
		return nil, nil, err
	}
	return &jtiState{cache}, release, nil
}

// readProof reads the request's one DPoP header and checks its form,
// before the token is looked at.
func (a *FDXAuth) readProof(r *http.Request) (*fdx.Proof, *failure) {
	vals := r.Header.Values("DPoP")
	switch {
	case len(vals) == 0:
		return nil, &failure{status: 401, oauth: fdx.CodeInvalidProof, dpop: true, debug: "no DPoP proof (the DPoP header)"}
	case len(vals) > 1:
		return nil, &failure{status: 401, oauth: fdx.CodeInvalidProof, dpop: true, debug: "more than one DPoP header"}
	}
	p, err := fdx.ParseProof(vals[0], a.dpopAlgs)
	if err != nil {
		var pe *fdx.ProofError
		reason := "the DPoP proof is malformed"
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		return nil, &failure{status: 401, oauth: fdx.CodeInvalidProof, dpop: true, debug: reason}
	}
	return p, nil
}

// checkProof checks proof against the request (method, the URL as the
// client addressed it: origin and p, the path as sent), the token tok
// and its key thumbprint jkt, and records its jti.
func (a *FDXAuth) checkProof(w http.ResponseWriter, r *http.Request, method, p, tok, jkt string, proof *fdx.Proof) *failure {
	st, err := a.jti.Get()
	if err != nil {
		return &failure{status: 503, reason: "state_unavailable", debug: "the DPoP jti cache is not ready"}
	}
	origin := a.origin
	if origin == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		if origin, err = fdx.NormalizeOrigin(scheme, r.Host); err != nil {
			return &failure{status: 400, oauth: "invalid_request", debug: "the Host is not a host name and port"}
		}
	}
	pc := *a.proofs
	pc.Replay = st
	now := a.clock()
	res, err := pc.Check(r.Context(), proof, fdx.ProofRequest{Method: method, URL: fdx.RequestHTU(origin, p), AccessToken: tok, KeyThumbprint: jkt}, now)
	var pe *fdx.ProofError
	switch {
	case err == nil:
		if res.StaleNonce {
			w.Header().Set("DPoP-Nonce", a.nonces.Issue(now))
		}
		return nil
	case errors.As(err, &pe):
		return &failure{status: 401, oauth: pe.Code, dpop: true, nonce: pe.Code == fdx.CodeUseNonce, debug: pe.Reason}
	case errors.Is(err, replay.ErrFull):
		return &failure{status: 503, reason: "dpop_jti_cache_full", debug: "the DPoP jti cache is full"}
	default:
		return &failure{status: 503, reason: "store_unavailable", debug: "the DPoP jti store cannot be reached"}
	}
}

// challenges sets the WWW-Authenticate challenges of a refusal: Bearer
// alone with dpop off, DPoP alone with dpop required, both with dpop
// allowed, the one f is about first and carrying its error.
func (a *FDXAuth) challenges(h http.Header, f *failure) {
	attrs := ""
	if f.oauth != "" {
		attrs += `, error="` + f.oauth + `", error_description="` + f.debug + `"`
	}
	if f.scope != "" {
		attrs += `, scope="` + f.scope + `"`
	}
	bearer := `Bearer realm="` + a.Realm + `"`
	dpop := func(attrs string) string {
		return `DPoP realm="` + a.Realm + `"` + attrs + `, algs="` + a.algsAttr + `"`
	}
	switch {
	case a.DPoP == DPoPOff:
		h.Set("WWW-Authenticate", bearer+attrs)
	case a.DPoP == DPoPRequired:
		h.Set("WWW-Authenticate", dpop(attrs))
	case f.dpop:
		h.Set("WWW-Authenticate", dpop(attrs))
		h.Add("WWW-Authenticate", bearer)
	default:
		h.Set("WWW-Authenticate", bearer+attrs)
		h.Add("WWW-Authenticate", dpop(""))
	}
	if f.nonce {
		h.Set("DPoP-Nonce", a.nonces.Issue(a.clock()))
	}
}

func (a *FDXAuth) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}
