package fdx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mxgate/mxgate/internal/refetch"
)

// JWKS is a KeySource over an authorization server's JSON Web Key Set:
// keys are fetched on first use, cached, and fetched again when a token
// names a key id not in the cache: once however many tokens name unknown
// key ids at the same time, and at most once per MinRefresh. After a failed
// fetch none is made until a backoff (doubling from a second up to
// MinRefresh) has passed. During an outage the cached keys keep working;
// an unknown key id is an invalid token, never a wait. It is safe for
// concurrent use; fill the fields, then use it, and do not change them.
type JWKS struct {
	URL        string
	Client     *http.Client  // default: 5s timeout
	MinRefresh time.Duration // default 30s
	MaxBytes   int64         // default 1 MiB
	Now        func() time.Time
	// OnFetch, if set, hears the outcome of every fetch ("ok", "error")
	// and of every fetch asked for and not made ("suppressed").
	OnFetch func(outcome string)

	once sync.Once
	set  refetch.Value[map[string]jose.JSONWebKey]

	mu      sync.Mutex
	fetches int
}

// retryAfterFailure is the first wait after a failed fetch (or MinRefresh,
// if shorter); it doubles up to MinRefresh.
const retryAfterFailure = time.Second

// ErrUnknownKey is returned when no key of a freshly fetched set matches a
// token's key id.
var ErrUnknownKey = invalid("unknown signing key")

func (j *JWKS) value() *refetch.Value[map[string]jose.JSONWebKey] {
	j.once.Do(func() {
		minRefresh := j.MinRefresh
		if minRefresh <= 0 {
			minRefresh = 30 * time.Second
		}
		j.set.MinInterval = minRefresh
		j.set.MinBackoff, j.set.MaxBackoff = min(minRefresh, retryAfterFailure), minRefresh
		j.set.Now = j.Now
		j.set.Observe = func(outcome string) {
			if j.OnFetch != nil {
				j.OnFetch(outcome)
			}
		}
	})
	return &j.set
}

// HasKeys reports whether the set holds a signing key.
func (j *JWKS) HasKeys() bool {
	keys, _ := j.value().Load()
	return len(keys) > 0
}

// Fetches returns how many times the set was fetched.
func (j *JWKS) Fetches() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetches
}

// Key implements KeySource.
func (j *JWKS) Key(ctx context.Context, kid string, alg jose.SignatureAlgorithm) (any, error) {
	v := j.value()
	keys, gen := v.Load()
	if k, ok := lookup(keys, kid, alg); ok {
		return k, nil
	}
	if gen == 0 { // never fetched: fetch, unless within the backoff
		keys, _, _ = v.Renew(ctx, gen, j.fetch)
	} else { // an unknown kid: refetch, at most once per MinRefresh
		keys, _, _ = v.Refused(ctx, gen, j.fetch)
	}
	if k, ok := lookup(keys, kid, alg); ok {
		return k, nil
	}
	if len(keys) == 0 { // no key at all: the set could not be fetched to know
		return nil, fmt.Errorf("%w: the JWKS could not be fetched", ErrUnavailable)
	}
	return nil, ErrUnknownKey
}

// lookup finds a signing key for kid usable with alg. A token without a
// kid may use the only signing key of a set that has exactly one.
func lookup(keys map[string]jose.JSONWebKey, kid string, alg jose.SignatureAlgorithm) (any, bool) {
	var found *jose.JSONWebKey
	if kid != "" {
		if k, ok := keys[kid]; ok {
			found = &k
		}
	} else if len(keys) == 1 {
		for _, k := range keys {
			found = &k
		}
	}
	if found == nil || (found.Algorithm != "" && found.Algorithm != string(alg)) {
		return nil, false
	}
	return found.Key, true
}

// Refresh fetches the set now, unless a fetch is under way (whose result
// it waits for) or the backoff after a failed fetch has not passed (it
// returns that failure). On failure the cached keys stay.
func (j *JWKS) Refresh(ctx context.Context) error {
	v := j.value()
	_, gen := v.Load()
	_, _, err := v.Renew(ctx, gen, j.fetch)
	return err
}

func (j *JWKS) fetch(ctx context.Context) (map[string]jose.JSONWebKey, error) {
	j.mu.Lock()
	j.fetches++
	j.mu.Unlock()
	client := j.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	max := j.MaxBytes
	if max <= 0 {
		max = 1 << 20
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fdx: fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fdx: fetching the JWKS: status %d", resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("fdx: reading the JWKS: %w", err)
	}
	if int64(len(raw)) > max {
		return nil, errors.New("fdx: the JWKS is larger than allowed")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("fdx: the JWKS does not parse: %w", err)
	}
	keys := make(map[string]jose.JSONWebKey)
	for _, k := range set.Keys {
		if k.Use == "enc" || !k.Valid() {
			continue
		}
		pub := k.Public()
		if !pub.Valid() || !pub.IsPublic() {
			continue
		}
		keys[k.KeyID] = pub
	}
	if len(keys) == 0 {
		return nil, errors.New("fdx: the JWKS holds no usable signing key")
	}
	return keys, nil
}
