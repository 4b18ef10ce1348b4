// Package urlpath decides whether a request path, as the client sent it,
// is canonical: one that every HTTP server, framework and proxy reads the
// same way. A gateway that authorizes a request by its path must refuse the
// others, since the application behind it may resolve them to another
// resource than the one the gateway checked.
//
// A canonical path begins with "/", is made of non-empty segments
// separated by single slashes, has no trailing slash (the root "/" aside),
// and holds no
//
//   - dot segment ("." or ".."), raw or percent-encoded;
//   - backslash or ";" (matrix parameters), raw or percent-encoded;
//   - percent-encoded "/", "%", "?" or "#";
//   - control byte or byte above 0x7e, raw (encoded, only those above 0x7f
//     are allowed: UTF-8 written as RFC 3986 says);
//   - percent-encoding of an unreserved character (letter, digit, "-",
//     ".", "_", "~"), which RFC 3986 says to decode: "%61ccounts" is
//     "accounts" to some readers and not to others;
//   - malformed percent-encoding;
//   - other character outside RFC 3986's pchar ("#", space, quotes,
//     "<", ">", "[", "]", "{", "}", "|", "^", "`").
//
// The package knows nothing of HTTP servers.
package urlpath

import (
	"errors"
	"strings"
)

// ErrNotCanonical is matched (errors.Is) by every error of Check.
var ErrNotCanonical = errors.New("urlpath: path is not canonical")

// Reason is why a path is not canonical. Its text is safe to show a
// client: it never quotes the path.
type Reason string

// The reasons Check gives.
const (
	NotAPath         Reason = "not a path"
	EmptySegment     Reason = "empty segment"
	TrailingSlash    Reason = "trailing slash"
	DotSegment       Reason = "dot segment"
	Backslash        Reason = "backslash"
	Parameter        Reason = "path parameter (;)"
	EncodedSeparator Reason = "encoded separator"
	ControlByte      Reason = "control or non-ASCII byte"
	NeedlessEncoding Reason = "needless percent-encoding"
	BadEncoding      Reason = "malformed percent-encoding"
	BadCharacter     Reason = "character not allowed in a path"
)

// Error is a non-canonical path's error.
type Error struct{ Reason Reason }

func (e *Error) Error() string { return "urlpath: path is not canonical: " + string(e.Reason) }

// Is makes every *Error match ErrNotCanonical.
func (e *Error) Is(target error) bool { return target == ErrNotCanonical }

// The errors of Check, one per reason, so that Check does not allocate.
var errs = map[Reason]*Error{}

func fail(r Reason) error { return errs[r] }

func init() {
	for _, r := range []Reason{NotAPath, EmptySegment, TrailingSlash, DotSegment, Backslash, Parameter,
		EncodedSeparator, ControlByte, NeedlessEncoding, BadEncoding, BadCharacter} {
		errs[r] = &Error{Reason: r}
	}
}

// class of each byte as it may appear raw in a canonical path.
const (
	cBad     = iota // not allowed
	cOK             // unreserved, or a sub-delim other than ';', ':' or '@'
	cSlash          // '/'
	cPercent        // '%'
	cCtl            // control byte, DEL, or above 0x7e
	cBackslash
	cSemicolon
	cDot
)

var raw [256]uint8

func init() {
	for c := range 256 {
		b := byte(c)
		switch {
		case b < 0x20 || b >= 0x7f:
			raw[c] = cCtl
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
			raw[c] = cOK
		}
	}
	for _, b := range []byte("-_~!$&'()*+,=:@") {
		raw[b] = cOK
	}
	raw['.'] = cDot
	raw['/'] = cSlash
	raw['%'] = cPercent
	raw['\\'] = cBackslash
	raw[';'] = cSemicolon
}

// Check reports whether p, a path exactly as the client sent it (still
// percent-encoded, without the query), is canonical. Its error is an
// *Error naming the first fault found, matching ErrNotCanonical.
func Check(p string) error {
	if p == "" || p[0] != '/' {
		return fail(NotAPath)
	}
	if p == "/" {
		return nil
	}
	// segStart is where the current segment began; dots counts the
	// segment's dots (raw or encoded) while it holds nothing else, or is
	// -1 once it does; encDot notes an encoded dot in the segment.
	segStart, dots, encDot := 1, 0, false
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch raw[c] {
		case cSlash:
			if i == segStart {
				return fail(EmptySegment)
			}
			if err := endSegment(dots, encDot); err != nil {
				return err
			}
			segStart, dots, encDot = i+1, 0, false
			continue
		case cDot:
			if dots >= 0 {
				dots++
			}
			continue
		case cOK:
		case cPercent:
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return fail(BadEncoding)
			}
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			i += 2
			switch {
			case d == '.':
				encDot = true
				if dots >= 0 {
					dots++
				}
				continue
			case d == '/' || d == '%' || d == '?' || d == '#':
				return fail(EncodedSeparator)
			case d == '\\':
				return fail(Backslash)
			case d == ';':
				return fail(Parameter)
			case d < 0x20 || d == 0x7f:
				return fail(ControlByte)
			case isUnreserved(d):
				return fail(NeedlessEncoding)
			}
		case cCtl:
			return fail(ControlByte)
		case cBackslash:
			return fail(Backslash)
		case cSemicolon:
			return fail(Parameter)
		default:
			return fail(BadCharacter)
		}
		dots = -1
	}
	if segStart == len(p) {
		return fail(TrailingSlash)
	}
	return endSegment(dots, encDot)
}

// endSegment judges a segment by its dots: "." and ".." (raw or encoded)
// are dot segments; any other encoded dot is a needless encoding.
func endSegment(dots int, encDot bool) error {
	switch {
	case dots == 1 || dots == 2:
		return fail(DotSegment)
	case encDot:
		return fail(NeedlessEncoding)
	}
	return nil
}

// FromRequestURI returns the path of an HTTP request-target as the client
// sent it (Go's http.Request.RequestURI): the origin form's path, or the
// path of an absolute form ("http://host/path"), without the query. The
// asterisk and authority forms have none: ok is false.
func FromRequestURI(target string) (p string, ok bool) {
	if !strings.HasPrefix(target, "/") {
		scheme, rest, found := strings.Cut(target, "://")
		if !found || scheme == "" || strings.ContainsAny(scheme, "/?#") {
			return "", false
		}
		i := strings.IndexAny(rest, "/?#")
		if i < 0 || rest[i] != '/' {
			return "", false
		}
		target = rest[i:]
	}
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	return target, true
}

// Segments splits a canonical path into its segments, still encoded.
// The root "/" has none.
func Segments(p string) []string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func isUnreserved(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == '-' || b == '.' || b == '_' || b == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
