package main

import (
	"regexp"
	"strconv"
	"strings"
)

// summarizedCommands are the commands whose errors may carry a long Caddy
// chain ("loading http app module: provision http: server srv0: setting up
// route handlers: route 0: …") around a module's own complaint.
var summarizedCommands = []string{"run", "start", "validate", "adapt", "reload"}

// provisionSegment finds "provision <module id>: " in an error chain.
var provisionSegment = regexp.MustCompile(`provision ([a-z0-9_]+(?:\.[a-z0-9_]+)+): `)

// directiveNames maps the last part of a module id to the Caddyfile words
// that configure it, where they differ from the id.
var directiveNames = map[string]string{
	"mdx_hmac_verify": "mdx_hmac verify",
	"mdx_hmac_sign":   "mdx_hmac sign",
	"mx_auth_attach":  "mx_auth attach",
	"mx_auth_check":   "mx_auth check",
	"mx_jwe_decrypt":  "mx_jwe decrypt",
	"mx_jwe_encrypt":  "mx_jwe encrypt",
}

// directiveName names the module id as a user wrote it in a Caddyfile.
func directiveName(id string) string {
	name := id[strings.LastIndexByte(id, '.')+1:]
	switch {
	case strings.HasPrefix(id, "caddy.listeners."):
		return name + " (listener wrapper)"
	case strings.HasPrefix(id, "caddy.logging.encoders."):
		return "log format " + name
	}
	if d, ok := directiveNames[name]; ok {
		return d
	}
	return name
}

// summarize returns one line naming the directive and its complaint, taken
// from the last "provision <module>: " segment of msg, or "" when msg holds
// none (a parse error already names its file and line).
func summarize(msg string) string {
	msg = unwrapJSONError(msg)
	all := provisionSegment.FindAllStringSubmatchIndex(msg, -1)
	if len(all) == 0 {
		return ""
	}
	last := all[len(all)-1]
	id := msg[last[2]:last[3]]
	rest := strings.TrimSpace(msg[last[1]:])
	// the first line only: the rest of a multi-line error is context
	if i := strings.IndexByte(rest, '\n'); i >= 0 {
		rest = strings.TrimSpace(rest[:i])
	}
	if rest == "" {
		return ""
	}
	return binaryName + ": " + directiveName(id) + ": " + rest
}

// jsonError finds the admin API's {"error":"…"} answer, which `reload`
// passes on inside its own error.
var jsonError = regexp.MustCompile(`\{"error":("(?:[^"\\]|\\.)*")\}`)

// unwrapJSONError replaces an admin API error body in msg by its text.
func unwrapJSONError(msg string) string {
	m := jsonError.FindStringSubmatchIndex(msg)
	if m == nil {
		return msg
	}
	text, err := strconv.Unquote(msg[m[2]:m[3]])
	if err != nil {
		return msg
	}
	return msg[:m[0]] + text + msg[m[1]:]
}
