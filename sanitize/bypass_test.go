package sanitize

import (
	"errors"
	"strings"
	"testing"
)

// The bypasses of issue 11, one test each, in both modes. Mask mode is
// Mask; block mode is Inspect on the reply held whole, refusing it on any
// error or any finding.

const card = "4111111111111111"

// refused checks that both modes refuse in with want, and that mask mode
// wrote no complete document and no number in clear.
func refused(t *testing.T, g *Guard, in string, want *Error) {
	t.Helper()
	out, _, err := mask(g, in)
	if !errors.Is(err, want) {
		t.Errorf("mask: err %v, want %v", err, want)
	}
	if len(in) > 0 && len(out) >= len(in) || strings.Contains(out, "</mdx>") || strings.Contains(out, card) {
		t.Errorf("mask: wrote %d of %d bytes: %.80q", len(out), len(in), out)
	}
	if _, err := g.Inspect(strings.NewReader(in), Identity); !errors.Is(err, want) {
		t.Errorf("block: err %v, want %v", err, want)
	}
}

// masked checks that mask mode turns in into want, finding rule, and that
// block mode finds the number (and so refuses the reply).
func masked(t *testing.T, g *Guard, in, want, rule string) {
	t.Helper()
	out, r, err := mask(g, in)
	if err != nil || out != want {
		t.Errorf("mask: %v\n got %q\nwant %q", err, out, want)
	}
	if len(r.Findings) == 0 || r.Findings[0].Rule != rule {
		t.Errorf("mask: findings %+v, want %s", r.Findings, rule)
	}
	r, err = g.Inspect(strings.NewReader(in), Identity)
	if err != nil || r.Found() == 0 {
		t.Errorf("block: %+v %v: not refused", r, err)
	}
}

func TestBypassDeclaredEncoding(t *testing.T) {
	g := newGuard(t, Options{})
	for _, enc := range []string{"ISO-8859-1", "utf8", "US-ASCII", "UTF-16", "windows-1252", "UTF_8", ""} {
		t.Run(enc, func(t *testing.T) {
			refused(t, g, `<?xml version="1.0" encoding="`+enc+`"?><mdx><accounts><account><id>`+card+`</id></account></accounts></mdx>`, ErrEncoding)
		})
	}
	// another encoding named anywhere in the declaration is refused for
	// that, whatever else is wrong with it
	refused(t, g, `<?xml version="1.0" xencoding="UTF-8" encoding='latin1'?><mdx/>`, ErrEncoding)
	refused(t, g, ` <?xml version="1.0" encoding="ISO-8859-1"?><mdx/>`, ErrEncoding)
	// and in the Content-Type
	if _, err := CheckContentType("application/vnd.moneydesktop.mdx.v5+xml; charset=ISO-8859-1", true); !errors.Is(err, ErrEncoding) {
		t.Error(err)
	}
	for _, enc := range []string{"UTF-8", "utf-8", "Utf-8"} {
		if _, _, err := mask(g, `<?xml version="1.0" encoding="`+enc+`"?><mdx/>`); err != nil {
			t.Errorf("%s: %v", enc, err)
		}
	}
}

func TestBypassDTDEntity(t *testing.T) {
	g := newGuard(t, Options{})
	refused(t, g, `<?xml version="1.0"?><!DOCTYPE mdx [<!ENTITY n "`+card+`">]><mdx><accounts><account><id>&n;</id></account></accounts></mdx>`, ErrDoctype)
	refused(t, g, `<!DOCTYPE mdx SYSTEM "http://example.com/mdx.dtd"><mdx/>`, ErrDoctype)
	refused(t, g, `<!doctype mdx><mdx/>`, ErrDoctype)
	refused(t, g, `<mdx><!ENTITY n "`+card+`"></mdx>`, ErrDoctype)
	// an entity reference with no declaration, and one that a DOCTYPE
	// elsewhere could have declared
	refused(t, g, `<mdx><accounts><account><id>&n;</id></account></accounts></mdx>`, ErrEntity)
	refused(t, g, `<mdx><account id="&n;"/></mdx>`, ErrEntity)
	// the five predefined entities and character references are fine
	if _, _, err := mask(g, `<mdx a="&quot;&apos;">&lt;&gt;&amp;&#65;&#x42;</mdx>`); err != nil {
		t.Fatal(err)
	}
	// AllowMalformed does not let declarations through
	refused(t, newGuard(t, Options{AllowMalformed: true}), `<!DOCTYPE mdx [<!ENTITY n "`+card+`">]><mdx>&n;</mdx>`, ErrDoctype)
}

func TestBypassLongField(t *testing.T) {
	g := newGuard(t, Options{})
	long := strings.Repeat("a", 64<<10)
	refused(t, g, accounts("<name>"+long+" "+card+"</name>"), ErrFieldTooLarge)
	refused(t, g, accounts("<name><![CDATA["+long+" "+card+"]]></name>"), ErrFieldTooLarge)
	refused(t, g, accounts(`<name x="`+long+` `+card+`"/>`), ErrFieldTooLarge)
	refused(t, g, accounts("<name>"+long[:40<<10]+"<!-- -->"+long[:40<<10]+card+"</name>"), ErrFieldTooLarge)
	refused(t, g, accounts("<!--"+long+"-->"), ErrFieldTooLarge)
	// exactly at the bound is fine; the bound is configurable
	at := accounts("<name>" + long[:64<<10-len(card)-1] + " " + card + "</name>")
	masked(t, g, at, strings.Replace(at, card, "XXXXXXXXXXXX1111", 1), RuleCard)
	refused(t, newGuard(t, Options{MaxField: 100}), accounts("<name>"+long[:90]+" "+card+"</name>"), ErrFieldTooLarge)
	masked(t, newGuard(t, Options{MaxField: 1 << 20}), accounts("<name>"+long+" "+card+"</name>"),
		accounts("<name>"+long+" XXXXXXXXXXXX1111</name>"), RuleCard)
}

func TestBypassContentEncoding(t *testing.T) {
	for _, v := range [][]string{{"x-gzip"}, {"deflate"}, {"gzip, gzip"}, {"gzip", "gzip"}, {"compress"}, {"br"}, {"gzip, identity"}} {
		if _, err := CheckContentEncoding(v); !errors.Is(err, ErrContentEncoding) {
			t.Errorf("%q: %v", v, err)
		}
	}
	for _, v := range [][]string{nil, {"gzip"}, {"GZIP"}, {"identity"}} {
		if _, err := CheckContentEncoding(v); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
}

func TestBypassContentType(t *testing.T) {
	for _, v := range []string{"", "application/vnd.moneydesktop.mdx.v5+xml; charset", "application/xml; charset=\"utf-8", "application/xml; charset=utf-8; charset=latin1", "/", "text/"} {
		if _, err := CheckContentType(v, true); !errors.Is(err, ErrContentType) {
			t.Errorf("%q: %v", v, err)
		}
	}
}

// TestBypassMalformedTailKeepsMasks: a malformed tail after a mask (here an
// unescaped & in an institution name) stops the reply with ErrMalformed;
// what was written keeps its masks, and the document is never completed.
func TestBypassMalformedTailKeepsMasks(t *testing.T) {
	g := newGuard(t, Options{})
	for _, n := range []int{1, 5000} { // held whole, and partly written first
		var b strings.Builder
		b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><mdx version="5.0"><accounts>`)
		b.WriteString(`<account><id>` + card + `</id><name>Visa</name></account>`)
		for range n {
			b.WriteString(`<account><id>acct-1</id><name>Everyday Checking</name><balance>10.00</balance></account>`)
		}
		b.WriteString(`</accounts><institution><name>AT&T Credit Union</name></institution></mdx>`)
		in := b.String()
		refused(t, g, in, ErrMalformed)
		out, r, _ := mask(g, in)
		if n > 1 && (!strings.Contains(out, "<id>XXXXXXXXXXXX1111</id>") || len(out) < 100<<10) {
			t.Errorf("%d bytes written: %.100q", len(out), out)
		}
		if r.Cards != 1 {
			t.Errorf("%+v", r)
		}
	}
}

func TestBypassSeparators(t *testing.T) {
	g := newGuard(t, Options{})
	for name, sep := range map[string]string{
		"two spaces": "  ", "dot": ".", "slash": "/", "underscore": "_", "tab": "\t", "newline": "\n",
		"CRLF": "\r\n", "no-break space": "\u00a0", "thin space": "\u2009", "narrow no-break space": "\u202f",
		"figure space": "\u2007", "en dash": "\u2013", "em dash": "\u2014", "space and dash": " - ",
		"zero-width space": "\u200b", "soft hyphen": "\u00ad", "ideographic space": "\u3000",
		"character reference to a space": "&#32;", "fullwidth hyphen": "\uff0d",
	} {
		t.Run(name, func(t *testing.T) {
			number := strings.Join([]string{"4111", "1111", "1111", "1111"}, sep)
			want := strings.Join([]string{"XXXX", "XXXX", "XXXX", "1111"}, sep)
			in := accounts("<id>acct-1</id><name>Visa " + number + "</name>")
			masked(t, g, in, strings.Replace(in, number, want, 1), RuleCard)
			// outside any field too
			in = accounts("<id>acct-1</id><memo>Visa " + number + "</memo>")
			masked(t, g, in, strings.Replace(in, number, want, 1), RuleCard)
		})
	}
}

func TestBypassUnicodeDigits(t *testing.T) {
	g := newGuard(t, Options{})
	for name, zero := range map[string]rune{"fullwidth": '０', "Arabic-Indic": '٠', "extended Arabic-Indic": '۰', "Devanagari": '०', "Bengali": '০', "Thai": '๐', "mathematical bold": 0x1D7CE} {
		t.Run(name, func(t *testing.T) {
			conv := func(s string) string {
				return strings.Map(func(r rune) rune {
					if r >= '0' && r <= '9' {
						return zero + r - '0'
					}
					return r
				}, s)
			}
			size := len(string(zero))
			xs := strings.Repeat("X", size)
			in := accounts("<id>" + conv(card) + "</id>")
			masked(t, g, in, strings.Replace(in, conv(card), strings.Repeat(xs, 12)+conv("1111"), 1), RuleCard)
			// mixed with ASCII digits, and grouped
			mixed := "4111 " + conv("1111") + " 1111 " + conv("1111")
			in = accounts("<name>" + mixed + "</name>")
			masked(t, g, in, strings.Replace(in, mixed, "XXXX "+strings.Repeat(xs, 4)+" XXXX "+conv("1111"), 1), RuleCard)
			// an account number
			in = accounts("<name>" + conv("123456789") + "</name>")
			masked(t, g, in, strings.Replace(in, conv("123456789"), strings.Repeat(xs, 5)+conv("6789"), 1), RuleAccount)
		})
	}
}

func TestBypassCharacterReferences(t *testing.T) {
	g := newGuard(t, Options{})
	in := accounts("<id>&#52;&#x31;&#x0031;&#49;111111111111</id>")
	masked(t, g, in, strings.Replace(in, "&#52;&#x31;&#x0031;&#49;11111111", strings.Repeat("X", 5+6+8+5+8), 1), RuleCard)
	in = accounts(`<id>acct-1</id><card n="&#x34;11111111111111&#x31;"/>`)
	masked(t, g, in, strings.Replace(in, "&#x34;11111111111", strings.Repeat("X", 6+11), 1), RuleCard)
	// a reference to a fullwidth digit
	in = accounts("<id>&#xFF14;111111111111111</id>")
	masked(t, g, in, strings.Replace(in, "&#xFF14;11111111111", strings.Repeat("X", 8+11), 1), RuleCard)
}

func TestBypassGroupedAccountNumber(t *testing.T) {
	g := newGuard(t, Options{})
	for number, want := range map[string]string{
		"1234-5678-90":   "XXXX-XX78-90",
		"123 456 789":    "XXX XX6 789",
		"12.345.678.901": "XX.XXX.XX8.901",
		"000123456789":   "XXXXXXXX6789",
	} {
		in := accounts("<id>acct</id><name>Checking " + number + "</name>")
		masked(t, g, in, strings.Replace(in, number, want, 1), RuleAccount)
	}
}

func TestBypassAttributes(t *testing.T) {
	g := newGuard(t, Options{})
	in := accounts(`<id>acct-1</id><card number="` + card + `"/>`)
	masked(t, g, in, strings.Replace(in, card, "XXXXXXXXXXXX1111", 1), RuleCard)
	in = `<mdx><accounts><account id="123456789012" name='x'><balance>1.00</balance></account></accounts></mdx>`
	masked(t, g, in, strings.Replace(in, "123456789012", "XXXXXXXX9012", 1), RuleAccount)
	in = `<mdx><transactions><transaction account_id="1234-5678-9012"/></transactions></mdx>`
	masked(t, g, in, strings.Replace(in, "1234-5678-9012", "XXXX-XXXX-9012", 1), RuleAccount)
}

func TestBypassUpperCaseTags(t *testing.T) {
	g := newGuard(t, Options{})
	refused(t, g, `<mdx><accounts><Account><ID>`+card+`</ID></Account></accounts></mdx>`, ErrUpperCase)
	refused(t, g, `<MDX><accounts><account><id>`+card+`</id></account></accounts></MDX>`, ErrUpperCase)
	refused(t, g, `<mdx><accounts><account ID="`+card+`"/></accounts></mdx>`, ErrUpperCase)
	refused(t, g, `<mdx><accounts><account><ıd>`+card+`</ıd></account></accounts></mdx>`, ErrUpperCase)
	// let through, the fields are still found
	g = newGuard(t, Options{AllowMalformed: true})
	in := `<MDX><ACCOUNTS><ACCOUNT><ID>123456789012</ID></ACCOUNT></ACCOUNTS></MDX>`
	masked(t, g, in, strings.Replace(in, "123456789012", "XXXXXXXX9012", 1), RuleAccount)
}

func TestBypassNestedFields(t *testing.T) {
	g := newGuard(t, Options{})
	in := `<mdx><accounts><account><details><name>Checking 123456789012</name></details><owner><id>987654321</id></owner></account></accounts></mdx>`
	want := `<mdx><accounts><account><details><name>Checking XXXXXXXX9012</name></details><owner><id>XXXXX4321</id></owner></account></accounts></mdx>`
	masked(t, g, in, want, RuleAccount)
	in = `<mdx><accounts><account><id><value>123456789012</value></id></account></accounts></mdx>`
	masked(t, g, in, strings.Replace(in, "123456789012", "XXXXXXXX9012", 1), RuleAccount)
}

func TestBypassTransactionAccountID(t *testing.T) {
	g := newGuard(t, Options{})
	in := `<mdx><transactions><transaction><id>trn-1</id><account_id>123456789012</account_id><amount>10.00</amount></transaction></transactions></mdx>`
	masked(t, g, in, strings.Replace(in, "123456789012", "XXXXXXXX9012", 1), RuleAccount)
	in = `<mdx><transactions><transaction><account_id>1234-5678-90</account_id></transaction></transactions></mdx>`
	masked(t, g, in, strings.Replace(in, "1234-5678-90", "XXXX-XX78-90", 1), RuleAccount)
}

func TestBypassBOM(t *testing.T) {
	g := newGuard(t, Options{AllowMalformed: true})
	refused(t, g, "\xEF\xBB\xBF<mdx/>", ErrBOM)
	refused(t, g, "\xFF\xFE<\x00m\x00/\x00>\x00", ErrBOM)
	refused(t, g, "<mdx><id>4111\uFEFF1111\uFEFF1111\uFEFF1111</id></mdx>", ErrBOM)
	refused(t, g, "<mdx>&#xFEFF;</mdx>", ErrBOM)
}

func TestBypassInvalidUTF8(t *testing.T) {
	g := newGuard(t, Options{AllowMalformed: true})
	for _, in := range []string{"<mdx>\xff</mdx>", "<mdx a='\xc0\x80'/>", "<mdx><!-- \xed\xa0\x80 --></mdx>", "<mdx>\xe4\xb8</mdx>", "<mdx\xff/>"} {
		refused(t, g, in, ErrInvalidUTF8)
	}
}
