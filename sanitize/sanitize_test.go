package sanitize

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func run(t *testing.T, in string, opts Options) (string, []Finding, error) {
	t.Helper()
	var out bytes.Buffer
	f, err := Process(&out, strings.NewReader(in), opts)
	return out.String(), f, err
}

func accounts(fields ...string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<mdx version=\"5.0\">\n  <accounts>\n")
	for _, f := range fields {
		b.WriteString("    <account>" + f + "<type>CHECKING</type><balance>1000.00</balance></account>\n")
	}
	b.WriteString("  </accounts>\n</mdx>\n")
	return b.String()
}

func TestDetection(t *testing.T) {
	cases := []struct {
		name, field string
		rules       []string // expected rules, in order
		masked      string   // expected field text after masking, if any finding
	}{
		// true positives: card numbers (Luhn-valid test numbers)
		{"visa plain", "<id>4111111111111111</id>", []string{RuleCard}, "<id>XXXXXXXXXXXX1111</id>"},
		{"visa spaced", "<name>Card 4111 1111 1111 1111</name>", []string{RuleCard}, "<name>Card XXXX XXXX XXXX 1111</name>"},
		{"amex dashed", "<name>Amex 3782-822463-10005</name>", []string{RuleCard}, "<name>Amex XXXX-XXXXXX-X0005</name>"},
		{"13 digits", "<id>4222222222222</id>", []string{RuleCard}, "<id>XXXXXXXXX2222</id>"},
		{"19 digits", "<id>6011000990139424000</id>", nil, ""}, // 19 digits but not Luhn-valid: then an account number
		// true positives: account numbers, 9 to 17 digits and more
		{"9-digit account", "<id>123456789</id>", []string{RuleAccount}, "<id>XXXXX6789</id>"},
		{"17-digit account", "<name>Checking 12345678901234567</name>", []string{RuleAccount}, "<name>Checking XXXXXXXXXXXXX4567</name>"},
		{"two numbers", "<name>123456789 and 4111111111111111</name>", []string{RuleAccount, RuleCard}, "<name>XXXXX6789 and XXXXXXXXXXXX1111</name>"},
		// split across text nodes, CDATA and comments
		{"cdata", "<id><![CDATA[4111111111111111]]></id>", []string{RuleCard}, "<id><![CDATA[XXXXXXXXXXXX1111]]></id>"},
		{"split by cdata", "<id>4111<![CDATA[1111]]>11111111</id>", []string{RuleCard}, "<id>XXXX<![CDATA[XXXX]]>XXXX1111</id>"},
		{"split by comment", "<id>12345<!-- x -->67890</id>", []string{RuleAccount}, "<id>XXXXX<!-- x -->X7890</id>"},
		{"character references", "<id>&#52;&#x31;11111111111111</id>", []string{RuleCard}, "<id>XXXXXXXXXXXXXXXXXXXXX1111</id>"},
		// near misses
		{"8 digits", "<id>12345678</id>", nil, ""},
		{"digits broken by letters", "<id>1234a5678b9012c3456</id>", nil, ""},
		{"two separators", "<name>4111  1111 1111 1111</name>", nil, ""},
		{"short groups", "<name>Account ending 1234, branch 5678</name>", nil, ""},
		{"card failing Luhn, short runs", "<name>4111 1111 1111 1112</name>", nil, ""},
		{"dotted", "<name>1234.5678.9012</name>", nil, ""},
		{"guid", "<id>ACT-6ef1a5b0-1f34-4c7a-91b2-8f8a6fd6a2b5</id>", nil, ""},
	}
	for _, c := range cases {
		in := accounts(c.field)
		if c.name == "19 digits" {
			c.rules = []string{RuleAccount}
			c.masked = "<id>XXXXXXXXXXXXXXX4000</id>"
		}
		out, findings, err := run(t, in, Options{Mask: true})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var rules []string
		for _, f := range findings {
			rules = append(rules, f.Rule)
			if f.Account != 1 || (f.Field != "id" && f.Field != "name") {
				t.Errorf("%s: finding %+v", c.name, f)
			}
		}
		if fmt.Sprint(rules) != fmt.Sprint(c.rules) {
			t.Errorf("%s: rules %v, want %v", c.name, rules, c.rules)
		}
		want := in
		if c.masked != "" {
			want = strings.Replace(in, c.field, c.masked, 1)
		}
		if out != want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, out, want)
		}
		if len(out) != len(in) {
			t.Errorf("%s: length changed", c.name)
		}
	}
}

func TestOnlyConfiguredFieldsOfAccounts(t *testing.T) {
	in := `<mdx version="5.0"><accounts>` +
		`<account><id>ok-1</id><account_number>123456789012</account_number><balance>123456789.00</balance><name>Savings</name></account>` +
		`</accounts><transactions><transaction><id>123456789012</id></transaction></transactions>` +
		`<id>123456789012</id></mdx>`
	out, findings, err := run(t, in, Options{Mask: true})
	if err != nil || len(findings) != 0 || out != in {
		t.Fatalf("findings %v, err %v, changed %v", findings, err, out != in)
	}
	// fields are configurable
	out, findings, _ = run(t, in, Options{Mask: true, Fields: []string{"account_number"}})
	if len(findings) != 1 || findings[0].Field != "account_number" || !strings.Contains(out, "<account_number>XXXXXXXX9012</account_number>") {
		t.Fatalf("configured field: %v %s", findings, out)
	}
	// nested elements named like fields are not the account's fields
	in2 := `<mdx><accounts><account><owner><name>123456789012</name></owner></account></accounts></mdx>`
	if _, f, _ := run(t, in2, Options{}); len(f) != 0 {
		t.Fatalf("a nested name was inspected: %v", f)
	}
}

func TestReportDoesNotChange(t *testing.T) {
	in := accounts("<id>4111111111111111</id>", "<name>Checking 123456789</name>", "<id>acct-3</id>")
	out, findings, err := run(t, in, Options{})
	if err != nil || out != in {
		t.Fatalf("report mode changed the stream: %v", err)
	}
	want := []Finding{{1, "id", RuleCard}, {2, "name", RuleAccount}}
	if fmt.Sprint(findings) != fmt.Sprint(want) {
		t.Fatalf("findings %v, want %v", findings, want)
	}
	for _, f := range findings {
		if strings.Contains(fmt.Sprintf("%+v", f), "4111") {
			t.Fatal("a finding carries the number")
		}
	}
}

func TestMalformedPassesUnchanged(t *testing.T) {
	for _, in := range []string{
		`{"accounts":[{"id":"4111111111111111"}]}`,
		`<mdx><accounts><account><id>acct-1</id></account></accounts>`,         // unclosed
		`<mdx><accounts><account><id>acct-1</name></account></accounts></mdx>`, // mismatched
		`<?xml version="1.0" encoding="ISO-8859-1"?><mdx><account><id>1</id></account></mdx>`,
		``,
		"<mdx>\x00</mdx>",
	} {
		out, _, err := run(t, in, Options{Mask: true})
		if out != in {
			t.Errorf("%.40q changed to %.40q", in, out)
		}
		if in != "" && !errors.Is(err, ErrMalformed) {
			t.Errorf("%.40q: err %v", in, err)
		}
	}
}

// chunkReader returns at most n bytes per Read, to split tokens across reads.
type chunkReader struct {
	r io.Reader
	n int
}

func (c chunkReader) Read(b []byte) (int, error) {
	if len(b) > c.n {
		b = b[:c.n]
	}
	return c.r.Read(b)
}

func TestTinyReadsGiveTheSameResult(t *testing.T) {
	in := accounts("<id>4111 1111 1111 1111</id>", "<name><![CDATA[Checking ]]>123456789012</name>", "<id>x</id>")
	want, _, _ := run(t, in, Options{Mask: true})
	for _, n := range []int{1, 2, 3, 7, 64} {
		var out bytes.Buffer
		if _, err := Process(&out, chunkReader{strings.NewReader(in), n}, Options{Mask: true}); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Fatalf("reads of %d bytes: %q", n, out.String())
		}
	}
}

// generator yields an endless-looking accounts document of n accounts,
// one in every 100 carrying a card number.
type generator struct {
	n, i int
	buf  []byte
}

func (g *generator) Read(b []byte) (int, error) {
	for len(g.buf) == 0 {
		switch {
		case g.i == 0:
			g.buf = []byte(`<?xml version="1.0"?><mdx version="5.0"><accounts>`)
		case g.i <= g.n:
			id := fmt.Sprintf("acct-%d", g.i)
			if g.i%100 == 0 {
				id = "4111111111111111"
			}
			g.buf = []byte(fmt.Sprintf(`<account><id>%s</id><name>Everyday Checking</name><type>CHECKING</type><balance>%d.00</balance><currency_code>USD</currency_code></account>`, id, g.i))
		case g.i == g.n+1:
			g.buf = []byte(`</accounts></mdx>`)
		default:
			return 0, io.EOF
		}
		g.i++
	}
	n := copy(b, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }

// TestLargeResponseBoundedMemory streams a 30 MB response and checks that
// the bytes held at once stay small.
func TestLargeResponseBoundedMemory(t *testing.T) {
	var out countingWriter
	p, err := process(&out, &generator{n: 200_000}, Options{Mask: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.findings) != 2000 {
		t.Fatalf("%d findings, want 2000", len(p.findings))
	}
	if out.n < 25<<20 || p.maxHeld > flushBatch+16<<10 {
		t.Fatalf("held up to %d bytes of a %d-byte response", p.maxHeld, out.n)
	}
}

func TestFieldTooLarge(t *testing.T) {
	in := accounts("<name>" + strings.Repeat("a", 100<<10) + " 4111111111111111</name>")
	out, _, err := run(t, in, Options{Mask: true})
	if !errors.Is(err, ErrFieldTooLarge) || out != in {
		t.Fatalf("err %v, unchanged %v", err, out == in)
	}
}
