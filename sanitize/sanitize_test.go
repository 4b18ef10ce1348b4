package sanitize

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

func newGuard(t testing.TB, opts Options) *Guard {
	t.Helper()
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// mask runs Mask on in.
func mask(g *Guard, in string) (string, Report, error) {
	var out bytes.Buffer
	r, err := g.Mask(&out, strings.NewReader(in), Identity)
	return out.String(), r, err
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

func rules(r Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.Rule)
	}
	return out
}

func TestDetection(t *testing.T) {
	cases := []struct {
		name, field string
		rules       []string // expected rules, in order
		masked      string   // expected field after masking, if any finding
	}{
		// card numbers (Luhn-valid test numbers)
		{"visa plain", "<id>4111111111111111</id>", []string{RuleCard}, "<id>XXXXXXXXXXXX1111</id>"},
		{"visa spaced", "<name>Card 4111 1111 1111 1111</name>", []string{RuleCard}, "<name>Card XXXX XXXX XXXX 1111</name>"},
		{"amex dashed", "<name>Amex 3782-822463-10005</name>", []string{RuleCard}, "<name>Amex XXXX-XXXXXX-X0005</name>"},
		{"13 digits", "<id>4222222222222</id>", []string{RuleCard}, "<id>XXXXXXXXX2222</id>"},
		{"19 digits, not Luhn-valid: an account number", "<id>6011000990139424000</id>", []string{RuleAccount}, "<id>XXXXXXXXXXXXXXX4000</id>"},
		// account numbers
		{"9-digit account", "<id>123456789</id>", []string{RuleAccount}, "<id>XXXXX6789</id>"},
		{"17-digit account", "<name>Checking 12345678901234567</name>", []string{RuleAccount}, "<name>Checking XXXXXXXXXXXXX4567</name>"},
		{"two numbers", "<name>123456789 and 4111111111111111</name>", []string{RuleAccount, RuleCard}, "<name>XXXXX6789 and XXXXXXXXXXXX1111</name>"},
		{"grouped account number", "<name>1234-5678-90</name>", []string{RuleAccount}, "<name>XXXX-XX78-90</name>"},
		{"a card then an expiry date, in a field", "<name>4111 1111 1111 1111 12/25</name>", []string{RuleCard}, "<name>XXXX XXXX XXXX XXXX 12/25</name>"},
		{"a card then an expiry date", "<memo>4111 1111 1111 1111 12/25</memo>", []string{RuleCard}, "<memo>XXXX XXXX XXXX 1111 12/25</memo>"},
		// split across text nodes, CDATA and comments
		{"cdata", "<id><![CDATA[4111111111111111]]></id>", []string{RuleCard}, "<id><![CDATA[XXXXXXXXXXXX1111]]></id>"},
		{"split by cdata", "<id>4111<![CDATA[1111]]>11111111</id>", []string{RuleCard}, "<id>XXXX<![CDATA[XXXX]]>XXXX1111</id>"},
		{"split by a comment", "<id>12345<!-- x -->67890</id>", []string{RuleAccount}, "<id>XXXXX<!-- x -->X7890</id>"},
		{"character references", "<id>&#52;&#x31;11111111111111</id>", []string{RuleCard}, "<id>XXXXXXXXXXXXXXXXXXXXX1111</id>"},
		{"split by markup inside a field", "<name>4111 1111<b>1111</b> 1111</name>", []string{RuleCard}, "<name>XXXX XXXX<b>XXXX</b> 1111</name>"},
		// near misses
		{"8 digits", "<id>12345678</id>", nil, ""},
		{"digits broken by letters", "<id>1234a5678b9012c3456</id>", nil, ""},
		{"short groups", "<name>Account ending 1234, branch 5678</name>", nil, ""},
		{"card failing Luhn, in short groups", "<name>4111 1111 1111 1112 x</name>", []string{RuleAccount}, "<name>XXXX XXXX XXXX 1112 x</name>"},
		{"guid", "<id>ACT-6ef1a5b0-1f34-4c7a-91b2-8f8a6fd6a2b5</id>", nil, ""},
		{"amount outside a field", "<balance>123456789012.00</balance>", nil, ""},
		{"not Luhn-valid outside a field", "<memo>4111 1111 1111 1112</memo>", nil, ""},
		{"card outside a field", "<memo>paid with 4111 1111 1111 1111</memo>", []string{RuleCard}, "<memo>paid with XXXX XXXX XXXX 1111</memo>"},
	}
	g := newGuard(t, Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := accounts(c.field)
			out, r, err := mask(g, in)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(rules(r)) != fmt.Sprint(c.rules) {
				t.Errorf("rules %v, want %v", rules(r), c.rules)
			}
			want := in
			if c.masked != "" {
				want = strings.Replace(in, c.field, c.masked, 1)
			}
			if out != want {
				t.Errorf("\n got %q\nwant %q", out, want)
			}
			ir, err := g.Inspect(strings.NewReader(in), Identity)
			if err != nil || fmt.Sprint(ir) != fmt.Sprint(r) {
				t.Errorf("Inspect: %v %v, Mask: %v", ir, err, r)
			}
		})
	}
}

// TestFields pins down what a field is: id and name inside <account>
// (at any depth, and as attributes), account_number and account_id and
// the configured fields anywhere, all without regard to case.
func TestFields(t *testing.T) {
	const n = "123456789012"
	cases := []struct {
		name, doc string
		opts      Options
		masked    bool
		field     string
	}{
		{"account id", `<account><id>` + n + `</id></account>`, Options{}, true, "id"},
		{"account name nested deeper", `<account><details><name>` + n + `</name></details></account>`, Options{}, true, "name"},
		{"account id attribute", `<account id="` + n + `"/>`, Options{}, true, "@id"},
		{"name attribute inside an account", `<account><x name="` + n + `"/></account>`, Options{}, true, "@name"},
		{"transaction id", `<transaction><id>` + n + `</id></transaction>`, Options{}, false, ""},
		{"transaction account_id", `<transaction><account_id>` + n + `</account_id></transaction>`, Options{}, true, "account_id"},
		{"account_number anywhere", `<mdx><account_numbers><account_number>` + n + `</account_number></account_numbers></mdx>`, Options{}, true, "account_number"},
		{"account_id attribute", `<holding account_id="` + n + `"/>`, Options{}, true, "@account_id"},
		{"a prefix", `<m:transaction xmlns:m="u"><m:account_id>` + n + `</m:account_id></m:transaction>`, Options{}, true, "account_id"},
		{"text inside a field's child", `<account><name><b>` + n + `</b></name></account>`, Options{}, true, "name"},
		{"balance", `<account><balance>` + n + `.00</balance></account>`, Options{}, false, ""},
		{"configured field", `<mdx><routing_ref>` + n + `</routing_ref></mdx>`, Options{Fields: []string{"Routing_Ref"}}, true, "routing_ref"},
		{"configured field, not configured", `<mdx><routing_ref>` + n + `</routing_ref></mdx>`, Options{}, false, ""},
		{"upper case, let through", `<ACCOUNT><ID>` + n + `</ID></ACCOUNT>`, Options{AllowMalformed: true}, true, "ID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, r, err := mask(newGuard(t, c.opts), c.doc)
			if err != nil {
				t.Fatal(err)
			}
			if got := !strings.Contains(out, n); got != c.masked {
				t.Fatalf("masked %v, want %v: %s", got, c.masked, out)
			}
			if c.masked && (len(r.Findings) != 1 || r.Findings[0].Field != c.field || !strings.Contains(out, "XXXXXXXX9012")) {
				t.Fatalf("findings %+v, output %s", r.Findings, out)
			}
		})
	}
}

func TestFindingsSayWhere(t *testing.T) {
	in := accounts("<id>4111111111111111</id>", "<name>Checking 123456789</name>", "<id>acct-3</id>") +
		"<!-- 4111111111111111 -->"
	r, err := newGuard(t, Options{}).Inspect(strings.NewReader(in), Identity)
	if err != nil {
		t.Fatal(err)
	}
	want := []Finding{{1, "id", RuleCard}, {2, "name", RuleAccount}, {0, "#comment", RuleCard}}
	if fmt.Sprint(r.Findings) != fmt.Sprint(want) || r.Cards != 2 || r.Accounts != 1 || r.Found() != 3 {
		t.Fatalf("%+v, want %v", r, want)
	}
	// a name that might hold a number is withheld
	r, _ = newGuard(t, Options{}).Inspect(strings.NewReader(`<a><n4111111111111112>4111111111111111</n4111111111111112></a>`), Identity)
	if len(r.Findings) != 1 || r.Findings[0].Field != "-" {
		t.Fatalf("%+v", r.Findings)
	}
}

func TestFindingsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("<accounts>")
	for range 250 {
		b.WriteString("<account><id>4111111111111111</id></account>")
	}
	b.WriteString("</accounts>")
	r, err := newGuard(t, Options{}).Inspect(strings.NewReader(b.String()), Identity)
	if err != nil || len(r.Findings) != MaxFindings || r.Cards != 250 || r.Findings[99].Account != 100 {
		t.Fatalf("%d findings, %d cards, %v", len(r.Findings), r.Cards, err)
	}
}

// TestMaskKeepsEverythingElse: masking changes digits to X, in place, and
// nothing else.
func TestMaskKeepsEverythingElse(t *testing.T) {
	in := accounts("<id>４１１１１１１１１１１１１１１１</id>", "<name a='4111111111111111'>&#52;111 1111 1111 1111</name>")
	out, r, err := mask(newGuard(t, Options{}), in)
	if err != nil || r.Cards != 3 {
		t.Fatal(r, err)
	}
	if len(out) != len(in) {
		t.Fatalf("length %d, want %d", len(out), len(in))
	}
	for i := range len(in) {
		if out[i] != in[i] && out[i] != 'X' {
			t.Fatalf("byte %d changed to %q", i, out[i])
		}
	}
	if !strings.Contains(out, "<id>"+strings.Repeat("X", 36)+"１１１１</id>") ||
		!strings.Contains(out, "<name a='XXXXXXXXXXXX1111'>XXXXXXXX XXXX XXXX 1111</name>") {
		t.Fatal(out)
	}
}

// chunkReader returns at most n bytes per Read, to split everything
// across reads.
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
	g := tinyGuard(t, Options{MaxField: 128})
	for _, in := range []string{
		accounts("<id>4111 1111 1111 1111</id>", "<name><![CDATA[Checking ]]>123456789012</name>", "<id>x&#x34;&#52;1111111111111111</id>", "<name>１２３４５６７８９</name>"),
		accounts("<name>"+strings.Repeat("4111 1111 1111 1111 ", 6)+"</name>", "<memo>"+strings.Repeat("4111 ", 20)+"</memo>"),
		accounts("<name>a&b</name>"),
		`<?xml version="1.0" encoding="latin1"?><a/>`,
	} {
		want, wr, werr := mask(g, in)
		for _, n := range []int{1, 2, 3, 7, 64} {
			var out bytes.Buffer
			r, err := g.Mask(&out, chunkReader{strings.NewReader(in), n}, Identity)
			if out.String() != want || fmt.Sprint(r) != fmt.Sprint(wr) || fmt.Sprint(err) != fmt.Sprint(werr) {
				t.Fatalf("reads of %d bytes: %q %v %v, want %q %v %v", n, out.String(), r, err, want, wr, werr)
			}
		}
	}
}

// generator yields an accounts reply of n accounts, one in every 100
// carrying a card number in its id.
type generator struct {
	n, i int
	buf  []byte
	rest []byte
}

func (g *generator) Read(b []byte) (int, error) {
	for len(g.rest) == 0 {
		g.buf = g.buf[:0]
		switch {
		case g.i == 0:
			g.buf = append(g.buf, `<?xml version="1.0"?><mdx version="5.0"><accounts>`...)
		case g.i <= g.n:
			g.buf = append(g.buf, `<account><id>`...)
			if g.i%100 == 0 {
				g.buf = append(g.buf, "4111111111111111"...)
			} else {
				g.buf = strconv.AppendInt(append(g.buf, "acct-"...), int64(g.i), 10)
			}
			g.buf = append(g.buf, `</id><name>Everyday Checking</name><type>CHECKING</type><balance>`...)
			g.buf = strconv.AppendInt(g.buf, int64(g.i), 10)
			g.buf = append(g.buf, `.00</balance><currency_code>USD</currency_code></account>`...)
		case g.i == g.n+1:
			g.buf = append(g.buf, `</accounts></mdx>`...)
		default:
			return 0, io.EOF
		}
		g.rest = g.buf
		g.i++
	}
	n := copy(b, g.rest)
	g.rest = g.rest[n:]
	return n, nil
}

type countingWriter struct{ n, writes, max int64 }

func (c *countingWriter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	c.writes++
	c.max = max(c.max, int64(len(b)))
	return len(b), nil
}

// TestLargeReplyBoundedMemory streams a 30 MB reply and checks that the
// scanner's buffer never grew and that output left as it went.
func TestLargeReplyBoundedMemory(t *testing.T) {
	g := newGuard(t, Options{})
	var out countingWriter
	s := newScanner(g)
	size := len(s.buf)
	s.reset(&generator{n: 200_000}, &out, true)
	if err := s.run(); err != nil {
		t.Fatal(err)
	}
	if s.cards != 2000 || out.n < 25<<20 {
		t.Fatalf("%d cards, %d bytes", s.cards, out.n)
	}
	if len(s.buf) != size || cap(s.buf) != size || out.max > int64(size) || out.writes < out.n/int64(size) {
		t.Fatalf("buffer %d -> %d; %d writes of at most %d bytes", size, cap(s.buf), out.writes, out.max)
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{MaxField: -1}, {MaxDecoded: -1}, {MaxField: 1 << 30}, {Fields: []string{""}}, {Fields: []string{"a b"}}, {Fields: []string{"x:y"}}, {Fields: []string{"1a"}}} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	g := newGuard(t, Options{})
	if g.maxField != DefaultMaxField || g.maxDec != DefaultMaxDecoded || len(g.account) != 2 || len(g.anywhere) != 2 {
		t.Fatalf("%+v", g)
	}
}

func TestCheckContentType(t *testing.T) {
	cases := []struct {
		v       string
		body    bool
		inspect bool
		err     error
	}{
		{"application/vnd.moneydesktop.mdx.v5+xml", true, true, nil},
		{"application/xml; charset=UTF-8", true, true, nil},
		{"text/xml; charset=utf-8", true, true, nil},
		{"application/vnd.moneydesktop.mdx.v5+xml; charset=ISO-8859-1", true, false, ErrEncoding},
		{"application/xml; charset=utf8", true, false, ErrEncoding},
		{"", true, false, ErrContentType},
		{"  ", true, false, ErrContentType},
		{"application/xml; charset", true, false, ErrContentType},
		{"application/xml; =x", true, false, ErrContentType},
		{"application/xml;;", true, false, ErrContentType},
		{"xml", true, false, ErrContentType},
		{"application/", true, false, ErrContentType},
		{"application/json", true, false, nil},
		{"text/plain; charset=us-ascii", true, false, nil},
		{"", false, false, nil},
		{"application/xml", false, false, nil},
	}
	for _, c := range cases {
		inspect, err := CheckContentType(c.v, c.body)
		if inspect != c.inspect || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%q body %v: %v %v, want %v %v", c.v, c.body, inspect, err, c.inspect, c.err)
		}
	}
}

func TestCheckContentEncoding(t *testing.T) {
	cases := []struct {
		v   []string
		c   Coding
		err bool
	}{
		{nil, Identity, false},
		{[]string{""}, Identity, false},
		{[]string{"identity"}, Identity, false},
		{[]string{"gzip"}, Gzip, false},
		{[]string{" GZip "}, Gzip, false},
		{[]string{"x-gzip"}, Identity, true},
		{[]string{"deflate"}, Identity, true},
		{[]string{"br"}, Identity, true},
		{[]string{"gzip, gzip"}, Identity, true},
		{[]string{"gzip", "gzip"}, Identity, true},
		{[]string{"identity, gzip"}, Identity, true},
		{[]string{"gzip;q=1"}, Identity, true},
	}
	for _, c := range cases {
		got, err := CheckContentEncoding(c.v)
		if got != c.c || (err != nil) != c.err || err != nil && !errors.Is(err, ErrContentEncoding) {
			t.Errorf("%q: %v %v", c.v, got, err)
		}
	}
}

func gzipped(b []byte) []byte {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	return z.Bytes()
}

func gunzip(t *testing.T, b []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestGzip(t *testing.T) {
	g := newGuard(t, Options{})
	in := accounts("<id>4111111111111111</id>")
	want, _, _ := mask(g, in)
	var out bytes.Buffer
	r, err := g.Mask(&out, bytes.NewReader(gzipped([]byte(in))), Gzip)
	if err != nil || r.Cards != 1 || gunzip(t, out.Bytes()) != want {
		t.Fatalf("%v %v", r, err)
	}
	if r, err := g.Inspect(bytes.NewReader(gzipped([]byte(in))), Gzip); err != nil || r.Cards != 1 {
		t.Fatalf("%v %v", r, err)
	}
	// not gzip, truncated, or trailing garbage
	z := gzipped([]byte(in))
	for name, body := range map[string][]byte{"plain": []byte(in), "truncated": z[:len(z)-10], "garbage after": append(z[:len(z):len(z)], "junk"...), "empty": nil} {
		out.Reset()
		_, err := g.Mask(&out, bytes.NewReader(body), Gzip)
		if !errors.Is(err, ErrContentEncoding) || Reason(err) != "content_encoding" {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := g.Inspect(bytes.NewReader(body), Gzip); !errors.Is(err, ErrContentEncoding) {
			t.Errorf("%s, inspect: %v", name, err)
		}
	}
	// a bad document inside good gzip: the output is no complete gzip stream
	out.Reset()
	_, err = g.Mask(&out, bytes.NewReader(gzipped([]byte(accounts("<id>4111111111111111</id>")+"<x>"))), Gzip)
	if !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
	if zr, zerr := gzip.NewReader(&out); zerr == nil {
		if _, zerr = io.ReadAll(zr); zerr == nil {
			t.Fatal("a complete gzip stream was written for a refused reply")
		}
	}
}

// TestGzipDecodedBound: a gzip reply that decodes past MaxDecoded (a gzip
// bomb) is refused, in both modes, without being decoded further; one at
// the bound passes.
func TestGzipDecodedBound(t *testing.T) {
	in := accounts("<id>4111111111111111</id><memo>" + strings.Repeat("a", 10000) + "</memo>")
	z := gzipped([]byte(in))
	at := newGuard(t, Options{MaxDecoded: int64(len(in))})
	if _, err := at.Inspect(bytes.NewReader(z), Gzip); err != nil {
		t.Fatalf("at the bound: %v", err)
	}
	var out bytes.Buffer
	if _, err := at.Mask(&out, bytes.NewReader(z), Gzip); err != nil {
		t.Fatalf("at the bound, mask: %v", err)
	}
	under := newGuard(t, Options{MaxDecoded: int64(len(in) - 1)})
	if _, err := under.Inspect(bytes.NewReader(z), Gzip); !errors.Is(err, ErrDecodedTooLarge) || Reason(err) != "decoded_too_large" {
		t.Fatalf("past the bound: %v", err)
	}
	out.Reset()
	if _, err := under.Mask(&out, bytes.NewReader(z), Gzip); !errors.Is(err, ErrDecodedTooLarge) {
		t.Fatalf("past the bound, mask: %v", err)
	}
	// a bomb: 16 MiB in a few KiB, refused after reading little of it
	bomb := gzipBomb(t, 16<<20)
	g := newGuard(t, Options{MaxDecoded: 1 << 20})
	src := &countingReader{r: bytes.NewReader(bomb)}
	if _, err := g.Inspect(src, Gzip); !errors.Is(err, ErrDecodedTooLarge) {
		t.Fatalf("bomb: %v", err)
	}
	if src.n >= len(bomb)/2 {
		t.Errorf("read %d bytes of a %d-byte bomb to decode 1 MiB", src.n, len(bomb))
	}
	// the bound is per reply: a pooled decoder starts again at zero
	if _, err := at.Inspect(bytes.NewReader(z), Gzip); err != nil {
		t.Fatalf("again: %v", err)
	}
}

// gzipBomb returns <a> and about n bytes of empty elements, gzipped.
func gzipBomb(t *testing.T, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = zw.Write([]byte("<a>"))
	chunk := bytes.Repeat([]byte("<b/>"), 1<<18)
	for ; n > 0; n -= len(chunk) {
		_, _ = zw.Write(chunk[:min(n, len(chunk))])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestReadAndWriteErrors(t *testing.T) {
	g := newGuard(t, Options{})
	cause := errors.New("upstream went away")
	src := io.MultiReader(strings.NewReader("<mdx><accounts>"), failingReader{cause})
	_, err := g.Mask(io.Discard, src, Identity)
	if !errors.Is(err, ErrRead) || !errors.Is(err, cause) || Reason(err) != "read" {
		t.Fatal(err)
	}
	src = io.MultiReader(bytes.NewReader(gzipped([]byte("<mdx>"))[:12]), failingReader{cause})
	if _, err = g.Inspect(src, Gzip); !errors.Is(err, ErrRead) || !errors.Is(err, cause) {
		t.Fatal(err)
	}
	_, err = g.Mask(failingWriter{}, &generator{n: 10000}, Identity)
	if !errors.Is(err, ErrWrite) || Reason(err) != "write" {
		t.Fatal(err)
	}
}

// TestErrorsNeverCarryTheReply: error texts are fixed; no byte of a reply
// is in them.
func TestErrorsNeverCarryTheReply(t *testing.T) {
	const card = "4111111111111111"
	g := newGuard(t, Options{MaxField: 64})
	for _, in := range []string{
		`<?xml version="1.0" encoding="` + card + `"?><a/>`,
		`<a>` + card + `&` + card + `</a>`,
		`<a>&e` + card + `;</a>`,
		`<a><b` + card + `></a>`,
		`<A` + card + `/>`,
		`<a>` + card + strings.Repeat(" ", 100) + `</a>`,
		`<!DOCTYPE ` + card + `>`,
		`<a x="` + card + `<"/>`,
	} {
		_, _, err := mask(g, in)
		if err == nil || strings.Contains(err.Error(), "4111") || strings.Contains(err.Error(), "1111") || Reason(err) == "" {
			t.Errorf("%.30q: %v", in, err)
		}
	}
}

func TestReason(t *testing.T) {
	if Reason(nil) != "" || Reason(io.EOF) != "" || Reason(fmt.Errorf("x: %w", ErrBOM)) != "bom" {
		t.Fatal("Reason")
	}
	var e *Error
	if !errors.As(&spotError{ErrEntity, "x"}, &e) || e.Reason() != "entity" || e != ErrEntity {
		t.Fatal("As")
	}
	seen := map[string]bool{}
	for _, e := range []*Error{ErrEncoding, ErrInvalidUTF8, ErrBOM, ErrDoctype, ErrEntity, ErrUpperCase, ErrFieldTooLarge, ErrMalformed, ErrContentType, ErrContentEncoding, ErrDecodedTooLarge, ErrRead, ErrWrite} {
		if seen[e.Reason()] || !strings.HasPrefix(e.Error(), "sanitize: ") {
			t.Errorf("%v", e)
		}
		seen[e.Reason()] = true
	}
}

func TestDigitValue(t *testing.T) {
	for _, c := range []struct {
		r rune
		v int
	}{{'7', 7}, {'０', 0}, {'９', 9}, {'٠', 0}, {'٣', 3}, {'۵', 5}, {'३', 3}, {'৮', 8}, {'๒', 2}, {0x1D7CE, 0}, {0x1D7D8, 0}, {0x1D7FF, 9}, {0x1E950, 0}} {
		if v, ok := digitValue(c.r); !ok || v != c.v {
			t.Errorf("%U: %d %v", c.r, v, ok)
		}
	}
	for _, r := range []rune{'a', '²', '½', 'Ⅳ', '①', 0x10FFFF} {
		if _, ok := digitValue(r); ok {
			t.Errorf("%U is a digit", r)
		}
	}
}

func TestAllowMalformed(t *testing.T) {
	g := newGuard(t, Options{AllowMalformed: true})
	cases := []struct{ name, in, want string }{
		{"bare &", `<a><id>AT&T</id><memo>4111111111111111</memo></a>`, `<a><id>AT&T</id><memo>XXXXXXXXXXXX1111</memo></a>`},
		{"mismatched tags", `<a><account><id>4111111111111111</x></account></a>`, `<a><account><id>XXXXXXXXXXXX1111</x></account></a>`},
		{"unclosed", `<a><account><name>123456789012`, `<a><account><name>XXXXXXXX9012`},
		{"ends inside a tag", `<a><b x="4111111111111111`, `<a><b x="XXXXXXXXXXXX1111`},
		{"not XML at all", `{"id":"4111111111111111"}`, `{"id":"XXXXXXXXXXXX1111"}`},
		{"stray <", `<a><memo>1 < 2, 4111111111111111</memo></a>`, `<a><memo>1 < 2, XXXXXXXXXXXX1111</memo></a>`},
		{"unquoted attribute", `<a><b id=4111111111111111></b></a>`, `<a><b id=XXXXXXXXXXXX1111></b></a>`},
		{"undeclared entity between groups", `<a><memo>4111&nbsp;1111&nbsp;1111&nbsp;1111</memo></a>`, `<a><memo>XXXX&nbsp;XXXX&nbsp;XXXX&nbsp;1111</memo></a>`},
		{"upper case", `<A><ACCOUNT><ID>123456789</ID></ACCOUNT></A>`, `<A><ACCOUNT><ID>XXXXX6789</ID></ACCOUNT></A>`},
		{"two roots", `<a>4111111111111111</a><b>4111111111111111</b>`, `<a>XXXXXXXXXXXX1111</a><b>XXXXXXXXXXXX1111</b>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, r, err := mask(g, c.in)
			if err != nil || out != c.want || r.Malformed == nil || Reason(r.Malformed) == "" {
				t.Fatalf("%q %v %v", out, r.Malformed, err)
			}
			if _, err := g.Inspect(strings.NewReader(c.in), Identity); err != nil {
				t.Fatal(err)
			}
		})
	}
	// never let through
	for _, in := range []string{
		`<?xml version="1.0" encoding="ISO-8859-1"?><a/>`, "\xEF\xBB\xBF<a/>", "<a>\xff</a>", `<!DOCTYPE a><a/>`,
		`<a>` + strings.Repeat("x", DefaultMaxField+1) + `</a>`,
	} {
		if _, _, err := mask(g, in); err == nil {
			t.Errorf("%.40q let through", in)
		}
	}
	// well-formed: nothing to say
	if _, r, err := mask(g, accounts("<id>1</id>")); err != nil || r.Malformed != nil {
		t.Fatal(r, err)
	}
}

// TestWellFormedness: replies the guard refuses, and replies it must not.
func TestWellFormedness(t *testing.T) {
	g := newGuard(t, Options{})
	bad := map[string]string{
		"empty":                   ``,
		"white space only":        " \n",
		"unclosed":                `<a><b></b>`,
		"mismatched":              `<a><b></a></b>`,
		"end tag closes nothing":  `<a></a></b>`,
		"two roots":               `<a/><b/>`,
		"text before the root":    `x<a/>`,
		"text after the root":     `<a/>x`,
		"bare &":                  `<a>a & b</a>`,
		"& without ;":             `<a>&amp</a>`,
		"&#;":                     `<a>&#;</a>`,
		"&#0;":                    `<a>&#0;</a>`,
		"&#xD800;":                `<a>&#xD800;</a>`,
		"&#X41;":                  `<a>&#X41;</a>`,
		"< in attribute":          `<a x="<"/>`,
		"unquoted attribute":      `<a x=1/>`,
		"attribute without value": `<a x/>`,
		"attributes run together": `<a x="1"y="2"/>`,
		"]]> in text":             `<a>]]></a>`,
		"control character":       "<a>\x01</a>",
		"U+FFFE":                  "<a>\uFFFE</a>",
		"-- in comment":           `<a><!-- a -- b --></a>`,
		"comment ending in -":     `<a><!-- a ---></a>`,
		"cdata outside root":      `<![CDATA[x]]><a/>`,
		"ends in a tag":           `<a><b`,
		"ends in a comment":       `<a><!-- x`,
		"< alone":                 `<a>< b</a>`,
		"<1":                      `<a><1/></a>`,
		"</ alone":                `<a></ a></a>`,
		"<! alone":                `<a><!1></a>`,
		"<![ other":               `<a><![INCLUDE[x]]></a>`,
		"decl not at start":       ` <?xml version="1.0"?><a/>`,
		"decl without version":    `<?xml encoding="UTF-8"?><a/>`,
		"decl upper case":         `<?XML version="1.0"?><a/>`,
		"decl version 1.1":        `<?xml version="1.1"?><a/>`,
		"decl junk":               `<?xml version="1.0" junk="1"?><a/>`,
		"decl order":              `<?xml version="1.0" standalone="yes" encoding="UTF-8"?><a/>`,
		"pi target glued":         `<a><?x?y?></a>`,
		"tag ends in a/":          `<a/ >`,
		"name of colons":          `<::/>`,
		"name starting with :":    `<:a/>`,
		"name ending in :":        `<a:/>`,
		"name with two colons":    `<a:b:c/>`,
		"attribute with two":      `<a x:y:z="1"/>`,
		"end tag with two":        `<a:b:c></a:b:c>`,
		"pi target with a colon":  `<a><?x:y?></a>`,
	}
	for name, in := range bad {
		_, _, err := mask(g, in)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	good := []string{
		`<a/>`,
		"\n<a>\n</a>\n",
		`<?xml version="1.0"?><a/>`,
		`<?xml version='1.0' encoding='utf-8' standalone='no' ?><a/>`,
		`<!-- c --><?pi x?><a x='1' y="2" z = "3" ><![CDATA[<&]]>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;</a ><!-- d -->`,
		`<a>]]</a>`,
		`<a>x > y</a>`,
		`<a x="a>b" y='"'/>`,
		`<m:a xmlns:m="u" m:b="1"><m:c/></m:a>`,
		"<a>\u00e9\u4e2d\U0001F600</a>",
		`<a><?x?></a>`,
		`<a_b-c.d/>`,
		"<a\n\tx='1'\r\n/>",
	}
	for _, in := range good {
		if out, _, err := mask(g, in); err != nil || out != in {
			t.Errorf("%q: %q %v", in, out, err)
		}
	}
}
