package sanitize

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

// Name byte classes.
const (
	nNone  = iota
	nStart // a-z _ :
	nChar  // 0-9 - .
	nUpper // A-Z
	nHigh  // part of a non-ASCII character
)

var nameClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z' || c == '_' || c == ':':
			t[c] = nStart
		case c >= '0' && c <= '9' || c == '-' || c == '.':
			t[c] = nChar
		case c >= 'A' && c <= 'Z':
			t[c] = nUpper
		case c >= 0x80:
			t[c] = nHigh
		}
	}
	return t
}()

// plainName: the bytes of a lower-case ASCII name other than the colon,
// which the fast loop of startTag takes without a second look.
var plainName = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
	}
	return t
}()

// nameKey returns the first eight bytes of the n-byte name at b[i:],
// zero-padded, as a number: enough to tell most names apart in one
// comparison.
func nameKey(b []byte, i, n int) uint64 {
	if i+8 <= len(b) {
		k := binary.LittleEndian.Uint64(b[i:])
		if n < 8 {
			k &= 1<<(8*n) - 1
		}
		return k
	}
	var k uint64
	for j := min(n, 8) - 1; j >= 0; j-- {
		k = k<<8 | uint64(b[i+j])
	}
	return k
}

// scanName returns the end of the name at b[i:] and whether it is plain:
// lower-case ASCII, with at most one colon, neither first nor last (a
// name as Namespaces in XML allows it). checkName says what is wrong with
// a name that is not plain.
func scanName(b []byte, i int) (int, bool) {
	end, plain, _ := scanNameColon(b, i)
	return end, plain
}

// scanNameColon is scanName that also returns the index just after the
// name's last colon, where its local name starts (i if none).
func scanNameColon(b []byte, i int) (end int, plain bool, local int) {
	start, plain, local, colons := i, true, i, 0
	for ; i < len(b); i++ {
		switch nameClass[b[i]] {
		case nNone:
			return i, plain && (colons == 0 || colons == 1 && local-1 > start && local < i), local
		case nUpper, nHigh:
			plain = false
		case nStart:
			if b[i] == ':' {
				local = i + 1
				colons++
			}
		}
	}
	return i, plain && (colons == 0 || colons == 1 && local-1 > start && local < i), local
}

func isNameStart(c byte) bool {
	t := nameClass[c]
	return t != nNone && t != nChar
}

// checkName refuses a name that scanName did not find plain: one that is
// not lower-case ASCII, or whose colons Namespaces in XML does not allow.
func (s *scanner) checkName(name []byte) error {
	upper := false
	for _, c := range name {
		if c >= 0x80 {
			if !utf8.Valid(name) {
				return &spotError{ErrInvalidUTF8, "in a name"}
			}
			if bytes.Contains(name, []byte("\xEF\xBB\xBF")) {
				return &spotError{ErrBOM, "in a name"}
			}
			upper = true
			break
		}
		upper = upper || c >= 'A' && c <= 'Z'
	}
	if upper {
		if err := s.bad(ErrUpperCase, "in a tag or attribute name"); err != nil {
			return err
		}
	}
	if k := bytes.IndexByte(name, ':'); k >= 0 && (k == 0 || k == len(name)-1 || bytes.IndexByte(name[k+1:], ':') >= 0) {
		return s.bad(ErrMalformed, "a name with a misplaced colon")
	}
	return nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func localName(name []byte) []byte {
	for k := len(name) - 1; k >= 0; k-- {
		if name[k] == ':' {
			return name[k+1:]
		}
	}
	return name
}

// eqFold compares b with the lower-case ASCII f, ignoring ASCII case.
func eqFold(b []byte, f string) bool {
	if len(b) != len(f) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != f[i] {
			return false
		}
	}
	return true
}

// maybe is a quick filter before isField and the test for "account": it
// says no to most names by their length and first letter.
func (g *Guard) maybe(local []byte) bool {
	return len(local) > 0 && len(local) < len(g.first) && g.first[len(local)]&(1<<(local[0]&31)) != 0
}

func (g *Guard) isField(local []byte, inAccount bool) bool {
	if len(local) >= len(g.byLen) {
		return false
	}
	for _, f := range g.byLen[len(local)] {
		if (inAccount || !f.inAccount) && eqFold(local, f.name) {
			return true
		}
	}
	return false
}
