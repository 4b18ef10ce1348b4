package sanitize

// The encoding/xml implementation this package used before its own
// scanner, kept unexported and only for tests: BenchmarkProcess1MiB runs it
// beside the scanner so that the two are measured in the same run. It
// inspects only the id and name children of <account> elements, and it is
// not a guard (it fails open); do not use it for anything else.

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// refFinding is one number found. It names where and which rule, never the
// number.
type refFinding struct {
	Account int    // 1-based position of the <account> element in the response
	Field   string // the field's element name, e.g. "id"
	Rule    string // refRuleCard or refRuleAccount
}

// refOptions configure a refProcess run.
type refOptions struct {
	// Fields are the <account> child elements inspected. Default: id, name.
	Fields []string
	// Mask replaces all but the last four digits of each number found with
	// MaskChar; without it, the stream passes unchanged and the findings
	// are only reported.
	Mask bool
	// MaskChar replaces masked digits. Default: 'X'.
	MaskChar byte
	// MaxField bounds the bytes of one inspected field; a larger field is
	// passed on uninspected and reported as errRefFieldTooLarge. Default: 64 KiB.
	MaxField int
}

// Errors of refProcess. With either, everything read was still written out.
var (
	errRefMalformed     = errors.New("sanitize: not well-formed XML; the rest was passed on uninspected")
	errRefFieldTooLarge = errors.New("sanitize: an inspected field exceeded the size limit and was passed on uninspected")
)

// refProcess copies src to dst, inspecting the configured fields of every
// <account> element and, with opts.Mask, masking the numbers it finds. It
// returns the findings. On malformed XML it passes the input through
// unchanged and returns errRefMalformed (wrapped): masks already made are
// undone, unless more than 32 KiB had been written since (the stream has
// gone), in which case those stay.
func refProcess(dst io.Writer, src io.Reader, opts refOptions) ([]refFinding, error) {
	p, err := refRun(dst, src, opts)
	return p.findings, err
}

func refRun(dst io.Writer, src io.Reader, opts refOptions) (*refProcessor, error) {
	if len(opts.Fields) == 0 {
		opts.Fields = []string{"id", "name"}
	}
	if opts.MaskChar == 0 {
		opts.MaskChar = 'X'
	}
	if opts.MaxField <= 0 {
		opts.MaxField = 64 << 10
	}
	p := &refProcessor{dst: dst, opts: opts}
	p.rec = &refRecorder{r: src, p: p}
	dec := xml.NewDecoder(p.rec)
	dec.Strict = true
	dec.CharsetReader = func(label string, input io.Reader) (io.Reader, error) {
		return nil, fmt.Errorf("charset %q", label) // MDX is UTF-8; anything else passes uninspected
	}
	err := p.run(dec)
	if err != nil && !errors.Is(err, io.EOF) {
		if !errors.Is(err, errRefWrite) {
			p.unmask()
		}
		if werr := p.flushAll(src); werr != nil {
			return p, werr
		}
		if errors.Is(err, errRefWrite) || errors.Is(err, errRefFieldTooLarge) {
			return p, err
		}
		return p, fmt.Errorf("%w (%v)", errRefMalformed, err)
	}
	if p.elements == 0 && p.stray {
		err = errors.New("no XML element")
	} else {
		err = nil
	}
	if ferr := p.flush(len(p.raw)); ferr != nil {
		return p, ferr
	}
	if err != nil {
		return p, fmt.Errorf("%w (%v)", errRefMalformed, err)
	}
	return p, nil
}

// unmask restores the bytes of masks not yet written.
func (p *refProcessor) unmask() {
	for _, m := range p.masks {
		if i := p.rel(m.off); i >= 0 && i < len(p.raw) {
			p.raw[i] = m.orig
		}
	}
	p.masks = p.masks[:0]
}

var errRefWrite = errors.New("sanitize: write failed")

// refFlushBatch is how many parsed bytes are held before they are written.
const refFlushBatch = 32 << 10

// refRecorder keeps every byte the decoder reads, from base on.
type refRecorder struct {
	r io.Reader
	p *refProcessor
}

func (rc *refRecorder) Read(b []byte) (int, error) {
	n, err := rc.r.Read(b)
	rc.p.raw = append(rc.p.raw, b[:n]...)
	rc.p.maxHeld = max(rc.p.maxHeld, len(rc.p.raw))
	return n, err
}

type refProcessor struct {
	dst      io.Writer
	opts     refOptions
	rec      *refRecorder
	raw      []byte // bytes read but not yet written, from stream offset base
	base     int64
	findings []refFinding
	accounts int
	elements int  // elements seen
	stray    bool // text outside any element: with no element, not XML
	werr     error
	maxHeld  int // the most bytes held at once, for tests
	masks    []refMaskRec
}

// refMaskRec remembers the bytes a mask replaced, so that a mask not yet
// written can be undone if the document turns out malformed.
type refMaskRec struct {
	off  int64 // stream offset
	orig byte
}

// flush writes raw up to stream offset upTo.
func (p *refProcessor) flush(upTo int) error {
	if p.werr != nil {
		return p.werr
	}
	if upTo > len(p.raw) {
		upTo = len(p.raw)
	}
	if upTo <= 0 {
		return nil
	}
	if _, err := p.dst.Write(p.raw[:upTo]); err != nil {
		p.werr = fmt.Errorf("%w: %v", errRefWrite, err)
		return p.werr
	}
	p.base += int64(upTo)
	n := copy(p.raw, p.raw[upTo:])
	p.raw = p.raw[:n]
	p.masks = p.masks[:0] // written: no longer undoable
	return nil
}

// flushAll writes everything held, then the rest of src, unchanged.
func (p *refProcessor) flushAll(src io.Reader) error {
	if err := p.flush(len(p.raw)); err != nil {
		return err
	}
	if _, err := io.Copy(p.dst, src); err != nil {
		return fmt.Errorf("%w: %v", errRefWrite, err)
	}
	return nil
}

// rel turns a stream offset into an index of raw.
func (p *refProcessor) rel(off int64) int { return int(off - p.base) }

func (p *refProcessor) isField(name string) bool {
	for _, f := range p.opts.Fields {
		if f == name {
			return true
		}
	}
	return false
}

// refPiece is one stretch of a field's text: raw bytes and whether CDATA.
type refPiece struct {
	start, end int64 // stream offsets of the raw token
	cdata      bool
}

func (p *refProcessor) run(dec *xml.Decoder) error {
	var open []string // names of the open elements, to check that tags match
	depth := 0
	accountDepth := -1 // depth of the open <account>, or -1
	field := ""        // the open inspected field
	var pieces []refPiece
	var fieldStart int64
	for {
		before := dec.InputOffset()
		tok, err := dec.RawToken()
		if err != nil {
			if errors.Is(err, io.EOF) && len(open) > 0 {
				return errors.New("unexpected end of document")
			}
			return err
		}
		after := dec.InputOffset()
		switch t := tok.(type) {
		case xml.StartElement:
			open = append(open, t.Name.Local)
			depth++
			p.elements++
			switch {
			case field != "":
				// markup inside a field: its text still counts
			case accountDepth < 0 && t.Name.Local == "account":
				accountDepth = depth
				p.accounts++
			case accountDepth >= 0 && depth == accountDepth+1 && p.isField(t.Name.Local):
				field, pieces, fieldStart = t.Name.Local, pieces[:0], after
			}
		case xml.EndElement:
			if len(open) == 0 || open[len(open)-1] != t.Name.Local {
				return fmt.Errorf("element </%s> closes nothing open", t.Name.Local)
			}
			open = open[:len(open)-1]
			if field != "" && depth == accountDepth+1 && t.Name.Local == field {
				p.inspect(field, pieces)
				field = ""
			}
			if depth == accountDepth {
				accountDepth = -1
			}
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				p.stray = true
			}
			if field != "" {
				raw := p.raw[p.rel(before):p.rel(after)]
				pieces = append(pieces, refPiece{before, after, bytes.HasPrefix(raw, []byte("<![CDATA["))})
			}
		}
		if field == "" {
			// everything parsed so far may go; write in batches
			if p.rel(after) >= refFlushBatch {
				if err := p.flush(p.rel(after)); err != nil {
					return err
				}
			}
		} else if after-fieldStart > int64(p.opts.MaxField) {
			return errRefFieldTooLarge
		}
	}
}

// inspect decodes the field's text with a map back to raw bytes, finds
// numbers, records them and, if masking, masks them in raw.
func (p *refProcessor) inspect(field string, pieces []refPiece) {
	var text []byte
	var where [][2]int // for each text byte: raw index and raw length
	for _, pc := range pieces {
		s, e := p.rel(pc.start), p.rel(pc.end)
		if pc.cdata {
			s, e = s+len("<![CDATA["), e-len("]]>")
			for i := s; i < e; i++ {
				text = append(text, p.raw[i])
				where = append(where, [2]int{i, 1})
			}
			continue
		}
		for i := s; i < e; {
			c := p.raw[i]
			if c == '&' {
				if r, n, ok := refEntity(p.raw[i:e]); ok {
					var buf [utf8.UTFMax]byte
					for _, b := range buf[:utf8.EncodeRune(buf[:], r)] {
						text = append(text, b)
						where = append(where, [2]int{i, n})
					}
					i += n
					continue
				}
			}
			if c == '\r' { // XML normalises line ends; digits do not care
				c = '\n'
			}
			text = append(text, c)
			where = append(where, [2]int{i, 1})
			i++
		}
	}
	for _, sp := range refFindNumbers(text) {
		p.findings = append(p.findings, refFinding{Account: p.accounts, Field: field, Rule: sp.rule})
		if !p.opts.Mask {
			continue
		}
		for _, d := range sp.digits[:len(sp.digits)-4] {
			w := where[d]
			for k := w[0]; k < w[0]+w[1]; k++ {
				p.masks = append(p.masks, refMaskRec{p.base + int64(k), p.raw[k]})
				p.raw[k] = p.opts.MaskChar
			}
		}
	}
}

// entity decodes the character or entity reference at the start of b.
func refEntity(b []byte) (rune, int, bool) {
	end := bytes.IndexByte(b, ';')
	if end < 2 || end > 12 {
		return 0, 0, false
	}
	name := string(b[1:end])
	switch name {
	case "lt":
		return '<', end + 1, true
	case "gt":
		return '>', end + 1, true
	case "amp":
		return '&', end + 1, true
	case "apos":
		return '\'', end + 1, true
	case "quot":
		return '"', end + 1, true
	}
	if name[0] != '#' {
		return 0, 0, false
	}
	var n uint64
	var err error
	if len(name) > 1 && (name[1] == 'x' || name[1] == 'X') {
		n, err = strconv.ParseUint(name[2:], 16, 32)
	} else {
		n, err = strconv.ParseUint(name[1:], 10, 32)
	}
	if err != nil || n > utf8.MaxRune {
		return 0, 0, false
	}
	return rune(n), end + 1, true
}

// refSpan is a found number: the indexes of its digits in the text.
type refSpan struct {
	rule   string
	digits []int
}

// refFindNumbers returns the numbers in text. A card number is a sequence of
// 13 to 19 digits, optionally in groups separated by one space or dash,
// that passes the Luhn check; an account number is any other run of 9 or
// more consecutive digits. Anything else (a letter, two separators in a
// row) breaks a sequence.
func refFindNumbers(text []byte) []refSpan {
	var out []refSpan
	i := 0
	for i < len(text) {
		if !refIsDigit(text[i]) {
			i++
			continue
		}
		// a grouped sequence: digits, then (separator digit)...
		var digits []int
		j := i
		for j < len(text) {
			if refIsDigit(text[j]) {
				digits = append(digits, j)
				j++
				continue
			}
			if (text[j] == ' ' || text[j] == '-') && j+1 < len(text) && refIsDigit(text[j+1]) {
				j++
				continue
			}
			break
		}
		if n := len(digits); n >= 13 && n <= 19 && refLuhn(text, digits) {
			out = append(out, refSpan{refRuleCard, digits})
		} else {
			// contiguous runs inside the sequence
			start := 0
			for k := 1; k <= len(digits); k++ {
				if k == len(digits) || digits[k] != digits[k-1]+1 {
					if k-start >= 9 {
						out = append(out, refSpan{refRuleAccount, digits[start:k]})
					}
					start = k
				}
			}
		}
		i = j
	}
	return out
}

func refIsDigit(c byte) bool { return c >= '0' && c <= '9' }

// refLuhn checks the digits at the given indexes of text.
func refLuhn(text []byte, idx []int) bool {
	sum := 0
	double := false
	for k := len(idx) - 1; k >= 0; k-- {
		d := int(text[idx[k]] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

const (
	refRuleCard    = "card_number"
	refRuleAccount = "account_number"
)
