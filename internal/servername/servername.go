// Package servername decides whether the server name a TLS client asks
// for (SNI, RFC 6066) is one that every reader of it reads the same way,
// and whether the HTTP Host a request then names is that same name.
//
// A server reads the name more than once: to choose a TLS configuration
// (client authentication, say), to choose a certificate, and to check the
// Host of each request against it. When those readers normalise the name
// differently (one maps Unicode to punycode, one lower-cases by Unicode
// rules, one compares by Unicode case folding, one trims spaces), a name
// like "fdx.ban\u212a.example" (U+212A KELVIN SIGN for "k") is a stranger to
// the first and the protected site to the others. RFC 6066 allows only
// ASCII host names in SNI; this package accepts nothing else:
//
//   - a server name is empty (the client sent none) or an ASCII host name:
//     labels of 1 to 63 letters, digits, "-" or "_", separated by single
//     dots, 253 bytes at most, with no leading or trailing dot;
//   - a Host matches a server name when, its port removed, it is the same
//     name byte for byte after ASCII lower-casing, and nothing else: no
//     Unicode folding, no trailing-dot removal, no IDNA mapping.
//
// The package knows nothing of TLS libraries or HTTP servers; its
// functions are safe for concurrent use.
package servername

import (
	"errors"
	"strings"
)

// The errors of Check and MatchHost. Their text never quotes the name.
var (
	// ErrNotASCII: the name holds a byte above 0x7f.
	ErrNotASCII = errors.New("servername: not plain ASCII")
	// ErrMalformed: the name is not an ASCII host name (a character
	// outside letters, digits, "-" and "_"; an empty label, a leading or
	// trailing dot; a label or name too long), or the Host is not a host
	// with an optional port.
	ErrMalformed = errors.New("servername: not a host name")
	// ErrNoServerName: the connection named no server, so there is
	// nothing a Host could match.
	ErrNoServerName = errors.New("servername: no server name")
	// ErrHostMismatch: the Host names another host than the server name.
	ErrHostMismatch = errors.New("servername: the Host is not the server name")
)

// MaxLen is the longest host name (RFC 1035's 255 octets on the wire,
// less the length octets of the first label and of the root).
const MaxLen = 253

// maxLabel is the longest label (RFC 1035).
const maxLabel = 63

// ldh marks the bytes allowed in a label: letters, digits, "-" and "_"
// (which DNS itself allows and some internal names use).
var ldh [256]bool

func init() {
	for c := range 256 {
		b := byte(c)
		ldh[c] = 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_'
	}
}

// Check reports whether name, a server name as the client sent it, may be
// served: the empty name (no SNI) or an ASCII host name. Its error is
// ErrNotASCII or ErrMalformed.
func Check(name string) error {
	if name == "" {
		return nil
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			return ErrNotASCII
		}
	}
	if len(name) > MaxLen {
		return ErrMalformed
	}
	label := 0
	for i := 0; i < len(name); i++ {
		b := name[i]
		if b == '.' {
			if label == 0 {
				return ErrMalformed // leading dot, or two in a row
			}
			label = 0
			continue
		}
		if !ldh[b] {
			return ErrMalformed
		}
		if label++; label > maxLabel {
			return ErrMalformed
		}
	}
	if label == 0 {
		return ErrMalformed // trailing dot
	}
	return nil
}

// MatchHost reports whether host, an HTTP request's Host (or HTTP/2
// :authority), names the server name serverName of its connection: the
// host part, its port and any brackets removed, must equal serverName
// after ASCII lower-casing of both, and serverName must pass Check and
// not be empty. A trailing dot in the Host is a difference, not a
// spelling. Its error is ErrNoServerName, ErrNotASCII, ErrMalformed or
// ErrHostMismatch.
func MatchHost(serverName, host string) error {
	h, ok := hostname(host)
	switch {
	case !ok:
		return ErrMalformed
	case serverName == "":
		return ErrNoServerName
	}
	if err := Check(serverName); err != nil {
		return err
	}
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			return ErrNotASCII
		}
	}
	if !equalFoldASCII(serverName, h) {
		return ErrHostMismatch
	}
	return nil
}

// hostname returns the host of a Host value: without its port, and
// without the brackets of an IPv6 literal. ok is false for an empty host,
// a port that is not digits, an unbalanced bracket, or brackets around
// anything but an IPv6 literal (Caddy's host matcher strips them from
// "[fdx.bank.example]").
func hostname(host string) (h string, ok bool) {
	port := ""
	if host != "" && host[0] == '[' {
		end := -1
		for i := 1; i < len(host); i++ {
			if host[i] == ']' {
				end = i
				break
			}
		}
		if end < 0 {
			return "", false
		}
		h, rest := host[1:end], host[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return "", false
			}
			port = rest[1:]
		}
		return h, strings.Contains(h, ":") && digits(port) // brackets hold an IPv6 literal only
	}
	h = host
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == ':' {
			h, port = host[:i], host[i+1:]
			break
		}
	}
	for i := 0; i < len(h); i++ {
		if h[i] == ':' || h[i] == '[' || h[i] == ']' {
			return "", false // an IPv6 literal without brackets, or a stray bracket
		}
	}
	return h, h != "" && digits(port)
}

// digits reports whether s is empty or only ASCII digits.
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// equalFoldASCII reports whether a and b are equal after mapping "A"-"Z"
// to "a"-"z" and nothing else.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + ('a' - 'A')
	}
	return b
}
