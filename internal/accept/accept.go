// Package accept reads an HTTP Accept header (RFC 9110, section 12.5.1)
// into its media ranges and weights, strictly: a header that does not
// follow the grammar is an error, never a guess.
//
// The grammar read is RFC 9110's:
//
//	Accept      = #( media-range [ weight ] )
//	media-range = ( "*/*" / ( type "/" "*" ) / ( type "/" subtype ) ) parameters
//	parameters  = *( OWS ";" OWS [ parameter ] )
//	parameter   = parameter-name "=" ( token / quoted-string )
//	weight      = OWS ";" OWS "q=" qvalue
//	qvalue      = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
//
// A list may hold empty elements ("a/b, , c/d"), which are skipped, as
// section 5.6.1 requires. The weight is the parameter named q (in any
// case), given at most once, as a bare qvalue; other parameters are checked
// and not kept. Type and subtype are returned in lower case.
//
// The package knows nothing of HTTP servers.
package accept

import (
	"errors"
	"strings"
)

// MaxRanges is the most media ranges Parse reads; a header with more is
// an error. A client that means something names a handful.
const MaxRanges = 64

// ErrMalformed is returned by Parse for a header that does not follow the
// grammar, or that holds more than MaxRanges ranges.
var ErrMalformed = errors.New("accept: malformed Accept header")

// Range is one media range of an Accept header.
type Range struct {
	// Type and Subtype are in lower case; "*" is a wildcard (Type "*"
	// only with Subtype "*").
	Type, Subtype string
	// Q is the weight in thousandths: 0 (not acceptable) to 1000, the
	// default.
	Q int
}

// Parse reads the media ranges of an Accept header, given as the values of
// its field lines, in order (several lines make one comma-separated list).
// No field, or fields holding only empty elements, give no ranges and no
// error: that says "anything", as no Accept header does.
func Parse(fields []string) ([]Range, error) {
	var out []Range
	for _, f := range fields {
		p := parser{s: f}
		for {
			p.ows()
			if p.done() {
				break
			}
			if p.peek() == ',' {
				p.i++
				continue
			}
			if len(out) == MaxRanges {
				return nil, ErrMalformed
			}
			r, ok := p.mediaRange()
			if !ok {
				return nil, ErrMalformed
			}
			out = append(out, r)
			p.ows()
			if p.done() {
				break
			}
			if p.peek() != ',' {
				return nil, ErrMalformed
			}
			p.i++
		}
	}
	return out, nil
}

// Weight is the weight ranges give a response of type typ/subtype (lower
// case, no wildcard): that of the most specific range matching it
// (typ/subtype, then typ/*, then */*), the highest among equally specific
// ones; 0 when none matches. Parameters do not count: a range
// "application/json;charset=utf-8" matches application/json.
func Weight(ranges []Range, typ, subtype string) int {
	best, level := 0, 0 // level: 3 exact, 2 typ/*, 1 */*, 0 none
	for _, r := range ranges {
		l := 0
		switch {
		case r.Type == typ && r.Subtype == subtype:
			l = 3
		case r.Type == typ && r.Subtype == "*":
			l = 2
		case r.Type == "*" && r.Subtype == "*":
			l = 1
		}
		if l == 0 || l < level {
			continue
		}
		if l > level || r.Q > best {
			best, level = r.Q, l
		}
	}
	return best
}

// parser walks one field line.
type parser struct {
	s string
	i int
}

func (p *parser) done() bool { return p.i >= len(p.s) }
func (p *parser) peek() byte { return p.s[p.i] }

// ows skips optional white space (SP, HTAB).
func (p *parser) ows() {
	for !p.done() && (p.peek() == ' ' || p.peek() == '\t') {
		p.i++
	}
}

// token reads a token (one or more tchar), or "" if there is none here.
func (p *parser) token() string {
	start := p.i
	for !p.done() && isTchar(p.peek()) {
		p.i++
	}
	return p.s[start:p.i]
}

// quoted reads a quoted-string, the opening quote at p.i, and reports
// whether it was well formed.
func (p *parser) quoted() bool {
	p.i++ // the opening DQUOTE
	for !p.done() {
		c := p.peek()
		p.i++
		switch {
		case c == '"':
			return true
		case c == '\\':
			if p.done() || !isQuotedPairChar(p.peek()) {
				return false
			}
			p.i++
		case !isQdtext(c):
			return false
		}
	}
	return false // unterminated
}

// mediaRange reads a media range with its parameters, up to (not
// including) the OWS before the next ',' or the end.
func (p *parser) mediaRange() (Range, bool) {
	r := Range{Q: 1000}
	typ := p.token()
	if typ == "" || p.done() || p.peek() != '/' {
		return r, false
	}
	p.i++
	sub := p.token()
	if sub == "" {
		return r, false
	}
	r.Type, r.Subtype = strings.ToLower(typ), strings.ToLower(sub)
	if r.Type == "*" && r.Subtype != "*" {
		return r, false // "*/json" is no media range
	}
	sawQ := false
	for {
		save := p.i
		p.ows()
		if p.done() || p.peek() != ';' {
			p.i = save // the OWS belongs to the list
			return r, true
		}
		p.i++
		p.ows()
		if p.done() || p.peek() == ',' || p.peek() == ';' {
			continue // an empty parameter: allowed
		}
		name := p.token()
		if name == "" || p.done() || p.peek() != '=' {
			return r, false
		}
		p.i++
		if p.done() {
			return r, false
		}
		if strings.EqualFold(name, "q") {
			q, ok := qvalue(p.token())
			if sawQ || !ok {
				return r, false
			}
			r.Q, sawQ = q, true
			continue
		}
		if p.peek() == '"' {
			if !p.quoted() {
				return r, false
			}
		} else if p.token() == "" {
			return r, false
		}
	}
}

// qvalue reads a weight's value into thousandths.
func qvalue(s string) (int, bool) {
	if s == "" || len(s) > 5 || (s[0] != '0' && s[0] != '1') {
		return 0, false
	}
	if len(s) > 1 && s[1] != '.' {
		return 0, false
	}
	n := int(s[0]-'0') * 1000
	scale := 100
	for i := 2; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' || (s[0] == '1' && c != '0') {
			return 0, false
		}
		n += int(c-'0') * scale
		scale /= 10
	}
	return n, true
}

// isTchar reports whether c may appear in a token (RFC 9110, 5.6.2).
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isQdtext reports whether c may appear unescaped in a quoted-string.
func isQdtext(c byte) bool {
	return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || c >= 0x80
}

// isQuotedPairChar reports whether c may follow a backslash in a
// quoted-string.
func isQuotedPairChar(c byte) bool {
	return c == '\t' || c == ' ' || (c >= 0x21 && c <= 0x7e) || c >= 0x80
}
