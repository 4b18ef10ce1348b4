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
	"golang.org/x/sync/singleflight"
)

// JWKS is a KeySource over an authorization server's JSON Web Key Set:
// keys are fetched, cached, and fetched again when a token names a key id
// not in the cache, at most once per MinRefresh. During an outage the
// cached keys keep working; an unknown key id is an invalid token, never a
// wait. It is safe for concurrent use; fill the fields, then use it.
type JWKS struct {
	URL        string
	Client     *http.Client  // default: 5s timeout
	MinRefresh time.Duration // default 30s
	MaxBytes   int64         // default 1 MiB
	Now        func() time.Time

	flight singleflight.Group

	mu      sync.Mutex
	keys    map[string]jose.JSONWebKey
	fetched time.Time // last fetch attempt
	failed  bool      // the last fetch failed
	fetches int
}

// retryAfterFailure is how soon a failed fetch may be tried again (or
// MinRefresh, if shorter).
const retryAfterFailure = time.Second

// ErrUnknownKey is returned when no key of a freshly fetched set matches a
// token's key id.
var ErrUnknownKey = invalid("unknown signing key")

func (j *JWKS) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}

// HasKeys reports whether the set holds a signing key.
func (j *JWKS) HasKeys() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.keys) > 0
}

// Fetches returns how many times the set was fetched.
func (j *JWKS) Fetches() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetches
}

// Key implements KeySource.
func (j *JWKS) Key(ctx context.Context, kid string, alg jose.SignatureAlgorithm) (any, error) {
	if k, ok := j.lookup(kid, alg); ok {
		return k, nil
	}
	j.mu.Lock()
	minRefresh := j.MinRefresh
	if minRefresh <= 0 {
		minRefresh = 30 * time.Second
	}
	if j.failed {
		minRefresh = min(minRefresh, retryAfterFailure)
	}
	due := j.fetched.IsZero() || j.now().Sub(j.fetched) >= minRefresh
	j.mu.Unlock()
	if due {
		_, _, _ = j.flight.Do("jwks", func() (any, error) { return nil, j.Refresh(context.WithoutCancel(ctx)) })
		if k, ok := j.lookup(kid, alg); ok {
			return k, nil
		}
	}
	j.mu.Lock()
	none := j.failed && len(j.keys) == 0
	j.mu.Unlock()
	if none { // no key at all: the set could not be fetched to know
		return nil, fmt.Errorf("%w: the JWKS could not be fetched", ErrUnavailable)
	}
	return nil, ErrUnknownKey
}

// lookup finds a signing key for kid usable with alg. A token without a
// kid may use the only signing key of a set that has exactly one.
func (j *JWKS) lookup(kid string, alg jose.SignatureAlgorithm) (any, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var found *jose.JSONWebKey
	if kid != "" {
		if k, ok := j.keys[kid]; ok {
			found = &k
		}
	} else if len(j.keys) == 1 {
		for _, k := range j.keys {
			found = &k
		}
	}
	if found == nil || (found.Algorithm != "" && found.Algorithm != string(alg)) {
		return nil, false
	}
	return found.Key, true
}

// Refresh fetches the set now. On failure the cached keys stay.
func (j *JWKS) Refresh(ctx context.Context) error {
	j.mu.Lock()
	j.fetched = j.now()
	j.fetches++
	j.mu.Unlock()
	err := j.fetch(ctx)
	j.mu.Lock()
	j.failed = err != nil
	j.mu.Unlock()
	return err
}

func (j *JWKS) fetch(ctx context.Context) error {
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
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fdx: fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fdx: fetching the JWKS: status %d", resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return fmt.Errorf("fdx: reading the JWKS: %w", err)
	}
	if int64(len(raw)) > max {
		return errors.New("fdx: the JWKS is larger than allowed")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return fmt.Errorf("fdx: the JWKS does not parse: %w", err)
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
		return errors.New("fdx: the JWKS holds no usable signing key")
	}
	j.mu.Lock()
	j.keys = keys
	j.mu.Unlock()
	return nil
}
