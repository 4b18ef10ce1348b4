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
// newline). An empty result, or one still holding a placeholder, is an
// error.
func Secret(raw string) (string, error) {
	s := strings.TrimSpace(caddy.NewReplacer().ReplaceKnown(raw, ""))
	switch {
	case s == "":
		return "", ErrSecretEmpty
	case strings.ContainsAny(s, "{}") && strings.ContainsAny(raw, "{}"):
		return "", ErrSecretUnresolved
	}
	return s, nil
}

// Resolve replaces global placeholders in a setting that is not secret
// (a URL, a path).
func Resolve(raw string) string {
	return caddy.NewReplacer().ReplaceKnown(raw, "")
}
