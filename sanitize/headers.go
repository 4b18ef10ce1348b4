package sanitize

import (
	"mime"
	"strings"
)

// CheckContentType decides from a reply's Content-Type whether its body
// is to be inspected as XML. A reply with a body (hasBody) and no
// Content-Type, or one that does not parse (a malformed parameter
// included), is refused with ErrContentType: it cannot be known to be
// anything but XML. An XML type (application/xml, text/xml, or any type
// ending in +xml, such as MDX's application/vnd.moneydesktop.mdx.v5+xml)
// is inspected, and refused with ErrEncoding if its charset parameter
// names anything but UTF-8. Any other well-formed type gives inspect
// false and no error: the guard does not read it as XML, and the caller
// decides whether to refuse it ([ErrMediaType]) or to read it as text
// ([Guard.MaskText]). A reply without a body is never refused.
func CheckContentType(value string, hasBody bool) (inspect bool, err error) {
	if !hasBody {
		return false, nil
	}
	_, xml, err := ParseContentType(value)
	if err != nil && (xml || err == ErrContentType) {
		return false, err
	}
	return xml, nil
}

// ParseContentType parses a reply's Content-Type: it returns the media
// type, lower-cased and without parameters, and whether it is an XML type
// (application/xml, text/xml, or any type ending in +xml). A missing or
// unparseable value is ErrContentType. A charset parameter naming
// anything but UTF-8 is ErrEncoding (with the type): for an XML type,
// anything but UTF-8; for another type, anything but UTF-8 or US-ASCII.
func ParseContentType(value string) (mediaType string, xml bool, err error) {
	if strings.TrimSpace(value) == "" {
		return "", false, ErrContentType
	}
	mt, params, err := mime.ParseMediaType(value)
	if err != nil || !strings.Contains(mt, "/") || strings.HasSuffix(mt, "/") || strings.HasPrefix(mt, "/") {
		return "", false, ErrContentType
	}
	xml = mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml")
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && (xml || !strings.EqualFold(cs, "us-ascii")) {
		return mt, xml, ErrEncoding
	}
	return mt, xml, nil
}

// InspectHeader reports the numbers in one header or trailer field of a
// reply, its name and each of its values, read with the rules of text
// (see the package documentation) and the decodings of [Guard.MaskText]
// (character references, percent-encoded ASCII). A field whose name is
// that of an account-number field once lower-cased, with '-' read as '_'
// and an "X-" prefix dropped (X-Account-Number, Account-Id), is a field:
// its values' numbers of 9 or more digits are account numbers. A value
// longer than Options.MaxField is ErrFieldTooLarge. The field is never
// changed: a caller drops or refuses a field with Found() > 0.
// Finding.Field is the field's name, or "-" if it has a digit or is long.
// A field with too few digits to hold a number costs no more than a look
// at each byte.
func (g *Guard) InspectHeader(name string, values []string) (Report, error) {
	if !mayHold(name) {
		clean := true
		for _, v := range values {
			if mayHold(v) {
				clean = false
				break
			}
		}
		if clean {
			return Report{}, nil
		}
	}
	if len(name) > g.maxField {
		return Report{}, &spotError{ErrFieldTooLarge, "a header field's name"}
	}
	s, _ := g.pool.Get().(*scanner)
	if s == nil {
		s = newScanner(g)
	}
	defer g.pool.Put(s)
	s.reset(nil, nil, false)
	s.plain = true
	nb := s.names[:copy(s.names, name)]
	field := g.headerField(nb)
	var err error
	for k := -1; k < len(values) && err == nil; k++ {
		v, inField := name, false
		if k >= 0 {
			v, inField = values[k], field
		}
		if len(v) > g.maxField {
			err = &spotError{ErrFieldTooLarge, "a header field's value"}
			break
		}
		s.n, s.pos, s.base, s.eof = copy(s.buf, v), 0, 0, true
		s.aux.preset(ctxHeader, inField, 0, nb)
		err = s.plainLoop(&s.aux)
		s.aux.brk()
	}
	r := Report{Findings: s.findings, Cards: s.cards, Accounts: s.accts}
	s.release()
	return r, err
}

// mayHold reports whether s might hold a number: 9 ASCII digits, or a
// byte that a digit may be written with otherwise (non-ASCII, & or %).
func mayHold(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 0x80, c == '&', c == '%':
			return true
		}
	}
	return digits >= 9
}

// headerField reports whether a header's name is that of an account-
// number field: lower-cased, '-' read as '_', any "x_" prefix dropped.
func (g *Guard) headerField(name []byte) bool {
	var a [64]byte
	if len(name) > len(a) {
		return false
	}
	b := a[:len(name)]
	for i, c := range name {
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '-':
			c = '_'
		}
		b[i] = c
	}
	if len(b) > 2 && b[0] == 'x' && b[1] == '_' {
		b = b[2:]
	}
	return g.isField(b, false)
}

// CheckContentEncoding returns the content coding named by a reply's
// Content-Encoding header values (all of them, as http.Header.Values
// gives them): Identity for none (or "identity"), Gzip for exactly one
// "gzip" in any case. Anything else is refused with ErrContentEncoding:
// "x-gzip", "deflate", "br", stacked codings such as "gzip, gzip", and
// a header given twice. MDX allows gzip only.
func CheckContentEncoding(values []string) (Coding, error) {
	n, last := 0, ""
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if p := strings.TrimSpace(part); p != "" {
				n++
				last = p
			}
		}
	}
	switch {
	case n == 0:
		return Identity, nil
	case n > 1:
		return Identity, ErrContentEncoding
	case strings.EqualFold(last, "gzip"):
		return Gzip, nil
	case strings.EqualFold(last, "identity"):
		return Identity, nil
	}
	return Identity, ErrContentEncoding
}
