package gate

import (
	"errors"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// Errors of Secret; they never hold the value.
var (
	ErrSecretEmpty      = errors.New("is empty (an unset {env.*} variable or an empty {file.*}?)")
	ErrSecretUnresolved = errors.New("has a placeholder that could not be resolved at start-up")
)

// Secret resolves Caddy's global placeholders ({env.*}, {file.*}) in raw
// at provisioning and trims surrounding white space (a file's final
// newline). An empty result is an error, and so is a placeholder that
// cannot be resolved or a brace in raw outside a placeholder (a mistyped
// one); braces in a resolved value are the secret's own.
func Secret(raw string) (string, error) {
	s, err := caddy.NewReplacer().ReplaceOrErr(raw, false, true)
	if err != nil || strings.ContainsAny(withoutPlaceholders(raw), "{}") {
		return "", ErrSecretUnresolved
	}
	if s = strings.TrimSpace(s); s == "" {
		return "", ErrSecretEmpty
	}
	return s, nil
}

// withoutPlaceholders returns raw with every placeholder removed.
func withoutPlaceholders(raw string) string {
	r := caddy.NewEmptyReplacer()
	r.Map(func(string) (any, bool) { return "", true })
	return r.ReplaceAll(raw, "")
}

// Resolve replaces global placeholders in a setting that is not secret
// (a URL, a path).
func Resolve(raw string) string {
	return caddy.NewReplacer().ReplaceKnown(raw, "")
}
