package sanitize

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// Finding is one number found. It names where and which rule, never the
// number.
type Finding struct {
	Account int    // 1-based position of the <account> element in the response
	Field   string // the field's element name, e.g. "id"
	Rule    string // RuleCard or RuleAccount
}

// Options configure a Process run.
type Options struct {
	// Fields are the <account> child elements inspected. Default: id, name.
	Fields []string
	// Mask replaces all but the last four digits of each number found with
	// MaskChar; without it, the stream passes unchanged and the findings
	// are only reported.
	Mask bool
	// MaskChar replaces masked digits. Default: 'X'.
	MaskChar byte
	// MaxField bounds the bytes of one inspected field; a larger field is
	// passed on uninspected and reported as ErrFieldTooLarge. Default: 64 KiB.
	MaxField int
}

// Errors of Process. With either, everything read was still written out.
var (
	ErrMalformed     = errors.New("sanitize: not well-formed XML; the rest was passed on uninspected")
	ErrFieldTooLarge = errors.New("sanitize: an inspected field exceeded the size limit and was passed on uninspected")
)

// Process copies src to dst, inspecting the configured fields of every
// <account> element and, with opts.Mask, masking the numbers it finds. It
// returns the findings. On malformed XML it passes the input through
// unchanged and returns ErrMalformed (wrapped): masks already made are
// undone, unless more than 32 KiB had been written since (the stream has
// gone), in which case those stay.
func Process(dst io.Writer, src io.Reader, opts Options) ([]Finding, error) {
	p, err := process(dst, src, opts)
	return p.findings, err
}

func process(dst io.Writer, src io.Reader, opts Options) (*processor, error) {
	if len(opts.Fields) == 0 {
		opts.Fields = []string{"id", "name"}
	}
	if opts.MaskChar == 0 {
		opts.MaskChar = 'X'
	}
	if opts.MaxField <= 0 {
		opts.MaxField = 64 << 10
	}
	p := &processor{dst: dst, opts: opts}
	p.rec = &recorder{r: src, p: p}
	dec := xml.NewDecoder(p.rec)
	dec.Strict = true
	dec.CharsetReader = func(label string, input io.Reader) (io.Reader, error) {
		return nil, fmt.Errorf("charset %q", label) // MDX is UTF-8; anything else passes uninspected
	}
	err := p.run(dec)
	if err != nil && !errors.Is(err, io.EOF) {
		if !errors.Is(err, errWrite) {
			p.unmask()
		}
		if werr := p.flushAll(src); werr != nil {
			return p, werr
		}
		if errors.Is(err, errWrite) || errors.Is(err, ErrFieldTooLarge) {
			return p, err
		}
		return p, fmt.Errorf("%w (%v)", ErrMalformed, err)
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
		return p, fmt.Errorf("%w (%v)", ErrMalformed, err)
	}
	return p, nil
}

// unmask restores the bytes of masks not yet written.
func (p *processor) unmask() {
	for _, m := range p.masks {
		if i := p.rel(m.off); i >= 0 && i < len(p.raw) {
			p.raw[i] = m.orig
		}
	}
	p.masks = p.masks[:0]
}

var errWrite = errors.New("sanitize: write failed")

// flushBatch is how many parsed bytes are held before they are written.
const flushBatch = 32 << 10

// recorder keeps every byte the decoder reads, from base on.
type recorder struct {
	r io.Reader
	p *processor
}

func (rc *recorder) Read(b []byte) (int, error) {
	n, err := rc.r.Read(b)
	rc.p.raw = append(rc.p.raw, b[:n]...)
	rc.p.maxHeld = max(rc.p.maxHeld, len(rc.p.raw))
	return n, err
}

type processor struct {
	dst      io.Writer
	opts     Options
	rec      *recorder
	raw      []byte // bytes read but not yet written, from stream offset base
	base     int64
	findings []Finding
	accounts int
	elements int  // elements seen
	stray    bool // text outside any element: with no element, not XML
	werr     error
	maxHeld  int // the most bytes held at once, for tests
	masks    []maskRec
}

// maskRec remembers the bytes a mask replaced, so that a mask not yet
// written can be undone if the document turns out malformed.
type maskRec struct {
	off  int64 // stream offset
	orig byte
}

// flush writes raw up to stream offset upTo.
func (p *processor) flush(upTo int) error {
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
		p.werr = fmt.Errorf("%w: %v", errWrite, err)
		return p.werr
	}
	p.base += int64(upTo)
	n := copy(p.raw, p.raw[upTo:])
	p.raw = p.raw[:n]
	p.masks = p.masks[:0] // written: no longer undoable
	return nil
}

// flushAll writes everything held, then the rest of src, unchanged.
func (p *processor) flushAll(src io.Reader) error {
	if err := p.flush(len(p.raw)); err != nil {
		return err
	}
	if _, err := io.Copy(p.dst, src); err != nil {
		return fmt.Errorf("%w: %v", errWrite, err)
	}
	return nil
}

// rel turns a stream offset into an index of raw.
func (p *processor) rel(off int64) int { return int(off - p.base) }

func (p *processor) isField(name string) bool {
	for _, f := range p.opts.Fields {
		if f == name {
			return true
		}
	}
	return false
}

// piece is one stretch of a field's text: raw bytes and whether CDATA.
type piece struct {
	start, end int64 // stream offsets of the raw token
	cdata      bool
}

func (p *processor) run(dec *xml.Decoder) error {
	var open []string // names of the open elements, to check that tags match
	depth := 0
	accountDepth := -1 // depth of the open <account>, or -1
	field := ""        // the open inspected field
	var pieces []piece
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
				pieces = append(pieces, piece{before, after, bytes.HasPrefix(raw, []byte("<![CDATA["))})
			}
		}
		if field == "" {
			// everything parsed so far may go; write in batches
			if p.rel(after) >= flushBatch {
				if err := p.flush(p.rel(after)); err != nil {
					return err
				}
			}
		} else if after-fieldStart > int64(p.opts.MaxField) {
			return ErrFieldTooLarge
		}
	}
}

// inspect decodes the field's text with a map back to raw bytes, finds
// numbers, records them and, if masking, masks them in raw.
func (p *processor) inspect(field string, pieces []piece) {
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
				if r, n, ok := entity(p.raw[i:e]); ok {
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
	for _, sp := range findNumbers(text) {
		p.findings = append(p.findings, Finding{Account: p.accounts, Field: field, Rule: sp.rule})
		if !p.opts.Mask {
			continue
		}
		for _, d := range sp.digits[:len(sp.digits)-4] {
			w := where[d]
			for k := w[0]; k < w[0]+w[1]; k++ {
				p.masks = append(p.masks, maskRec{p.base + int64(k), p.raw[k]})
				p.raw[k] = p.opts.MaskChar
			}
		}
	}
}

// entity decodes the character or entity reference at the start of b.
func entity(b []byte) (rune, int, bool) {
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
