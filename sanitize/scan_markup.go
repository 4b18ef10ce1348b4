package sanitize

import (
	"bytes"
	"unicode/utf8"
)

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
