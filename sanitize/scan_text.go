package sanitize

import (
	"unicode/utf8"
)

// chars scans text from pos up to the next < (or the end of the buffer).
func (s *scanner) chars() error {
	if s.depth == 0 && !s.tail {
		return s.outside()
	}
	return s.textLoop()
}

func (s *scanner) textLoop() error {
	b := s.buf[:s.n]
	i := s.pos
	d := &s.text
	lim := s.runLimit()
	for i < lim {
		if !d.active {
			for i < lim && class[b[i]] <= cSep {
				i++
			}
			if i == lim {
				break
			}
		}
		c := b[i]
		switch class[c] {
		case cPlain:
			d.brk()
			i++
		case cSep:
			d.sep()
			i++
		case cDigit:
			d.digit(int(c-'0'), s.base+int64(i), 1)
			i++
		case cLT:
			if !s.tail {
				s.pos = i
				return s.checkRun()
			}
			d.brk()
			i++
		default:
			n, err := s.special(d, b, i, s.eof, true)
			if err != nil {
				if err == errMore {
					s.pos = i
				}
				return err
			}
			i += n
		}
	}
	s.pos = i
	return s.checkRun()
}

// outside scans text outside the root element: white space only.
func (s *scanner) outside() error {
	b := s.buf[:s.n]
	i := s.pos
	for lim := s.runLimit(); i < lim; {
		c := b[i]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			s.text.sep() // a number open with AllowMalformed
			i++
			continue
		}
		if c == '<' {
			break
		}
		if c >= 0x80 {
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				if !s.eof && !utf8.FullRune(b[i:]) {
					s.pos = i
					return errMore
				}
				return &spotError{ErrInvalidUTF8, "in text"}
			}
			if r == 0xFEFF {
				return &spotError{ErrBOM, "in text"}
			}
		}
		if err := s.bad(ErrMalformed, "text outside the root element"); err != nil {
			return err
		}
		s.pos = i
		return s.textLoop()
	}
	s.pos = i
	return s.checkRun()
}

// special handles the byte classes above cLT at b[i]: &, ], control
// characters and non-ASCII. complete says that no more input will follow
// b; inText, that b is element text (where ]]> is not allowed). It
// returns the bytes consumed.
func (s *scanner) special(d *detector, b []byte, i int, complete, inText bool) (int, error) {
	switch class[b[i]] {
	case cAmp:
		return s.ref(d, b, i, complete)
	case cRBracket:
		if inText {
			if i+2 >= len(b) && !complete {
				return 0, errMore
			}
			if i+2 < len(b) && b[i+1] == ']' && b[i+2] == '>' {
				if err := s.bad(ErrMalformed, "]]> in text"); err != nil {
					return 0, err
				}
			}
		}
		d.brk()
		return 1, nil
	case cCtl:
		if err := s.bad(ErrMalformed, "a control character"); err != nil {
			return 0, err
		}
		d.brk()
		return 1, nil
	}
	r, size := utf8.DecodeRune(b[i:])
	if r == utf8.RuneError && size <= 1 {
		if !complete && !utf8.FullRune(b[i:]) {
			return 0, errMore
		}
		return 0, &spotError{ErrInvalidUTF8, "in text"}
	}
	if r == 0xFFFE || r == 0xFFFF {
		if err := s.bad(ErrMalformed, "a character XML forbids"); err != nil {
			return 0, err
		}
		d.brk()
		return size, nil
	}
	return size, s.char(d, r, s.base+int64(i), size)
}

// char feeds a character whose raw form is size bytes at off.
func (s *scanner) char(d *detector, r rune, off int64, size int) error {
	if r < 0x80 {
		switch class[r] {
		case cDigit:
			d.digit(int(r-'0'), off, size)
		case cSep:
			d.sep()
		default:
			d.brk()
		}
		return nil
	}
	if r == 0xFEFF {
		return &spotError{ErrBOM, "in text"}
	}
	if v, ok := digitValue(r); ok {
		d.digit(v, off, size)
	} else if isSeparator(r) {
		d.sep()
	} else {
		d.brk()
	}
	return nil
}

// span feeds b[i:j], all present, to d: an attribute value (attr: with
// references, and no <), or the inside of CDATA, a comment or a
// processing instruction.
func (s *scanner) span(d *detector, b []byte, i, j int, attr bool) error {
	b = b[:j]
	for i < j {
		c := b[i]
		switch class[c] {
		case cPlain:
			d.brk()
			i++
		case cSep:
			d.sep()
			i++
		case cDigit:
			d.digit(int(c-'0'), s.base+int64(i), 1)
			i++
		case cLT:
			if attr {
				if err := s.bad(ErrMalformed, "a < in an attribute value"); err != nil {
					return err
				}
			}
			d.brk()
			i++
		case cAmp:
			if !attr {
				d.brk()
				i++
				continue
			}
			fallthrough
		default:
			n, err := s.special(d, b, i, true, false)
			if err != nil {
				return err
			}
			i += n
		}
	}
	return nil
}
