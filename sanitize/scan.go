package sanitize

import (
	"bytes"
	"errors"
	"io"
)

const (
	slack      = 64 << 10 // the buffer's room beyond twice the field bound
	minRead    = 16 << 10 // the least room a read is given
	writeBatch = 32 << 10 // mask mode writes once this much is final
	refMax     = 32       // the longest reference looked at, from & to ;
	maxDepth   = 256      // elements open at once
	maxNames   = 64       // distinct names a scanner remembers for findings
)

// errMore asks the scanner's loop for more input; it never leaves the
// package.
var errMore = errors.New("sanitize: more input needed")

// elem is an open element.
type elem struct {
	key          uint64 // nameKey of its name
	name0, name1 int32  // its name in scanner.names
	local        int32  // where its local name starts
	account      int32  // the innermost <account> around it, 1-based; 0 if none
	infield      bool   // a field, or inside one
	isAccount    bool
}

// scanner is one reply's pass. Bytes move through buf: buf[:out] has been
// written (or, inspecting, dropped), buf[out:pos] has been scanned and
// waits for no later byte to change it, buf[pos:n] is to be scanned. base
// is the stream offset of buf[0].
type scanner struct {
	g       *Guard
	src     io.Reader
	dst     io.Writer
	masking bool

	buf      []byte
	n        int
	pos      int
	out      int
	base     int64
	maxField int64
	eof      bool
	tail     bool // with AllowMalformed, after a reply ended inside markup: the rest is text

	stack        [maxDepth]elem
	depth        int    // open elements, in stack[:depth]
	names        []byte // their names, in names[:nameLen]
	nameLen      int32
	fieldDepth   int   // open elements that are fields or inside one
	fieldTop     int   // with fieldDepth > 0: index in stack of the outermost field
	accountDepth int   // open <account> elements
	accounts     int32 // <account> elements seen
	roots        int   // elements opened at depth 0
	rootEnd      int64 // while nothing is open after the root closed: offset of its end tag; else -1
	runStart     int64 // stream offset at which the current text run began

	text detector // element text and CDATA
	aux  detector // attribute values, comments, processing instructions

	findings     []Finding
	cards, accts int
	allowed      error
	intern       map[string]string

	nameD detector // names, each read whole
	plain bool     // the reply is read as text, not XML (MaskText, InspectText, InspectHeader)
}

func newScanner(g *Guard) *scanner {
	s := &scanner{g: g, buf: make([]byte, 2*g.maxField+g.slack), names: make([]byte, g.maxField+8), intern: make(map[string]string)}
	s.text.s, s.text.isText = s, true
	s.aux.s = s
	s.nameD.s = s
	return s
}

func (s *scanner) reset(src io.Reader, dst io.Writer, masking bool) {
	s.src, s.dst, s.masking, s.maxField = src, dst, masking, int64(s.g.maxField)
	s.n, s.pos, s.out, s.base = 0, 0, 0, 0
	s.eof, s.tail, s.plain = false, false, false
	s.depth, s.nameLen = 0, 0
	s.fieldDepth, s.fieldTop, s.accountDepth, s.accounts, s.roots = 0, -1, 0, 0, 0
	s.rootEnd, s.runStart = -1, 0
	s.text.reset()
	s.aux.reset()
	s.nameD.reset()
	s.findings, s.cards, s.accts, s.allowed = nil, 0, 0, nil
}

// release drops what the scanner must not keep between replies.
func (s *scanner) release() {
	s.src, s.dst = nil, nil
	s.findings, s.allowed = nil, nil
	s.text.reset()
	s.aux.reset()
	s.nameD.reset()
}

// bad meets a condition: it returns the error to stop with, or nil if the
// guard lets the condition through (AllowMalformed), remembering the first.
func (s *scanner) bad(e *Error, spot string) error {
	if s.g.allow && (e == ErrMalformed || e == ErrEntity || e == ErrUpperCase) {
		if s.allowed == nil {
			s.allowed = &spotError{e, spot}
		}
		return nil
	}
	return &spotError{e, spot}
}

func (s *scanner) run() error {
	if s.plain {
		return s.runPlain()
	}
	if err := s.start(); err != nil {
		return err
	}
	for {
		if s.pos >= s.n {
			if s.eof {
				return s.finish()
			}
			if err := s.fill(); err != nil {
				return err
			}
			continue
		}
		var err error
		if b, i := s.buf[:s.n], s.pos; b[i] == '<' && !s.tail {
			// markup is looked at no further than its bound: beyond it is
			// ErrFieldTooLarge (see more), whatever comes there
			if lim := i + s.g.maxField + 1; lim < len(b) {
				b = b[:lim]
			}
			switch {
			case i+1 == len(b):
				err = s.more(i, "markup")
			case b[i+1] == '/':
				err = s.endTag(b, i)
			case b[i+1] == '?':
				err = s.pi(b, i)
			case b[i+1] == '!':
				err = s.bang(b, i)
			default:
				if !s.fastStart(b, i) {
					err = s.startTag(b, i)
				}
			}
		} else {
			err = s.chars()
		}
		if err == errMore {
			err = s.fill()
		}
		if err != nil {
			return err
		}
	}
}

// start refuses byte-order marks.
func (s *scanner) start() error {
	for s.n < 3 && !s.eof {
		if err := s.fill(); err != nil {
			return err
		}
	}
	b := s.buf[:s.n]
	if bytes.HasPrefix(b, []byte("\xEF\xBB\xBF")) || bytes.HasPrefix(b, []byte("\xFE\xFF")) || bytes.HasPrefix(b, []byte("\xFF\xFE")) {
		return &spotError{ErrBOM, "at the start"}
	}
	return nil
}

// finish ends the reply at the end of its input.
func (s *scanner) finish() error {
	s.text.brk()
	if s.depth > 0 {
		if err := s.bad(ErrMalformed, "the reply ends inside an element"); err != nil {
			return err
		}
	}
	if s.roots == 0 {
		if err := s.bad(ErrMalformed, "no root element"); err != nil {
			return err
		}
	}
	s.rootEnd = -1
	return s.flush()
}

// safe returns the index in buf before which every byte is final.
func (s *scanner) safe() int {
	p := s.pos
	if h := s.text.hold(); h >= 0 && int(h-s.base) < p {
		p = int(h - s.base)
	}
	if h := s.aux.hold(); h >= 0 && int(h-s.base) < p {
		p = int(h - s.base)
	}
	if s.rootEnd >= 0 && int(s.rootEnd-s.base) < p {
		p = int(s.rootEnd - s.base)
	}
	return p
}

// flush writes what is final (mask mode) or lets it go (inspecting).
func (s *scanner) flush() error {
	p := s.safe()
	if p <= s.out {
		return nil
	}
	if s.masking {
		if _, err := s.dst.Write(s.buf[s.out:p]); err != nil {
			return &causeError{ErrWrite, err}
		}
	}
	s.out = p
	return nil
}

// fill reads more input, making room first if need be.
func (s *scanner) fill() error {
	if len(s.buf)-s.n < s.g.minRead {
		if err := s.flush(); err != nil {
			return err
		}
		if d := s.out; d > 0 {
			copy(s.buf, s.buf[d:s.n])
			s.n -= d
			s.pos -= d
			s.out = 0
			s.base += int64(d)
		}
		if s.n == len(s.buf) {
			return &spotError{ErrFieldTooLarge, "the input held exceeds the buffer"}
		}
	}
	for range 100 {
		m, err := s.src.Read(s.buf[s.n:])
		s.n += m
		if err != nil {
			if err == io.EOF {
				s.eof = true
				return nil
			}
			var e *Error
			if errors.As(err, &e) {
				return err
			}
			return &causeError{ErrRead, err}
		}
		if m > 0 {
			if s.safe()-s.out >= writeBatch {
				return s.flush()
			}
			return nil
		}
	}
	return &causeError{ErrRead, io.ErrNoProgress}
}

// runLimit returns the index in buf of the first byte beyond the bound of
// the current text run, or the end of the buffer: the text loops stop
// there, so that what comes after the bound is never looked at, however
// the input was cut into reads.
func (s *scanner) runLimit() int {
	if l := s.runStart - s.base + s.maxField + 1; l < int64(s.n) {
		return int(max(l, 0))
	}
	return s.n
}

// checkRun bounds the current text run.
func (s *scanner) checkRun() error {
	if s.base+int64(s.pos)-s.runStart > s.maxField {
		return &spotError{ErrFieldTooLarge, "a text run"}
	}
	return nil
}

// more is the answer to markup that starts at b[i] and is not complete in
// the buffer.
func (s *scanner) more(i int, what string) error {
	if s.n-i > s.g.maxField {
		return &spotError{ErrFieldTooLarge, what}
	}
	if !s.eof {
		return errMore
	}
	if err := s.bad(ErrMalformed, "the reply ends inside "+what); err != nil {
		return err
	}
	s.tail = true
	return nil
}

// literal takes, with AllowMalformed, a < that starts no markup as a
// character of the text.
func (s *scanner) literal(spot string) error {
	if err := s.bad(ErrMalformed, spot); err != nil {
		return err
	}
	s.text.brk()
	s.pos++
	return nil
}

func (s *scanner) tooLong(i, end int, what string) error {
	if end-i > s.g.maxField {
		return &spotError{ErrFieldTooLarge, what}
	}
	return nil
}
