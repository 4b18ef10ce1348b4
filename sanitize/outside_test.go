package sanitize

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Numbers where the text rules did not look before: names, replies that
// are not XML, and header fields.

// TestNumbersInNames: a name holding a number that would be masked as text
// is refused, in every mode and with AllowMalformed too; a name with a
// number too short, or not Luhn-valid, passes. Each refused case has a
// control beside it: the same number as text is found.
func TestNumbersInNames(t *testing.T) {
	strict := newGuard(t, Options{})
	loose := newGuard(t, Options{AllowMalformed: true})
	for _, c := range []struct {
		name, in string
		refused  bool
	}{
		{"element name", `<mdx><acct_` + card + `>1</acct_` + card + `></mdx>`, true},
		{"empty element name", `<mdx><acct_` + card + `/></mdx>`, true},
		{"element name, grouped", `<mdx><acct_4111_1111_1111_1111/></mdx>`, true},
		{"element name, in a field", `<mdx><account><id><n_123456789/></id></account></mdx>`, true},
		{"attribute name", `<mdx><account n_` + card + `="1"/></mdx>`, true},
		{"attribute name, in a field", `<mdx><account_number><x n_123456789="1"/></account_number></mdx>`, true},
		{"processing instruction target", `<mdx><?card_` + card + ` x?></mdx>`, true},
		{"namespace prefix", `<mdx xmlns:a_` + card + `="urn:x"><a_` + card + `:b/></mdx>`, true},
		{"element prefix", `<mdx><a_` + card + `:b xmlns:a="urn:x"/></mdx>`, true},
		{"root element name", `<acct_` + card + `/>`, true},
		{"fullwidth digits in a name", `<mdx><n_` + inFullwidth(card) + `/></mdx>`, true},
		{"name of 12 digits", `<mdx><acct_123456789012/></mdx>`, false},
		{"name not Luhn-valid", `<mdx><acct_4111111111111112/></mdx>`, false},
		{"account-length name outside a field", `<mdx><account><n_123456789 x="1"/></account></mdx>`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, g := range []*Guard{strict, loose} {
				if c.name == "fullwidth digits in a name" && g == strict {
					continue // refused as upper_case_name first
				}
				out, r, err := mask(g, c.in)
				_, ierr := g.Inspect(strings.NewReader(c.in), Identity)
				if !c.refused {
					if err != nil || ierr != nil || out != c.in {
						t.Fatalf("allow malformed %v: %v %v %q", g.allow, err, ierr, out)
					}
					continue
				}
				if !errors.Is(err, ErrNumberInName) || !errors.Is(ierr, ErrNumberInName) || Reason(err) != "number_in_name" {
					t.Fatalf("allow malformed %v: %v, %v", g.allow, err, ierr)
				}
				if r.Found() == 0 || r.Findings[0].Field != "#name" || strings.Contains(err.Error(), card) {
					t.Fatalf("report %+v, error %q", r, err)
				}
				if strings.Contains(out, "acct_") || strings.Contains(out, "4111") {
					t.Fatalf("the name left: %q", out)
				}
			}
		})
	}
	// the control: the same number as text is masked
	if out, r, err := mask(strict, `<mdx><acct>`+card+`</acct></mdx>`); err != nil || r.Cards != 1 || strings.Contains(out, card) {
		t.Fatalf("control: %v %+v %q", err, r, out)
	}
	// an entity's name is a name too, where allow_malformed lets it through
	if _, _, err := mask(loose, `<mdx><n>&acct_`+card+`;</n></mdx>`); !errors.Is(err, ErrNumberInName) {
		t.Fatalf("entity name: %v", err)
	}
	if _, _, err := mask(loose, `<mdx><n>&nbsp;</n></mdx>`); err != nil {
		t.Fatalf("entity without a number: %v", err)
	}
	// an end tag matching nothing, let through, is read too
	if _, _, err := mask(loose, `<mdx><n></acct_`+card+`></n></mdx>`); !errors.Is(err, ErrNumberInName) {
		t.Fatalf("end tag: %v", err)
	}
}

func inFullwidth(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '０' + r - '0'
		}
		return r
	}, s)
}

// TestMaskText: a reply read as text is masked with the rules of text,
// whatever it holds, in one read or many; gzip too.
func TestMaskText(t *testing.T) {
	g := tinyGuard(t, Options{MaxField: 256})
	for _, c := range []struct{ in, want string }{
		{`{"id":"` + card + `"}`, `{"id":"XXXXXXXXXXXX1111"}`},
		{"card 4111 1111 1111 1111, exp 12/25", "card XXXX XXXX XXXX 1111, exp 12/25"},
		{"<mdx version=\"5.0\"><id>" + card + "</id>", "<mdx version=\"5.0\"><id>XXXXXXXXXXXX1111</id>"},
		{"/accounts/%34%31%31%31" + "111111111111", "/accounts/" + strings.Repeat("X", 12+8) + "1111"},
		{"&#52;111111111111111 &amp; more", strings.Repeat("X", 5+11) + "1111 &amp; more"},
		{"4111&nbsp;1111&nbsp;1111&nbsp;1111", "XXXX&nbsp;XXXX&nbsp;XXXX&nbsp;1111"},
		{"4111\x001111\x001111\x001111", "XXXX\x00XXXX\x00XXXX\x001111"},
		{"\xff4111\xff1111\xff1111\xff1111\xff", "\xffXXXX\xffXXXX\xffXXXX\xff1111\xff"},
		{"\uFEFF" + card, "\uFEFF" + "XXXXXXXXXXXX1111"},
		{inFullwidth(card), strings.Repeat("XXX", 12) + inFullwidth("1111")},
		{"no number 123456789012 here", "no number 123456789012 here"},
		{"41111111111111111111", "41111111111111111111"},
		{"", ""},
	} {
		for _, n := range []int{1, 3, 1 << 20} {
			var out bytes.Buffer
			r, err := g.MaskText(&out, chunkReader{strings.NewReader(c.in), n}, Identity)
			if err != nil || out.String() != c.want {
				t.Errorf("reads of %d: %q: %v\n got %q\nwant %q", n, c.in, err, out.String(), c.want)
			}
			ir, ierr := g.InspectText(chunkReader{strings.NewReader(c.in), n}, Identity)
			if ierr != nil || ir.Found() != r.Found() {
				t.Errorf("%q: inspect %v %v, mask %v", c.in, ir, ierr, r)
			}
		}
	}
	var out bytes.Buffer
	if r, err := g.MaskText(&out, bytes.NewReader(gzipped([]byte("card "+card))), Gzip); err != nil || r.Cards != 1 {
		t.Fatalf("gzip: %v %v", r, err)
	}
	// a number held open past the buffer is refused, not let through
	long := "4" + strings.Repeat(" ", 2000) + "111111111111111"
	if _, err := g.InspectText(strings.NewReader(long), Identity); !errors.Is(err, ErrFieldTooLarge) {
		t.Fatalf("a number held open past the buffer: %v", err)
	}
}

// TestInspectHeader: a header field's name and values are read as text; an
// account-number field by its name takes the account rule; nothing short
// of a number is found.
func TestInspectHeader(t *testing.T) {
	g := newGuard(t, Options{Fields: []string{"acct_no"}})
	for _, c := range []struct {
		name   string
		values []string
		cards  int
		accts  int
		field  string
	}{
		{"X-Account-Number", []string{card}, 1, 0, "X-Account-Number"},
		{"X-Account-Number", []string{"123456789012"}, 0, 1, "X-Account-Number"},
		{"Account-Id", []string{"1234-5678-90"}, 0, 1, "Account-Id"},
		{"X-Acct-No", []string{"123456789012"}, 0, 1, "X-Acct-No"},
		{"X-Request-Id", []string{"123456789012"}, 0, 0, ""},
		{"Location", []string{"/accounts/" + card}, 1, 0, "Location"},
		{"Location", []string{"/accounts/%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31"}, 1, 0, "Location"},
		{"Link", []string{"</a>; rel=preload", "</accounts/4111-1111-1111-1111>; rel=x"}, 1, 0, "Link"},
		{"X-" + card, []string{"1"}, 1, 0, "-"},
		{"X-Card", []string{inFullwidth(card)}, 1, 0, "X-Card"},
		{"Date", []string{"Mon, 02 Jan 2006 15:04:05 GMT"}, 0, 0, ""},
		{"Content-Length", []string{"123456789012"}, 0, 0, ""},
		{"Etag", []string{`"4111111111111112"`}, 0, 0, ""},
	} {
		r, err := g.InspectHeader(c.name, c.values)
		if err != nil || r.Cards != c.cards || r.Accounts != c.accts {
			t.Errorf("%s: %v: %+v", c.name, err, r)
			continue
		}
		if r.Found() > 0 && r.Findings[0].Field != c.field {
			t.Errorf("%s: field %q", c.name, r.Findings[0].Field)
		}
	}
	if _, err := g.InspectHeader("X-Big", []string{strings.Repeat("1", DefaultMaxField+1)}); !errors.Is(err, ErrFieldTooLarge) {
		t.Fatalf("a long value: %v", err)
	}
	if n := testing.AllocsPerRun(100, func() { g.InspectHeader("Location", []string{"/accounts/acct-1/transactions?page=12"}) }); n != 0 {
		t.Fatalf("%v allocations for a clean field", n)
	}
}

func TestParseContentType(t *testing.T) {
	for v, want := range map[string]string{
		"application/vnd.moneydesktop.mdx.v5+xml":  "application/vnd.moneydesktop.mdx.v5+xml xml",
		"text/plain; charset=utf-8":                "text/plain",
		"Text/HTML; charset=UTF-8":                 "text/html",
		"application/vnd.moneydesktop.mdx.v5+json": "application/vnd.moneydesktop.mdx.v5+json",
		"text/plain; charset=iso-8859-1":           "error encoding",
		"":                                         "error content_type",
		"text/":                                    "error content_type",
		"/plain":                                   "error content_type",
		"text/plain; charset":                      "error content_type",
		"multipart/byteranges; boundary=3d6b6a416f9b5":              "multipart/byteranges",
		"application/xml; charset=utf-8":                            "application/xml xml",
		"application/vnd.moneydesktop.mdx.v5+xml; charset=us-ascii": "error encoding",
		"text/plain; charset=us-ascii":                              "text/plain",
		"text/plain; charset=utf-16":                                "error encoding",
	} {
		mt, xml, err := ParseContentType(v)
		got := mt
		if xml {
			got += " xml"
		}
		if err != nil {
			got = "error " + Reason(err)
		}
		if got != want {
			t.Errorf("%q: %q, want %q", v, got, want)
		}
	}
}
