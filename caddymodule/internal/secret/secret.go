// Package secret is how mxgate's directives hold credentials: read from
// the configuration with their placeholders resolved, never empty, and
// warned about at start-up where they would leak (a log that records
// their headers unredacted, an admin endpoint another local user can
// reach).
package secret

import (
	"errors"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// Errors of Read; they never hold the value.
var (
	ErrEmpty      = errors.New("is empty (an unset {env.*} variable or an empty {file.*}?)")
	ErrUnresolved = errors.New("has a placeholder that could not be resolved at start-up")
)

// Read resolves Caddy's global placeholders ({env.*}, {file.*}) in raw
// at provisioning and trims surrounding white space (a file's final
// newline). An empty result is an error, and so is a placeholder that
// cannot be resolved or a brace in raw outside a placeholder (a mistyped
// one); braces in a resolved value are the secret's own.
func Read(raw string) (string, error) {
	s, err := caddy.NewReplacer().ReplaceOrErr(raw, false, true)
	if err != nil || strings.ContainsAny(withoutPlaceholders(raw), "{}") {
		return "", ErrUnresolved
	}
	if s = strings.TrimSpace(s); s == "" {
		return "", ErrEmpty
	}
	return s, nil
}

// withoutPlaceholders returns raw with every placeholder removed.
func withoutPlaceholders(raw string) string {
	r := caddy.NewEmptyReplacer()
	r.Map(func(string) (any, bool) { return "", true })
	return r.ReplaceAll(raw, "")
}
