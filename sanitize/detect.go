package sanitize

import (
	"sort"
	"unicode"
)

// Rules, as named in a Finding.
const (
	RuleCard    = "card_number"    // 13 to 19 digits passing the Luhn check, anywhere
	RuleAccount = "account_number" // 9 or more digits in an account-number field
)

// Byte classes of the scanner's text loop. The two lowest are what the
// loop may skip while no number is open.
const (
	cPlain    = iota // ASCII that breaks a number: letters, most punctuation
	cSep             // ASCII separator: space, tab, CR, LF, - . / _
	cDigit           // 0-9
	cLT              // <
	cAmp             // &
	cRBracket        // ], for ]]> in text
	cCtl             // a control character XML forbids
	cHigh            // the first byte of a multi-byte UTF-8 sequence (or not UTF-8)
)

var class = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 0x80:
			t[c] = cHigh
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '-' || c == '.' || c == '/' || c == '_':
			t[c] = cSep
		case c >= '0' && c <= '9':
			t[c] = cDigit
		case c == '<':
			t[c] = cLT
		case c == '&':
			t[c] = cAmp
		case c == ']':
			t[c] = cRBracket
		case c < 0x20:
			t[c] = cCtl
		}
	}
	return t
}()

// digitValue returns the value of r if r is a decimal digit in any script
// (Unicode category Nd). Unicode puts every such digit in a run of ten
// from zero to nine, and the tables keep those runs whole, so the value is
// the distance from the start of the table's range, modulo ten.
func digitValue(r rune) (int, bool) {
	if r < 0x80 {
		if r >= '0' && r <= '9' {
			return int(r - '0'), true
		}
		return 0, false
	}
	if r <= 0xFFFF {
		t := unicode.Nd.R16
		i := sort.Search(len(t), func(i int) bool { return rune(t[i].Hi) >= r })
		if i < len(t) && rune(t[i].Lo) <= r {
			return int(r-rune(t[i].Lo)) % 10, true
		}
		return 0, false
	}
	t := unicode.Nd.R32
	i := sort.Search(len(t), func(i int) bool { return rune(t[i].Hi) >= r })
	if i < len(t) && rune(t[i].Lo) <= r {
		return int(r-rune(t[i].Lo)) % 10, true
	}
	return 0, false
}

// isSeparator reports whether a non-ASCII rune may stand between the
// digit groups of a number; the ASCII ones are in the class table. See the
// package documentation for the set.
func isSeparator(r rune) bool {
	switch {
	case r == 0x85, r == 0xB7, // next line, middle dot
		r >= 0x2010 && r <= 0x2015,            // hyphen .. horizontal bar (en, em dash)
		r == 0x2024, r == 0x2027, r == 0x2212, // one dot leader, hyphenation point, minus
		r == 0x3002, r == 0xFE52, r == 0xFE58, r == 0xFE63, // ideographic and small full stop, small dashes
		r == 0xFF0D, r == 0xFF0E, r == 0xFF0F, r == 0xFF3F: // fullwidth - . / _
		return true
	}
	return unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp, unicode.Cf, unicode.Mn, unicode.Me)
}

// digitRec is one digit of an open number.
type digitRec struct {
	off    int64 // stream offset of its raw form
	size   uint8 // bytes of the raw form: 1 for ASCII, 2-4 for UTF-8, more for &#...;
	val    uint8
	gstart bool // the first digit of a group (after a separator, or after a mask)
}

// Contexts of a finding.
const (
	ctxNone = iota
	ctxElem
	ctxAttr
	ctxComment
	ctxPI
	ctxName   // an element or attribute name, a PI target, an entity's name
	ctxHeader // a header or trailer field of the reply (attr: its name)
)

// ringSize holds the last 19 digits, the most any card window can span.
const ringSize = 32

// detector finds numbers in a stream of characters fed one at a time
// (digit, separator, or anything else) and masks them in the scanner's
// buffer. It holds the last 19 digits of the open number: nothing older
// can still change.
//
// A number is a maximal sequence of digits in which each two consecutive
// digits are separated by nothing or by separators; its groups are its
// runs of digits with no separator. At the end of each group it tries the
// windows of whole groups that end there and hold 13 to 19 digits, longest
// first; the longest that passes the Luhn check is a card number, and all
// but its last four digits are masked. The number then starts again at
// those four, since the masked digits now split it. In a field, a number
// of 9 or more digits is an account number, and all but its last four
// digits are masked as they come.
type detector struct {
	s      *scanner
	isText bool // the text detector, whose context comes from the open elements

	ring    [ringSize]digitRec
	head, n int // ring[head] is the oldest of n digits

	active  bool // a number is open
	inGroup bool // the last thing fed was a digit
	total   int  // digits of the number
	eff     int  // digits since the number started again after a card mask
	card    bool // a card number was found in this number

	// the context of the open number
	field   bool
	account int32
	kind    uint8
	elem    int    // with ctxElem: index in scanner.stack
	attr    []byte // with ctxAttr: the attribute's name

	// the context set for the next number, for the auxiliary detector
	pField   bool
	pAccount int32
	pKind    uint8
	pAttr    []byte
}

func (d *detector) reset() {
	d.active, d.inGroup = false, false
	d.n, d.head = 0, 0
	d.attr, d.pAttr = nil, nil
}

// preset sets the context of the numbers the auxiliary detector finds next.
func (d *detector) preset(kind uint8, field bool, account int32, attr []byte) {
	d.pKind, d.pField, d.pAccount, d.pAttr = kind, field, account, attr
}

func (d *detector) begin() {
	d.active, d.inGroup, d.card = true, false, false
	d.total, d.eff, d.n, d.head = 0, 0, 0, 0
	if !d.isText {
		d.kind, d.field, d.account, d.attr = d.pKind, d.pField, d.pAccount, d.pAttr
		return
	}
	s := d.s
	d.field = s.fieldDepth > 0
	top := s.depth - 1
	if d.field {
		top = s.fieldTop
	}
	d.kind, d.elem, d.account = ctxNone, top, 0
	if top >= 0 {
		d.kind, d.account = ctxElem, s.stack[top].account
	}
}

// digit feeds a digit whose raw form is size bytes at stream offset off.
func (d *detector) digit(v int, off int64, size int) {
	if !d.active {
		d.begin()
	}
	if d.n == 19 {
		d.head = (d.head + 1) & (ringSize - 1)
		d.n--
	}
	r := &d.ring[(d.head+d.n)&(ringSize-1)]
	r.off, r.size, r.val, r.gstart = off, uint8(size), uint8(v), !d.inGroup
	d.n++
	d.inGroup = true
	d.total++
	d.eff++
	if d.field && d.total >= 9 {
		if d.total == 9 {
			for k := 0; k < d.n-4; k++ {
				d.mask(&d.ring[(d.head+k)&(ringSize-1)])
			}
		} else {
			d.mask(&d.ring[(d.head+d.n-5)&(ringSize-1)])
		}
	}
}

// sep feeds a separator.
func (d *detector) sep() {
	if d.active && d.inGroup {
		d.inGroup = false
		if d.eff >= 13 {
			d.groupEnd()
		}
	}
}

// brk feeds anything that ends a number.
func (d *detector) brk() {
	if d.active {
		d.end()
	}
}

func (d *detector) end() {
	if d.inGroup {
		d.groupEnd()
	}
	if d.field && d.total >= 9 && !d.card {
		d.s.found(d, RuleAccount)
	}
	d.active, d.inGroup = false, false
	d.n, d.head = 0, 0
}

// groupEnd tries the card windows that end with the group just ended.
func (d *detector) groupEnd() {
	if d.eff < 13 {
		return
	}
	sum, best := 0, 0
	for k := 1; k <= d.n; k++ {
		r := &d.ring[(d.head+d.n-k)&(ringSize-1)]
		v := int(r.val)
		if k%2 == 0 {
			if v *= 2; v > 9 {
				v -= 9
			}
		}
		sum += v
		if k >= 13 && r.gstart && sum%10 == 0 {
			best = k
		}
	}
	if best == 0 {
		return
	}
	for k := best; k > 4; k-- {
		d.mask(&d.ring[(d.head+d.n-k)&(ringSize-1)])
	}
	d.card = true
	d.s.found(d, RuleCard)
	d.head = (d.head + d.n - 4) & (ringSize - 1)
	d.n, d.eff = 4, 4
	d.ring[d.head].gstart = true
}

// mask replaces every byte of a digit's raw form by 'X'.
func (d *detector) mask(r *digitRec) {
	d.s.mask(r.off, int(r.size))
}

// hold returns the stream offset of the oldest digit that may still be
// masked, or -1.
func (d *detector) hold() int64 {
	if d.active && d.n > 0 {
		return d.ring[d.head].off
	}
	return -1
}
