package provision

import "github.com/caddyserver/caddy/v2"

// Resolve replaces global placeholders in a setting that is not secret
// (a URL, a path); secret.Read reads a secret.
func Resolve(raw string) string {
	return caddy.NewReplacer().ReplaceKnown(raw, "")
}
