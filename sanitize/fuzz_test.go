package sanitize

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// seeds are the starting corpus of every fuzz target.
func seeds(f *testing.F) {
	for _, s := range []string{
		accounts("<id>4111111111111111</id>", "<name>Checking <![CDATA[1234]]>56789</name>"),
		accounts("<id>4111 1111 1111 1111</id>", "<name>１２３４５６７８９０</name>", "<name>٤١١١١١١١١١١١١١١١</name>"),
		`<mdx><accounts><account><id>&#52;&#x31;11111111111111</id></account></accounts></mdx>`,
		`<account><id>1 2 3 4 5 6 7 8 9 0 1 2 3</id></account>`,
		`<a><account><name>123456789<b>012</b></name></account></a>`,
		`<a><memo>4111` + "\u00a0" + `1111` + "\u2009" + `1111` + "\u2013" + `1111</memo></a>`,
		`<a><memo>4111.1111/1111_1111</memo><x y="4111-1111-1111-1111"/></a>`,
		`<transactions><transaction><account_id>1234-5678-90</account_id></transaction></transactions>`,
		`<a><!-- 4111111111111111 --><?pi 4111111111111111?></a>`,
		`<a>4111<!-- x -->1111<?y?>1111<![CDATA[1111]]></a>`,
		`<?xml version="1.0" encoding="utf-8"?><a x='1' y="&lt;&#x34;"><b/></a>`,
		`<a>4111111111111111 4111111111111111 4111111111111111</a>`,
		`<a>41111111111111111111</a>`,
		`{"not":"xml"}`,
		`<A><ID>4111111111111111</ID></A>`,
		`<?xml version="1.0" encoding="ISO-8859-1"?><a/>`,
		`<!DOCTYPE a [<!ENTITY n "4111111111111111">]><a>&n;</a>`,
		"\xEF\xBB\xBF<a/>",
		`<a>AT&T 4111111111111111</a>`,
		`<a><b>4111111111111111</a>`,
		`<a><acct_4111111111111111 n_4111111111111111="1"/><?card_4111111111111111 x?></a>`,
		`<a xmlns:a_4111111111111111="urn:x"><account_number><b n_123456789="1"/></account_number></a>`,
		`<a>&acct_4111111111111111;</a>`,
		"/accounts/%34%31%31%31111111111111 &#52;111&nbsp;1111\x001111\xff1111",
	} {
		f.Add(s)
	}
}

// FuzzProcess: on any input, Mask changes bytes only into X and keeps the
// length; on an error it writes a strict prefix of that; Inspect agrees
// with Mask; and how the input is cut into reads changes nothing.
func FuzzProcess(f *testing.F) {
	seeds(f)
	// a small bound and a buffer of 576 bytes: reads, compaction and
	// writes happen every few dozen bytes
	strict := tinyGuard(f, Options{MaxField: 256})
	loose := tinyGuard(f, Options{MaxField: 256, AllowMalformed: true})
	f.Fuzz(func(t *testing.T, in string) {
		for _, g := range []*Guard{strict, loose} {
			out, r, err := mask(g, in)
			if err == nil && len(out) != len(in) || err != nil && len(out) >= len(in) && len(in) > 0 {
				t.Fatalf("output of %d bytes for %d in, err %v", len(out), len(in), err)
			}
			for i := range len(out) {
				if out[i] != in[i] && out[i] != 'X' {
					t.Fatalf("byte %d changed to %q", i, out[i])
				}
			}
			ir, ierr := g.Inspect(strings.NewReader(in), Identity)
			if fmt.Sprint(ir) != fmt.Sprint(r) || fmt.Sprint(ierr) != fmt.Sprint(err) {
				t.Fatalf("Inspect %v %v, Mask %v %v", ir, ierr, r, err)
			}
			if err != nil && Reason(err) == "" {
				t.Fatalf("an error without a reason: %v", err)
			}
			n := 1 + len(in)%7
			var cout bytes.Buffer
			cr, cerr := g.Mask(&cout, chunkReader{strings.NewReader(in), n}, Identity)
			if fmt.Sprint(cr) != fmt.Sprint(r) || fmt.Sprint(cerr) != fmt.Sprint(err) || err == nil && cout.String() != out {
				t.Fatalf("reads of %d: %v %v, want %v %v", n, cr, cerr, r, err)
			}
		}
		// read as text: the same, and only ever refused for its size
		var tout, cout bytes.Buffer
		r, err := strict.MaskText(&tout, strings.NewReader(in), Identity)
		if err != nil && !errors.Is(err, ErrFieldTooLarge) {
			t.Fatalf("text refused: %v", err)
		}
		if out := tout.String(); err == nil && len(out) != len(in) || err != nil && len(out) >= len(in) && len(in) > 0 {
			t.Fatalf("text: output of %d bytes for %d in, err %v", len(out), len(in), err)
		}
		for i := range tout.Len() {
			if tout.Bytes()[i] != in[i] && tout.Bytes()[i] != 'X' {
				t.Fatalf("text: byte %d changed to %q", i, tout.Bytes()[i])
			}
		}
		ir, ierr := strict.InspectText(strings.NewReader(in), Identity)
		if fmt.Sprint(ir) != fmt.Sprint(r) || fmt.Sprint(ierr) != fmt.Sprint(err) {
			t.Fatalf("text: Inspect %v %v, Mask %v %v", ir, ierr, r, err)
		}
		n := 1 + len(in)%7
		cr, cerr := strict.MaskText(&cout, chunkReader{strings.NewReader(in), n}, Identity)
		if fmt.Sprint(cr) != fmt.Sprint(r) || fmt.Sprint(cerr) != fmt.Sprint(err) || err == nil && cout.String() != tout.String() {
			t.Fatalf("text, reads of %d: %v %v, want %v %v", n, cr, cerr, r, err)
		}
		// a header field is read as text is
		if len(in) <= 256 {
			hr, herr := strict.InspectHeader("X-V", []string{in})
			if herr != nil || hr.Cards != ir.Cards || hr.Accounts != 0 {
				t.Fatalf("header %+v %v, text %+v", hr, herr, ir)
			}
		}
	})
}

// tinyGuard returns a guard whose buffer has only 64 bytes beyond twice
// the field bound.
func tinyGuard(t testing.TB, opts Options) *Guard {
	g := newGuard(t, opts)
	g.slack, g.minRead = 64, 32
	return g
}

// FuzzDifferential compares the guard with encoding/xml: a reply the guard
// lets through (strictly, without AllowMalformed) is well-formed to
// encoding/xml too, and the masked output reads as the same tokens with
// the same names and the same text, but for digits turned into X.
func FuzzDifferential(f *testing.F) {
	seeds(f)
	g := newGuard(f, Options{})
	f.Fuzz(func(t *testing.T, in string) {
		out, _, err := mask(g, in)
		if errors.Is(err, ErrNumberInName) {
			// refused for a name: one of its names, as encoding/xml reads
			// them, holds 9 digits or more
			if names, xerr := xmlNames(in); xerr == nil && !slices.ContainsFunc(names, func(n string) bool { return digitsIn(n) >= 9 }) {
				t.Fatalf("refused for a name, but no name holds 9 digits: %q", names)
			}
		}
		if err != nil {
			return
		}
		want, err := xmlTokens(in)
		if err != nil {
			t.Fatalf("the guard let through what encoding/xml refuses: %v", err)
		}
		got, err := xmlTokens(out)
		if err != nil {
			t.Fatalf("encoding/xml refuses the output: %v\n%q", err, out)
		}
		if len(got) != len(want) {
			t.Fatalf("%d tokens, want %d:\n%q\n%q", len(got), len(want), out, in)
		}
		for i := range want {
			if !sameToken(want[i], got[i]) {
				t.Fatalf("token %d: %#v, want %#v", i, got[i], want[i])
			}
		}
	})
}

func xmlTokens(s string) ([]xml.Token, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	var toks []xml.Token
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return toks, nil
		}
		if err != nil {
			return nil, err
		}
		toks = append(toks, xml.CopyToken(tok))
	}
}

func sameToken(a, b xml.Token) bool {
	switch a := a.(type) {
	case xml.StartElement:
		b, ok := b.(xml.StartElement)
		if !ok || a.Name != b.Name || len(a.Attr) != len(b.Attr) {
			return false
		}
		for i := range a.Attr {
			if a.Attr[i].Name != b.Attr[i].Name || !maskedFrom(a.Attr[i].Value, b.Attr[i].Value) {
				return false
			}
		}
		return true
	case xml.EndElement:
		b, ok := b.(xml.EndElement)
		return ok && a == b
	case xml.CharData:
		b, ok := b.(xml.CharData)
		return ok && maskedFrom(string(a), string(b))
	case xml.Comment:
		b, ok := b.(xml.Comment)
		return ok && maskedFrom(string(a), string(b))
	case xml.ProcInst:
		b, ok := b.(xml.ProcInst)
		return ok && a.Target == b.Target && maskedFrom(string(a.Inst), string(b.Inst))
	case xml.Directive:
		b, ok := b.(xml.Directive)
		return ok && bytes.Equal(a, b)
	}
	return false
}

// maskedFrom reports whether out is in with some digits each replaced by
// one or more X (as many as the digit's raw form had bytes).
func maskedFrom(in, out string) bool {
	a, b := []rune(in), []rune(out)
	memo := map[[2]int]bool{}
	var match func(i, j int) bool
	match = func(i, j int) bool {
		if i == len(a) {
			return j == len(b)
		}
		key := [2]int{i, j}
		if v, ok := memo[key]; ok {
			return v
		}
		ok := false
		if j < len(b) && a[i] == b[j] {
			ok = match(i+1, j+1)
		}
		if _, digit := digitValue(a[i]); digit && !ok {
			for k := j; !ok && k < len(b) && k-j < refMax && b[k] == 'X'; k++ {
				ok = match(i+1, k+1)
			}
		}
		memo[key] = ok
		return ok
	}
	return match(0, 0)
}

// FuzzNoCardSurvives: in whatever the guard lets through, no card number
// is left. The output is read with encoding/xml, independently of the
// scanner: each text run (text and CDATA, joined across comments and
// processing instructions, ended by tags), each attribute value, comment
// and processing instruction is cut into numbers at the separators the
// package documents, and no window of whole digit groups holding 13 to 19
// digits may pass the Luhn check. With AllowMalformed, the output is
// checked when encoding/xml can read it.
func FuzzNoCardSurvives(f *testing.F) {
	seeds(f)
	strict := newGuard(f, Options{})
	loose := newGuard(f, Options{AllowMalformed: true})
	f.Fuzz(func(t *testing.T, in string) {
		for _, g := range []*Guard{strict, loose} {
			out, _, err := mask(g, in)
			if err != nil {
				continue
			}
			runs, xerr := textRuns(out)
			if xerr != nil {
				if g == strict {
					t.Fatalf("encoding/xml refuses the output: %v", xerr)
				}
				continue
			}
			for _, run := range runs {
				if w := cardIn(run); w != "" {
					t.Fatalf("a card number survives (allow malformed %v): %q in %q\nfrom %q", g.allow, w, out, in)
				}
			}
			names, _ := xmlNames(out)
			for _, name := range names {
				if w := cardIn(name); w != "" {
					t.Fatalf("a card number survives in a name (allow malformed %v): %q in %q", g.allow, w, name)
				}
			}
		}
		// read as text: nothing a reader decodes holds a card number
		var tout bytes.Buffer
		if _, err := strict.MaskText(&tout, strings.NewReader(in), Identity); err == nil {
			if w := cardIn(decodeText(tout.String())); w != "" {
				t.Fatalf("a card number survives in text: %q in %q\nfrom %q", w, tout.String(), in)
			}
		}
		// a header field: found exactly when a reader finds one
		if len(in) <= DefaultMaxField {
			r, err := strict.InspectHeader("X-V", []string{in})
			if want := cardIn(decodeText(in)) != ""; err != nil || (r.Cards > 0) != want {
				t.Fatalf("header: %+v %v, a reader finds a card: %v, in %q", r, err, want, in)
			}
		}
	})
}

// xmlNames returns every name of a document as encoding/xml reads it:
// element names, of start and end tags, and attribute names (prefix and
// local name apart), processing instruction targets.
func xmlNames(s string) ([]string, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	var names []string
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return names, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			names = append(names, tok.Name.Space, tok.Name.Local)
			for _, a := range tok.Attr {
				names = append(names, a.Name.Space, a.Name.Local)
			}
		case xml.EndElement:
			names = append(names, tok.Name.Space, tok.Name.Local)
		case xml.ProcInst:
			names = append(names, tok.Target)
		}
	}
}

func digitsIn(s string) int {
	n := 0
	for _, r := range s {
		if _, ok := digitValue(r); ok {
			n++
		}
	}
	return n
}

// decodeText is what a reader of text sees, as the package documents it
// for MaskText, written apart from the scanner: character references and
// percent-encoded ASCII decoded; an entity reference not of XML's five,
// a control character, a byte that is not UTF-8 and U+FEFF become a
// space; a percent-encoded byte that is neither a digit nor a separator
// becomes a letter.
func decodeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '&':
			k := i + 1
			for k < len(s) && k < i+refMax && (strings.IndexByte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#_-.:", s[k]) >= 0) {
				k++
			}
			if k == len(s) || k == i+refMax || s[k] != ';' || k == i+1 {
				b.WriteByte('&')
				i++
				continue
			}
			body := s[i+1 : k]
			i = k + 1
			switch body {
			case "lt", "gt", "amp", "apos", "quot":
				b.WriteByte('x')
				continue
			}
			if body[0] != '#' {
				b.WriteByte(' ')
				continue
			}
			num, base := body[1:], 10
			if len(num) > 0 && (num[0] == 'x' || num[0] == 'X') {
				num, base = num[1:], 16
			}
			v, err := strconv.ParseUint(num, base, 32)
			r := rune(v)
			if err != nil || num == "" || num[0] == '+' || !(r == 9 || r == 10 || r == 13 || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF) {
				b.WriteByte('x')
				continue
			}
			b.WriteString(readerRune(r))
		case c == '%' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]):
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			i += 3
			switch r := rune(v); {
			case r >= '0' && r <= '9':
				b.WriteRune(r)
			case r < 0x80 && (r < 0x20 || r == 0x7F || strings.ContainsRune(" -./_", r)):
				b.WriteByte(' ')
			default:
				b.WriteByte('x')
			}
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			i += size
			if r == utf8.RuneError && size <= 1 {
				b.WriteByte(' ')
				continue
			}
			b.WriteString(readerRune(r))
		}
	}
	return b.String()
}

// readerRune is r as a reader of text takes it: a space for a control
// character and U+FEFF.
func readerRune(r rune) string {
	if r < 0x20 || r == 0x7F || r == 0xFEFF {
		return " "
	}
	return string(r)
}

func isHexDigit(c byte) bool {
	return strings.IndexByte("0123456789abcdefABCDEF", c) >= 0
}

// textRuns returns the text runs, attribute values, comments and
// processing instructions of an XML document.
func textRuns(s string) ([]string, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	var runs []string
	var text strings.Builder
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return append(runs, text.String()), nil
		}
		if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.CharData:
			text.Write(tok)
		case xml.Comment:
			runs = append(runs, string(tok))
		case xml.ProcInst:
			runs = append(runs, string(tok.Inst))
		case xml.StartElement:
			runs = append(runs, text.String())
			text.Reset()
			for _, a := range tok.Attr {
				runs = append(runs, a.Value)
			}
		default:
			runs = append(runs, text.String())
			text.Reset()
		}
	}
}

// cardIn returns a Luhn-valid window of 13 to 19 digits made of whole
// digit groups, if s has one.
func cardIn(s string) string {
	type group []int
	var seqs [][]group
	var seq []group
	var cur group
	endGroup := func() {
		if len(cur) > 0 {
			seq = append(seq, cur)
			cur = nil
		}
	}
	endSeq := func() {
		endGroup()
		if len(seq) > 0 {
			seqs = append(seqs, seq)
			seq = nil
		}
	}
	for _, r := range s {
		if v, ok := digitValue(r); ok {
			cur = append(cur, v)
		} else if r < utf8.RuneSelf && class[r] == cSep || r >= utf8.RuneSelf && isSeparator(r) {
			endGroup()
		} else {
			endSeq()
		}
	}
	endSeq()
	for _, seq := range seqs {
		for i := range seq {
			var digits []int
			for j := i; j < len(seq); j++ {
				digits = append(digits, seq[j]...)
				if len(digits) > 19 {
					break
				}
				if len(digits) >= 13 && luhnValid(digits) {
					return fmt.Sprint(digits)
				}
			}
		}
	}
	return ""
}

func luhnValid(d []int) bool {
	sum := 0
	for k := range d {
		v := d[len(d)-1-k]
		if k%2 == 1 {
			if v *= 2; v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

func TestCardIn(t *testing.T) {
	for s, want := range map[string]bool{
		"4111111111111111":            true,
		"x 4111 1111 1111 1111 12/25": true,
		"4111111111111112":            false,
		"41111111111111111111":        false, // one group of 20
		"XXXXXXXXXXXX1111":            false,
		"4111-1111-1111-111X":         false,
		"９９ 4111111111111111":         true,
	} {
		if got := cardIn(s) != ""; got != want {
			t.Errorf("%q: %v", s, got)
		}
	}
	if !maskedFrom("a4b&", "aXXXb&") || maskedFrom("a4b", "aXc") || !maskedFrom("12", "1X") || maskedFrom("ab", "aX") {
		t.Fatal("maskedFrom")
	}
	if _, err := xmlTokens("<a>"); err == nil || errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
}
