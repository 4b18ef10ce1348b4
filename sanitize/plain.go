package sanitize

import "unicode/utf8"

// Reading a reply as text (MaskText, InspectText, InspectHeader), and the
// numbers in names.

// Byte classes of the text loop. The two lowest are what the loop may
// skip while no number is open.
const (
	pPlain = iota // ASCII that breaks a number
	pSep          // ASCII separator, and the control characters
	pDigit        // 0-9
	pPct          // %, which may start a percent-encoded byte
	pAmp          // &, which may start a reference
	pHigh         // the first byte of a multi-byte UTF-8 sequence (or not UTF-8)
)

var pclass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 0x80:
			t[c] = pHigh
		case class[c] == cSep || class[c] == cCtl || c == 0x7F:
			t[c] = pSep
		case class[c] == cDigit:
			t[c] = pDigit
		case c == '%':
			t[c] = pPct
		case c == '&':
			t[c] = pAmp
		}
	}
	return t
}()

// runPlain reads the whole reply as text.
func (s *scanner) runPlain() error {
	for {
		if s.pos >= s.n {
			if s.eof {
				s.text.brk()
				return s.flush()
			}
			if err := s.fill(); err != nil {
				return err
			}
			continue
		}
		err := s.plainLoop(&s.text)
		if err == errMore {
			err = s.fill()
		}
		if err != nil {
			return err
		}
	}
}

// plainLoop feeds buf[pos:n] to d as text: every byte is a character, no
// markup is parsed, and nothing is refused. Besides the characters of the
// package documentation's rules, a character reference (&#52;) and a
// percent-encoded ASCII byte (%34) count as the character they stand
// for, an entity reference other than the five of XML as a separator,
// and a control character, a byte that is not UTF-8 and U+FEFF as
// separators too: whatever a reader of the text might skip joins digits.
// It stops at a reference or sequence cut by the end of the buffer
// (errMore) unless the input has ended.
func (s *scanner) plainLoop(d *detector) error {
	b := s.buf[:s.n]
	i := s.pos
	for i < len(b) {
		if !d.active {
			for i < len(b) && pclass[b[i]] <= pSep {
				i++
			}
			if i == len(b) {
				break
			}
		}
		c := b[i]
		switch pclass[c] {
		case pPlain:
			d.brk()
			i++
		case pSep:
			d.sep()
			i++
		case pDigit:
			d.digit(int(c-'0'), s.base+int64(i), 1)
			i++
		case pPct:
			if i+3 > len(b) && !s.eof {
				s.pos = i
				return errMore
			}
			if i+3 > len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				d.brk()
				i++
				continue
			}
			v := unhex(b[i+1])<<4 | unhex(b[i+2])
			switch {
			case v >= '0' && v <= '9':
				d.digit(int(v-'0'), s.base+int64(i), 3)
			case v < 0x80 && pclass[v] == pSep:
				d.sep()
			default:
				d.brk()
			}
			i += 3
		case pAmp:
			n, err := s.plainRef(d, b, i)
			if err != nil {
				s.pos = i
				return err
			}
			i += n
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				if !s.eof && !utf8.FullRune(b[i:]) {
					s.pos = i
					return errMore
				}
				d.sep()
				i++
				continue
			}
			s.plainChar(d, r, s.base+int64(i), size)
			i += size
		}
	}
	s.pos = i
	return nil
}

// plainChar feeds a character of text whose raw form is size bytes at off.
func (s *scanner) plainChar(d *detector, r rune, off int64, size int) {
	switch {
	case r < 0x80 && pclass[r] == pSep:
		d.sep()
	case r == 0xFEFF:
		d.sep()
	default:
		_ = s.char(d, r, off, size) // only U+FEFF is an error there
	}
}

// plainRef handles the reference, or bare &, at b[i] in text.
func (s *scanner) plainRef(d *detector, b []byte, i int) (int, error) {
	lim := min(i+refMax, len(b))
	k := i + 1
	for k < lim && refByte[b[k]] {
		k++
	}
	if k == len(b) && !s.eof {
		return 0, errMore
	}
	if k == lim || b[k] != ';' || k == i+1 {
		d.brk()
		return 1, nil
	}
	body, n := b[i+1:k], k+1-i
	if body[0] == '#' {
		if r, ok, _ := charRef(body[1:]); ok {
			s.plainChar(d, r, s.base+int64(i), n)
		} else {
			d.brk()
		}
		return n, nil
	}
	switch string(body) {
	case "lt", "gt", "amp", "apos", "quot":
		d.brk()
	default:
		d.sep()
	}
	return n, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'f'
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// nameNumbers refuses the name b[i:j] if it holds a number that would be
// masked as text in its place (field: inside a field, where 9 digits make
// an account number). Most names are passed on a count of their digits.
func (s *scanner) nameNumbers(b []byte, i, j int, field bool, account int32, what string) error {
	need, digits := 13, 0
	if field {
		need = 9
	}
	for k := i; k < j; k++ {
		c := b[k]
		if c >= '0' && c <= '9' {
			digits++
		} else if c >= 0x80 {
			digits = need
			break
		}
	}
	if digits < need {
		return nil
	}
	d := &s.nameD
	before := s.cards + s.accts
	d.preset(ctxName, field, account, nil)
	for k := i; k < j; {
		c := b[k]
		if c < 0x80 {
			switch class[c] {
			case cDigit:
				d.digit(int(c-'0'), s.base+int64(k), 1)
			case cSep:
				d.sep()
			default:
				d.brk()
			}
			k++
			continue
		}
		r, size := utf8.DecodeRune(b[k:j])
		if r == utf8.RuneError && size <= 1 {
			return &spotError{ErrInvalidUTF8, "in a name"}
		}
		if err := s.char(d, r, s.base+int64(k), size); err != nil {
			return err
		}
		k += size
	}
	d.brk()
	if s.cards+s.accts > before {
		return &spotError{ErrNumberInName, what}
	}
	return nil
}
