package sanitize

import (
	"unicode/utf8"
)

// refByte: the bytes a reference's name or number may hold.
var refByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '#' || c == '_' || c == '-' || c == '.' || c == ':'
	}
	return t
}()

// ref handles the reference, or bare &, at b[i].
func (s *scanner) ref(d *detector, b []byte, i int, complete bool) (int, error) {
	lim := min(i+refMax, len(b))
	k := i + 1
	for k < lim && refByte[b[k]] {
		k++
	}
	if k == len(b) && !complete {
		return 0, errMore
	}
	if k == lim || b[k] != ';' || k == i+1 {
		if err := s.bad(ErrMalformed, "an & that starts no reference"); err != nil {
			return 0, err
		}
		d.brk()
		return 1, nil
	}
	body, n := b[i+1:k], k+1-i
	if body[0] == '#' {
		r, ok, upperX := charRef(body[1:])
		if !ok {
			if err := s.bad(ErrMalformed, "a character reference to no XML character"); err != nil {
				return 0, err
			}
			d.brk()
			return n, nil
		}
		if upperX {
			if err := s.bad(ErrMalformed, "a character reference with &#X"); err != nil {
				return 0, err
			}
		}
		return n, s.char(d, r, s.base+int64(i), n)
	}
	switch string(body) {
	case "lt", "gt", "amp", "apos", "quot":
		d.brk()
		return n, nil
	}
	if err := s.bad(ErrEntity, "an entity reference"); err != nil {
		return 0, err
	}
	if err := s.nameNumbers(b, i+1, k, s.fieldDepth > 0 || d == &s.aux && d.pField, s.account(), "an entity reference's name"); err != nil {
		return 0, err
	}
	// Let through, an entity unknown to the guard stands between digits
	// as a separator would: it might be a space to whoever reads it.
	d.sep()
	return n, nil
}

// charRef decodes the number of a character reference (after "&#").
func charRef(b []byte) (r rune, ok, upperX bool) {
	base := rune(10)
	if len(b) > 0 && (b[0] == 'x' || b[0] == 'X') {
		base, upperX, b = 16, b[0] == 'X', b[1:]
	}
	if len(b) == 0 {
		return 0, false, false
	}
	for _, c := range b {
		var v rune
		switch {
		case c >= '0' && c <= '9':
			v = rune(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			v = rune(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			v = rune(c-'A') + 10
		default:
			return 0, false, false
		}
		if r = r*base + v; r > utf8.MaxRune {
			return 0, false, false
		}
	}
	return r, isXMLChar(r), upperX
}

func isXMLChar(r rune) bool {
	return r == 0x9 || r == 0xA || r == 0xD || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= utf8.MaxRune
}
