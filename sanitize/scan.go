package sanitize

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"unicode/utf8"
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

// refByte: the bytes a reference's name or number may hold.
var refByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '#' || c == '_' || c == '-' || c == '.' || c == ':'
	}
	return t
}()

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

// mask replaces size bytes at stream offset off by 'X'.
func (s *scanner) mask(off int64, size int) {
	if !s.masking {
		return
	}
	i := int(off - s.base)
	for k := i; k < i+size; k++ {
		s.buf[k] = 'X'
	}
}

// found records a number.
func (s *scanner) found(d *detector, rule string) {
	if rule == RuleCard {
		s.cards++
	} else {
		s.accts++
	}
	if len(s.findings) >= MaxFindings {
		return
	}
	switch len(s.findings) {
	case 0:
		s.findings = make([]Finding, 0, 16)
	case 16:
		s.findings = append(make([]Finding, 0, MaxFindings), s.findings...)
	}
	s.findings = append(s.findings, Finding{Account: int(d.account), Field: s.where(d), Rule: rule})
}

func (s *scanner) where(d *detector) string {
	switch d.kind {
	case ctxElem:
		e := &s.stack[d.elem]
		return s.name("", s.names[e.local:e.name1])
	case ctxAttr:
		return s.name("@", d.attr)
	case ctxComment:
		return "#comment"
	case ctxPI:
		return "#pi"
	case ctxName:
		return "#name"
	case ctxHeader:
		return s.name("", d.attr)
	}
	return ""
}

// name returns prefix+b as a string, or "-" if b might say more than a
// name: longer than 32 bytes, or with a digit or a non-ASCII byte in it.
func (s *scanner) name(prefix string, b []byte) string {
	if len(b) > 32 {
		return "-"
	}
	for _, c := range b {
		if c >= '0' && c <= '9' || c >= 0x80 {
			return "-"
		}
	}
	var a [40]byte
	k := append(append(a[:0], prefix...), b...)
	if v, ok := s.intern[string(k)]; ok {
		return v
	}
	v := string(k)
	if len(s.intern) < maxNames {
		s.intern[v] = v
	}
	return v
}

func (s *scanner) account() int32 {
	if s.depth == 0 {
		return 0
	}
	return s.stack[s.depth-1].account
}

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

// tagEnd returns the index of the > that ends a tag whose attributes start
// at b[k], minding quotes; at a < outside quotes it stops and says so; -1
// if the buffer ends first.
func tagEnd(b []byte, k int) (int, bool) {
	var q byte
	for ; k < len(b); k++ {
		c := b[k]
		if q != 0 {
			if c == q {
				q = 0
			}
			continue
		}
		switch c {
		case '"', '\'':
			q = c
		case '>':
			return k, true
		case '<':
			return k, false
		}
	}
	return -1, false
}

// fastStart handles the commonest start tag, <name> with a lower-case
// ASCII name and no attributes, inside the root element and outside
// fields, and reports whether it did; startTag does the rest. It is
// startTag cut down to that case, small enough for the compiler to keep
// its values in registers (which roughly halves the cost of a tag).
func (s *scanner) fastStart(b []byte, i int) bool {
	ns := i + 1
	ne := ns
	for ne < len(b) && plainName[b[ne]] {
		ne++
	}
	n := ne - ns
	n0 := s.nameLen
	// names has room for maxField bytes and 8 more; the names of the open
	// elements may take maxField, and a tag maxField too: startTag tells
	// the two bounds apart
	if ne == len(b) || b[ne] != '>' || nameClass[b[ns]] != nStart || s.depth == 0 || s.depth == maxDepth ||
		s.fieldDepth > 0 || int(n0)+n+2 > s.g.maxField || n >= 13 && digitCount(b[ns:ne]) >= 13 {
		return false
	}
	var isAccount, isField bool
	if local := b[ns:ne]; s.g.maybe(local) {
		isAccount = eqFold(local, "account")
		isField = s.g.isField(local, s.accountDepth > 0)
	}
	if s.text.active {
		s.text.end()
	}
	key := nameKey(b, ns, n)
	if n <= 8 {
		binary.LittleEndian.PutUint64(s.names[n0:], key)
	} else {
		copy(s.names[n0:], b[ns:ne])
	}
	s.nameLen += int32(n)
	e := &s.stack[s.depth]
	e.key, e.name0, e.name1, e.local = key, n0, s.nameLen, n0
	e.account, e.infield, e.isAccount = s.stack[s.depth-1].account, isField, isAccount
	if isAccount {
		s.accounts++
		s.accountDepth++
		e.account = s.accounts
	}
	if isField {
		s.fieldTop = s.depth
		s.fieldDepth++
	}
	s.depth++
	s.pos = ne + 1
	s.runStart = s.base + int64(ne+1)
	return true
}

// startTag handles <name ...> and <name .../> at b[i].
func (s *scanner) startTag(b []byte, i int) error {
	ns := i + 1
	if !isNameStart(b[ns]) {
		return s.literal("a < that starts no tag")
	}
	ne, plain, ls := ns, true, ns
	for ne < len(b) && plainName[b[ne]] {
		ne++
	}
	if ne < len(b) && nameClass[b[ne]] != nNone {
		ne, plain, ls = scanNameColon(b, ns)
	}
	if ne == len(b) {
		return s.more(i, "a tag")
	}
	gt, empty := -1, false
	switch b[ne] {
	case '>':
		gt = ne
	case '/':
		if ne+1 == len(b) {
			return s.more(i, "a tag")
		}
		if b[ne+1] != '>' {
			return s.literal("a malformed tag")
		}
		gt, empty = ne+1, true
	case ' ', '\t', '\r', '\n':
		e, closed := tagEnd(b, ne)
		if e < 0 {
			return s.more(i, "a tag")
		}
		if !closed {
			return s.literal("a tag that is not closed")
		}
		gt = e
	default:
		return s.literal("a malformed tag")
	}
	end := gt + 1
	if err := s.tooLong(i, end, "a tag"); err != nil {
		return err
	}
	name := b[ns:ne]
	if !plain {
		if err := s.checkName(name); err != nil {
			return err
		}
	}
	if err := s.nameNumbers(b, ns, ne, s.fieldDepth > 0, s.account(), "an element name"); err != nil {
		return err
	}
	// A tag ends the text run, unless it is inside a field, whose text
	// runs on through markup; there it stands between digits as a
	// separator would.
	wasInField := s.fieldDepth > 0
	if wasInField {
		s.text.sep()
	} else {
		s.text.brk()
	}
	root := s.depth == 0
	if root {
		if s.roots > 0 {
			if err := s.bad(ErrMalformed, "a second root element"); err != nil {
				return err
			}
		}
		s.roots++
		s.rootEnd = -1
	}
	local := b[ls:ne]
	var isAccount, isField bool
	if s.g.maybe(local) {
		isAccount = eqFold(local, "account")
		isField = s.g.isField(local, s.accountDepth > 0)
	}
	inAccount := s.accountDepth > 0 || isAccount
	infield := wasInField || isField
	account := s.account()
	if isAccount {
		s.accounts++
		account = s.accounts
	}
	if gt > ne && !empty {
		var err error
		if empty, err = s.attributes(b, ne, gt, infield, inAccount, account); err != nil {
			return err
		}
	}
	if !empty {
		if s.depth == maxDepth {
			return &spotError{ErrFieldTooLarge, "elements nested too deep"}
		}
		if int(s.nameLen)+len(name) > s.g.maxField {
			return &spotError{ErrFieldTooLarge, "the names of the open elements"}
		}
		n0 := s.nameLen
		key := nameKey(b, ns, len(name))
		switch {
		case int(n0)+max(len(name), 8) > len(s.names):
			s.names = append(s.names[:n0], name...)
			s.names = s.names[:cap(s.names)]
		case len(name) <= 8:
			binary.LittleEndian.PutUint64(s.names[n0:], key)
		default:
			copy(s.names[n0:], name)
		}
		s.nameLen += int32(len(name))
		if infield {
			if s.fieldDepth == 0 {
				s.fieldTop = s.depth
			}
			s.fieldDepth++
		}
		if isAccount {
			s.accountDepth++
		}
		// field by field: a composite literal here is built on the stack
		// and copied with wide loads that stall on the narrow stores
		e := &s.stack[s.depth]
		e.key, e.name0, e.name1, e.local = key, n0, s.nameLen, s.nameLen-int32(len(local))
		e.account, e.infield, e.isAccount = account, infield, isAccount
		s.depth++
	}
	if root && empty {
		s.rootEnd = s.base + int64(i)
	}
	s.pos = end
	if wasInField {
		return s.checkRun()
	}
	s.runStart = s.base + int64(end)
	return nil
}

// attributes handles the attributes of a tag, from the white space at
// b[k] to the > at b[gt]. It reports whether the tag ends with />.
func (s *scanner) attributes(b []byte, k, gt int, infield, inAccount bool, account int32) (bool, error) {
	b = b[:gt]
	for {
		ws := k
		for k < gt && isSpace(b[k]) {
			k++
		}
		if k == gt {
			return false, nil
		}
		if b[k] == '/' {
			if k+1 == gt {
				return true, nil
			}
			if err := s.bad(ErrMalformed, "a / inside a tag"); err != nil {
				return false, err
			}
			k++
			continue
		}
		if k == ws {
			if err := s.bad(ErrMalformed, "attributes not apart"); err != nil {
				return false, err
			}
		}
		if !isNameStart(b[k]) {
			if err := s.bad(ErrMalformed, "an attribute without a name"); err != nil {
				return false, err
			}
			k++
			continue
		}
		ns := k
		ne, plain := scanName(b, k)
		name := b[ns:ne]
		if !plain {
			if err := s.checkName(name); err != nil {
				return false, err
			}
		}
		if err := s.nameNumbers(b, ns, ne, infield, account, "an attribute name"); err != nil {
			return false, err
		}
		for k = ne; k < gt && isSpace(b[k]); k++ {
		}
		if k == gt || b[k] != '=' {
			if err := s.bad(ErrMalformed, "an attribute without a value"); err != nil {
				return false, err
			}
			continue
		}
		for k++; k < gt && isSpace(b[k]); k++ {
		}
		var vs, ve int
		if k < gt && (b[k] == '"' || b[k] == '\'') {
			vs = k + 1
			if ve = bytes.IndexByte(b[vs:], b[k]); ve < 0 {
				if err := s.bad(ErrMalformed, "an attribute value not closed"); err != nil {
					return false, err
				}
				ve = gt
				k = gt
			} else {
				ve += vs
				k = ve + 1
			}
		} else {
			if err := s.bad(ErrMalformed, "an attribute value without quotes"); err != nil {
				return false, err
			}
			vs = k
			for k < gt && !isSpace(b[k]) && !(b[k] == '/' && k+1 == gt) {
				k++
			}
			ve = k
		}
		local := localName(name)
		s.aux.preset(ctxAttr, infield || s.g.isField(local, inAccount), account, local)
		if err := s.span(&s.aux, b, vs, ve, true); err != nil {
			return false, err
		}
		s.aux.brk()
	}
}

// endTag handles </name> at b[i].
func (s *scanner) endTag(b []byte, i int) error {
	ns := i + 2
	if top := s.depth - 1; top >= 0 {
		// the common case: </name> closing the innermost element
		e := &s.stack[top]
		n := int(e.name1 - e.name0)
		if ne := ns + n; ne < len(b) && b[ne] == '>' && nameKey(b, ns, n) == e.key &&
			(n <= 8 || string(b[ns+8:ne]) == string(s.names[e.name0+8:e.name1])) {
			return s.closeTop(i, ne+1)
		}
	}
	if ns >= len(b) {
		return s.more(i, "an end tag")
	}
	if !isNameStart(b[ns]) {
		return s.literal("a </ that starts no end tag")
	}
	ne, plain := scanName(b, ns)
	k := ne
	for k < len(b) && isSpace(b[k]) {
		k++
	}
	if k == len(b) {
		return s.more(i, "an end tag")
	}
	if b[k] != '>' {
		return s.literal("a malformed end tag")
	}
	end := k + 1
	if err := s.tooLong(i, end, "an end tag"); err != nil {
		return err
	}
	name := b[ns:ne]
	if !plain {
		if err := s.checkName(name); err != nil {
			return err
		}
	}
	if err := s.nameNumbers(b, ns, ne, s.fieldDepth > 0, s.account(), "an end tag's name"); err != nil {
		return err
	}
	pop := 0
	if top := s.depth - 1; top >= 0 && bytes.Equal(name, s.names[s.stack[top].name0:s.stack[top].name1]) {
		pop = 1
	} else {
		if err := s.bad(ErrMalformed, "an end tag that matches no open element"); err != nil {
			return err
		}
		for x := top; x >= 0; x-- {
			if bytes.Equal(name, s.names[s.stack[x].name0:s.stack[x].name1]) {
				pop = s.depth - x
				break
			}
		}
	}
	remain := s.fieldDepth
	for x := s.depth - pop; x < s.depth; x++ {
		if s.stack[x].infield {
			remain--
		}
	}
	if s.fieldDepth == 0 || remain == 0 {
		s.text.brk()
	} else {
		s.text.sep()
	}
	for ; pop > 0; pop-- {
		s.depth--
		e := s.stack[s.depth]
		s.nameLen = e.name0
		if e.infield {
			s.fieldDepth--
		}
		if e.isAccount {
			s.accountDepth--
		}
		if s.depth == 0 {
			s.rootEnd = s.base + int64(i)
		}
	}
	s.pos = end
	if s.fieldDepth > 0 {
		return s.checkRun()
	}
	s.runStart = s.base + int64(end)
	return nil
}

// closeTop closes the innermost element, whose end tag is b[i:end] and
// holds the name it was opened with.
func (s *scanner) closeTop(i, end int) error {
	if err := s.tooLong(i, end, "an end tag"); err != nil {
		return err
	}
	top := s.depth - 1
	e := &s.stack[top]
	if e.infield && s.fieldDepth > 1 {
		s.text.sep()
	} else {
		s.text.brk()
	}
	if e.infield {
		s.fieldDepth--
	}
	if e.isAccount {
		s.accountDepth--
	}
	s.nameLen = e.name0
	s.depth = top
	if top == 0 {
		s.rootEnd = s.base + int64(i)
	}
	s.pos = end
	if s.fieldDepth > 0 {
		return s.checkRun()
	}
	s.runStart = s.base + int64(end)
	return nil
}

// pi handles a processing instruction, or the XML declaration, at b[i].
func (s *scanner) pi(b []byte, i int) error {
	ts := i + 2
	if ts >= len(b) {
		return s.more(i, "a processing instruction")
	}
	if !isNameStart(b[ts]) {
		return s.literal("a <? without a target")
	}
	te, _ := scanName(b, ts)
	x := bytes.Index(b[te:], []byte("?>"))
	if x < 0 {
		return s.more(i, "a processing instruction")
	}
	ce := te + x
	end := ce + 2
	if err := s.tooLong(i, end, "a processing instruction"); err != nil {
		return err
	}
	target := b[ts:te]
	if !utf8.Valid(target) {
		return &spotError{ErrInvalidUTF8, "in a processing instruction"}
	}
	if err := s.nameNumbers(b, ts, te, s.fieldDepth > 0, s.account(), "a processing instruction's target"); err != nil {
		return err
	}
	if bytes.IndexByte(target, ':') >= 0 {
		if err := s.bad(ErrMalformed, "a colon in a processing instruction's target"); err != nil {
			return err
		}
	}
	if eqFold(target, "xml") {
		if err := s.decl(b, i, te, ce); err != nil {
			return err
		}
	} else if te < ce && !isSpace(b[te]) {
		if err := s.bad(ErrMalformed, "a processing instruction's target"); err != nil {
			return err
		}
	}
	s.aux.preset(ctxPI, false, s.account(), nil)
	if err := s.span(&s.aux, b, te, ce, false); err != nil {
		return err
	}
	s.aux.brk()
	s.pos = end
	return s.checkRun()
}

// decl checks the XML declaration <?xml ...?> at b[i]; its pseudo-
// attributes are b[te:ce].
func (s *scanner) decl(b []byte, i, te, ce int) error {
	content := b[te:ce]
	for k := 0; ; {
		x := bytes.Index(content[k:], []byte("encoding"))
		if x < 0 {
			break
		}
		k += x + len("encoding")
		if v, ok := pseudoValue(content[k:]); ok && !eqFold(v, "utf-8") {
			return &spotError{ErrEncoding, "in the XML declaration"}
		}
	}
	if s.base+int64(i) != 0 {
		return s.bad(ErrMalformed, "an XML declaration not at the start")
	}
	if string(b[i+2:te]) != "xml" || !validDecl(content) {
		return s.bad(ErrMalformed, "the XML declaration")
	}
	return nil
}

// pseudoValue returns the quoted value after `S? = S?` at the start of b.
func pseudoValue(b []byte) ([]byte, bool) {
	k := 0
	for k < len(b) && isSpace(b[k]) {
		k++
	}
	if k == len(b) || b[k] != '=' {
		return nil, false
	}
	for k++; k < len(b) && isSpace(b[k]); k++ {
	}
	if k == len(b) || b[k] != '"' && b[k] != '\'' {
		return nil, false
	}
	q := b[k]
	e := bytes.IndexByte(b[k+1:], q)
	if e < 0 {
		return b[k+1:], true
	}
	return b[k+1 : k+1+e], true
}

// validDecl checks XML 1.0's grammar of the declaration's pseudo-
// attributes: version, then optionally encoding, then optionally
// standalone. The version must be 1.0: XML 1.1 has other line ends and
// characters, and MDX replies are 1.0.
func validDecl(b []byte) bool {
	k := 0
	attr := func(name string, ok func([]byte) bool) int {
		j := k
		for j < len(b) && isSpace(b[j]) {
			j++
		}
		if j == k || !bytes.HasPrefix(b[j:], []byte(name)) {
			return 0
		}
		j += len(name)
		for j < len(b) && isSpace(b[j]) {
			j++
		}
		if j == len(b) || b[j] != '=' {
			return -1
		}
		for j++; j < len(b) && isSpace(b[j]); j++ {
		}
		if j == len(b) || b[j] != '"' && b[j] != '\'' {
			return -1
		}
		e := bytes.IndexByte(b[j+1:], b[j])
		if e < 0 || !ok(b[j+1:j+1+e]) {
			return -1
		}
		return j + 1 + e + 1
	}
	version := func(v []byte) bool { return string(v) == "1.0" }
	encName := func(v []byte) bool {
		if len(v) == 0 || !(v[0]|0x20 >= 'a' && v[0]|0x20 <= 'z') {
			return false
		}
		for _, c := range v {
			if !(c|0x20 >= 'a' && c|0x20 <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
		return true
	}
	standalone := func(v []byte) bool { return string(v) == "yes" || string(v) == "no" }
	n := attr("version", version)
	if n <= 0 {
		return false
	}
	k = n
	for _, p := range []struct {
		name string
		ok   func([]byte) bool
	}{{"encoding", encName}, {"standalone", standalone}} {
		switch n := attr(p.name, p.ok); {
		case n < 0:
			return false
		case n > 0:
			k = n
		}
	}
	for k < len(b) && isSpace(b[k]) {
		k++
	}
	return k == len(b)
}

// bang handles <!-- -->, <![CDATA[ ]]> and declarations at b[i].
func (s *scanner) bang(b []byte, i int) error {
	rest := b[i:]
	if len(rest) < 3 {
		return s.more(i, "markup")
	}
	switch c := rest[2]; {
	case c == '-':
		if len(rest) < 4 {
			return s.more(i, "a comment")
		}
		if rest[3] == '-' {
			return s.comment(b, i)
		}
	case c == '[':
		if len(rest) < 9 && bytes.HasPrefix([]byte("<![CDATA["), rest) {
			return s.more(i, "a CDATA section")
		}
		if bytes.HasPrefix(rest, []byte("<![CDATA[")) {
			return s.cdata(b, i)
		}
	case c|0x20 >= 'a' && c|0x20 <= 'z':
		return &spotError{ErrDoctype, "a markup declaration"}
	}
	return s.literal("a <! that starts nothing")
}

func (s *scanner) comment(b []byte, i int) error {
	cs := i + 4
	x := bytes.Index(b[cs:], []byte("-->"))
	if x < 0 {
		return s.more(i, "a comment")
	}
	ce := cs + x
	end := ce + 3
	if err := s.tooLong(i, end, "a comment"); err != nil {
		return err
	}
	if c := b[cs:ce]; bytes.Contains(c, []byte("--")) || len(c) > 0 && c[len(c)-1] == '-' {
		if err := s.bad(ErrMalformed, "-- in a comment"); err != nil {
			return err
		}
	}
	s.aux.preset(ctxComment, false, s.account(), nil)
	if err := s.span(&s.aux, b, cs, ce, false); err != nil {
		return err
	}
	s.aux.brk()
	s.pos = end
	return s.checkRun()
}

// cdata handles a CDATA section: part of the text run around it.
func (s *scanner) cdata(b []byte, i int) error {
	cs := i + 9
	x := bytes.Index(b[cs:], []byte("]]>"))
	if x < 0 {
		return s.more(i, "a CDATA section")
	}
	ce := cs + x
	end := ce + 3
	if err := s.tooLong(i, end, "a CDATA section"); err != nil {
		return err
	}
	if s.depth == 0 {
		if err := s.bad(ErrMalformed, "CDATA outside the root element"); err != nil {
			return err
		}
	}
	if err := s.span(&s.text, b, cs, ce, false); err != nil {
		return err
	}
	s.pos = end
	return s.checkRun()
}

// digitCount counts the ASCII digits of b.
func digitCount(b []byte) int {
	n := 0
	for _, c := range b {
		if c >= '0' && c <= '9' {
			n++
		}
	}
	return n
}
