package sanitize

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// DefaultMaxField is the default of Options.MaxField.
const DefaultMaxField = 64 << 10

// maxMaxField bounds Options.MaxField: each reply in flight holds about
// twice that.
const maxMaxField = 16 << 20

// DefaultMaxDecoded is the default of Options.MaxDecoded.
const DefaultMaxDecoded = 80 << 20

// MaxFindings is how many findings a Report lists; it counts them all.
const MaxFindings = 100

// The fields where an account number is always looked for: accountFields
// inside an <account> element (and as attributes of it), anywhereFields
// anywhere in the document.
var (
	accountFields  = []string{"id", "name"}
	anywhereFields = []string{"account_number", "account_id"}
)

// Options configure a Guard. The zero value is the default guard.
type Options struct {
	// Fields are more element and attribute names in which a run of 9 or
	// more digits is an account number, anywhere in the document, matched
	// against the local name (after any prefix) without regard to case.
	// They add to the fields that always count: id and name inside an
	// <account> element, account_number and account_id anywhere.
	Fields []string

	// MaxField bounds, in bytes, each text run, tag (with its
	// attributes), comment and processing instruction, and the tail after
	// the root element; a longer one is refused (ErrFieldTooLarge). Each
	// reply in flight holds at most about twice this. Default: 64 KiB
	// (DefaultMaxField); at most 16 MiB; negative is an error.
	MaxField int

	// AllowMalformed lets through replies that are not well-formed XML
	// (ErrMalformed), refer to undeclared entities (ErrEntity) or have
	// names that are not lower-case ASCII (ErrUpperCase), for an FI that
	// sends such replies: the guard recovers and goes on masking what it
	// finds, and Report.Malformed says what was let through. Every other
	// condition is still refused. Default: false, refuse.
	AllowMalformed bool

	// MaxDecoded bounds, in bytes, the decoded size of a Gzip reply; a
	// larger one is refused (ErrDecodedTooLarge) when its decoded bytes
	// pass the bound, so that a small reply that decodes to gigabytes (a
	// gzip bomb) costs no more than a reply of this size. Default: 80 MiB
	// (DefaultMaxDecoded); negative is an error.
	MaxDecoded int64
}

// Guard finds and masks card and account numbers in MDX replies. Make one
// with New; it is safe for concurrent use, and reuses its buffers from one
// reply to the next.
type Guard struct {
	maxField int
	maxDec   int64
	allow    bool
	slack    int      // the buffer's room beyond twice maxField; tests make it small
	minRead  int      // the least room a read is given
	account  []string // lower-case names of fields inside <account>
	anywhere []string // lower-case names of fields anywhere
	byLen    [65][]fieldName
	first    [65]uint32 // by length: a bit for each field's first letter (and account's)
	pool     sync.Pool  // of *scanner
	gzPool   sync.Pool  // of *gzipState
}

// New checks opts and returns a Guard.
func New(opts Options) (*Guard, error) {
	g := &Guard{maxField: opts.MaxField, maxDec: opts.MaxDecoded, allow: opts.AllowMalformed, slack: slack, minRead: minRead}
	switch {
	case g.maxDec == 0:
		g.maxDec = DefaultMaxDecoded
	case g.maxDec < 0:
		return nil, errors.New("sanitize: MaxDecoded must be positive")
	}
	switch {
	case g.maxField == 0:
		g.maxField = DefaultMaxField
	case g.maxField < 0:
		return nil, errors.New("sanitize: MaxField must be positive")
	case g.maxField > maxMaxField:
		return nil, fmt.Errorf("sanitize: MaxField must be at most %d", maxMaxField)
	}
	g.account = append(g.account, accountFields...)
	g.anywhere = append(g.anywhere, anywhereFields...)
	for _, f := range opts.Fields {
		if !isFieldName(f) {
			return nil, fmt.Errorf("sanitize: field %q is not an XML local name of ASCII letters, digits, '_', '-' and '.'", f)
		}
		g.anywhere = append(g.anywhere, strings.ToLower(f))
	}
	for _, f := range g.account {
		g.byLen[len(f)] = append(g.byLen[len(f)], fieldName{f, true})
	}
	for _, f := range g.anywhere {
		g.byLen[len(f)] = append(g.byLen[len(f)], fieldName{f, false})
	}
	for _, f := range append(append([]string{"account"}, g.account...), g.anywhere...) {
		g.first[len(f)] |= 1 << (f[0] & 31)
	}
	return g, nil
}

// fieldName is a field, by the length of its name.
type fieldName struct {
	name      string
	inAccount bool // counts only inside <account>
}

func isFieldName(f string) bool {
	if f == "" || len(f) > 64 {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i] | 0x20
		if !(c >= 'a' && c <= 'z' || f[i] == '_' || i > 0 && (f[i] >= '0' && f[i] <= '9' || f[i] == '-' || f[i] == '.')) {
			return false
		}
	}
	return true
}

// Finding is one number found. It says where and by which rule, never the
// number.
type Finding struct {
	// Account is the 1-based position of the innermost <account> element
	// around the number, among the reply's <account> elements; 0 if none.
	Account int
	// Field is where the number was: the local name of the element whose
	// text held it (for a field, the outermost field element), "@" and
	// the attribute's local name, "#comment" or "#pi"; "-" for a name
	// with a digit in it or longer than 32 bytes, which is never logged.
	Field string
	// Rule is RuleCard or RuleAccount.
	Rule string
}

// Report says what a run found.
type Report struct {
	// Findings lists the first MaxFindings numbers found, in document
	// order.
	Findings []Finding
	// Cards and Accounts count every number found, by rule.
	Cards, Accounts int
	// Malformed is, with Options.AllowMalformed, the first condition that
	// was let through (matching ErrMalformed, ErrEntity or
	// ErrUpperCase); nil if none.
	Malformed error
}

// Found returns how many numbers were found.
func (r Report) Found() int { return r.Cards + r.Accounts }

// Coding is a reply's content coding, as CheckContentEncoding finds it.
type Coding uint8

// Codings.
const (
	Identity Coding = iota
	Gzip
)

// Mask copies the reply src to dst, masking every number it finds, and
// reports them. It streams: a reply's bytes leave as soon as no later byte
// can change them, in batches, and it holds at most about twice
// Options.MaxField plus 64 KiB whatever the reply's size. A masked digit's
// raw bytes each become 'X', so the output has the input's length. With
// Gzip, src is decoded and the output encoded again (gzip.BestSpeed).
//
// On an error, part of the output may have been written, with every mask
// found so far in place; the rest is not written, and the end of the root
// element is never among what was written, so the output is never a
// complete document (nor, with Gzip, a complete gzip stream). A caller
// that has sent any of it must abort the transfer (in an http.Handler,
// panic(http.ErrAbortHandler)) rather than end it normally.
func (g *Guard) Mask(dst io.Writer, src io.Reader, c Coding) (Report, error) {
	return g.run(dst, src, c, true, false)
}

// Inspect reads the reply src to its end and reports the numbers in it
// and the first condition under which it must be refused, changing
// nothing and writing nothing. Block mode runs it on the reply held whole;
// report mode on a copy of the reply as it passes. Memory is bounded as
// with Mask.
func (g *Guard) Inspect(src io.Reader, c Coding) (Report, error) {
	return g.run(nil, src, c, false, false)
}

// MaskText is Mask for a reply that is not XML: its body is read as text,
// every byte of it, with the rules of element text outside fields (card
// numbers only). Nothing is parsed as markup, so no reply is refused for
// its form; a character reference (&#52;) and a percent-encoded ASCII
// byte (%34) count as the character they stand for, and an entity
// reference other than XML's five, a control character, a byte that is
// not UTF-8 and U+FEFF count as separators. A number written across
// markup ("4111<b>1111...") is not one number: tags break it as any other
// letter does. Memory is bounded as with Mask; a number held open by
// more separators than the buffer holds is ErrFieldTooLarge.
func (g *Guard) MaskText(dst io.Writer, src io.Reader, c Coding) (Report, error) {
	return g.run(dst, src, c, true, true)
}

// InspectText is Inspect for a reply read as text, as MaskText reads it.
func (g *Guard) InspectText(src io.Reader, c Coding) (Report, error) {
	return g.run(nil, src, c, false, true)
}

func (g *Guard) run(dst io.Writer, src io.Reader, c Coding, masking, plain bool) (Report, error) {
	var zw *gzip.Writer
	if c == Gzip {
		z, _ := g.gzPool.Get().(*gzipState)
		if z == nil {
			z = &gzipState{br: bufio.NewReader(nil)}
			z.zw, _ = gzip.NewWriterLevel(nil, gzip.BestSpeed)
		}
		defer g.gzPool.Put(z)
		defer z.release()
		z.rr = readRecorder{r: src}
		z.n, z.max = 0, g.maxDec
		z.br.Reset(&z.rr)
		if err := z.zr.Reset(z.br); err != nil {
			return Report{}, z.decodeError(err)
		}
		src = z
		if masking {
			z.zw.Reset(dst)
			dst, zw = z.zw, z.zw
		}
	}
	s, _ := g.pool.Get().(*scanner)
	if s == nil {
		s = newScanner(g)
	}
	defer g.pool.Put(s)
	s.reset(src, dst, masking)
	s.plain = plain
	err := s.run()
	if err == nil && zw != nil {
		if cerr := zw.Close(); cerr != nil {
			err = &causeError{ErrWrite, cerr}
		}
	}
	r := Report{Findings: s.findings, Cards: s.cards, Accounts: s.accts, Malformed: s.allowed}
	s.release()
	return r, err
}

// readRecorder remembers the error of the reader under a gzip decoder, to
// tell a failed read from a corrupt stream.
type readRecorder struct {
	r   io.Reader
	err error
}

func (r *readRecorder) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// gzipState is what a gzip-encoded reply needs besides the scanner,
// pooled as one: the decoder reads through a bufio.Reader of its own
// (gzip.Reader would otherwise make one per reply), which reads through a
// readRecorder.
type gzipState struct {
	zr  gzip.Reader
	br  *bufio.Reader
	rr  readRecorder
	zw  *gzip.Writer
	n   int64 // decoded bytes read so far
	max int64
}

// Read reads the decoded reply, refusing it once it grows past z.max.
func (z *gzipState) Read(b []byte) (int, error) {
	if rest := z.max - z.n + 1; int64(len(b)) > rest {
		b = b[:rest] // one byte past the bound is enough to know
	}
	n, err := z.zr.Read(b)
	if z.n += int64(n); z.n > z.max {
		return 0, &spotError{ErrDecodedTooLarge, "the decoded body exceeds the bound"}
	}
	if err != nil && err != io.EOF {
		err = z.decodeError(err)
	}
	return n, err
}

func (z *gzipState) decodeError(err error) error {
	if z.rr.err != nil {
		return &causeError{ErrRead, z.rr.err}
	}
	return &spotError{ErrContentEncoding, "the body is not valid gzip"}
}

// release drops the reply's reader and writer.
func (z *gzipState) release() {
	z.rr = readRecorder{}
	z.br.Reset(nil)
	z.zw.Reset(io.Discard)
}
