package sanitize

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkProcess1MiB masks a 1 MiB accounts response in which one
// account in a hundred carries a card number.
func BenchmarkProcess1MiB(b *testing.B) {
	var doc bytes.Buffer
	g := &generator{n: 1}
	for n := 1; doc.Len() < 1<<20; n *= 2 {
		doc.Reset()
		g = &generator{n: n}
		io.Copy(&doc, g)
	}
	in := doc.Bytes()
	for _, mask := range []bool{true, false} {
		name := "report"
		if mask {
			name = "mask"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Process(io.Discard, bytes.NewReader(in), Options{Mask: mask}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
