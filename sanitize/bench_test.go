package sanitize

import (
	"bytes"
	"io"
	"testing"
)

// accountsDoc returns the accounts reply of the benchmarks: the smallest
// generated one of at least 1 MiB (8192 accounts, 1.2 MB), one account in
// a hundred carrying a card number in its id.
func accountsDoc() []byte {
	var doc bytes.Buffer
	for n := 1; doc.Len() < 1<<20; n *= 2 {
		doc.Reset()
		io.Copy(&doc, &generator{n: n})
	}
	return doc.Bytes()
}

// BenchmarkProcess1MiB masks and inspects the 1.2 MB accounts reply with
// the scanner (mask, inspect) and, for comparison in the same run, with
// the encoding/xml implementation the package had before (xml-mask,
// xml-report; see reference_test.go).
func BenchmarkProcess1MiB(b *testing.B) {
	in := accountsDoc()
	g, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("mask", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for b.Loop() {
			if r, err := g.Mask(io.Discard, bytes.NewReader(in), Identity); err != nil || r.Cards != 81 {
				b.Fatal(r.Cards, err)
			}
		}
	})
	b.Run("inspect", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for b.Loop() {
			if r, err := g.Inspect(bytes.NewReader(in), Identity); err != nil || r.Cards != 81 {
				b.Fatal(r.Cards, err)
			}
		}
	})
	for _, mask := range []bool{true, false} {
		name := "xml-report"
		if mask {
			name = "xml-mask"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if f, err := refProcess(io.Discard, bytes.NewReader(in), refOptions{Mask: mask}); err != nil || len(f) != 81 {
					b.Fatal(len(f), err)
				}
			}
		})
	}
}

// BenchmarkProcess30MB masks a 30 MB reply read from a stream: B/op shows
// that memory does not grow with the reply.
func BenchmarkProcess30MB(b *testing.B) {
	g, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	var size countingWriter
	io.Copy(&size, &generator{n: 200_000})
	b.SetBytes(size.n)
	b.ReportAllocs()
	for b.Loop() {
		if r, err := g.Mask(io.Discard, &generator{n: 200_000}, Identity); err != nil || r.Cards != 2000 {
			b.Fatal(r.Cards, err)
		}
	}
}

// BenchmarkMaskGzip masks the accounts reply gzip-encoded: decoding and
// encoding again dominate. Throughput counts the decoded reply.
func BenchmarkMaskGzip(b *testing.B) {
	doc := accountsDoc()
	in := gzipped(doc)
	g, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Mask(io.Discard, bytes.NewReader(in), Gzip); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeaderFields reads the header fields of a typical reply, as
// mdx_sanitize does for every reply beside its body: most are passed on a
// look at their bytes, those with 9 digits or more are read whole.
func BenchmarkHeaderFields(b *testing.B) {
	g, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	h := [][2]string{
		{"Content-Type", "application/vnd.moneydesktop.mdx.v5+xml"},
		{"Content-Length", "1234567"},
		{"Date", "Mon, 02 Jan 2006 15:04:05 GMT"},
		{"Etag", `"5f3c1a2b9e8d7c6b5a4f3e2d1c0b9a8f"`},
		{"Cache-Control", "no-store"},
		{"X-Request-Id", "2b7c9e4f-1d3a-4c5b-8e6f-0a1b2c3d4e5f"},
		{"Location", "/inst1/accounts/acct-1/transactions?page=2&start_date=2024-01-01&end_date=2024-12-31"},
		{"Via", "1.1 Caddy"},
		{"Server", "fi-app"},
		{"Strict-Transport-Security", "max-age=31536000; includeSubDomains"},
	}
	vals := make([][]string, len(h))
	for i, f := range h {
		vals[i] = []string{f[1]}
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, f := range h {
			if r, err := g.InspectHeader(f[0], vals[i]); err != nil || r.Found() != 0 {
				b.Fatal(r, err)
			}
		}
	}
}
