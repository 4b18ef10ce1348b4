package hmac

import (
	"bytes"
	"testing"
	"time"
)

// BenchmarkVerify1KiB measures what the gateway does per signed request: the
// MD5 of a 1 KiB body, the Date check and the HMAC verification.
func BenchmarkVerify1KiB(b *testing.B) {
	for _, alg := range []Algorithm{SHA1, SHA256, SHA512} {
		b.Run(alg.String(), func(b *testing.B) {
			body := bytes.Repeat([]byte("<a>x</a>"), 128)
			key := mustKey(b, goldenKey)
			r := &Request{Method: "POST", ContentMD5: ContentMD5(body), ContentType: mdxType, Date: "1382975431", Accept: mdxType, SessionKey: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Resource: "/sessions"}
			sig, _ := Sign(alg, key, r)
			v, _ := NewVerifier(alg, key)
			now := time.Unix(1382975431, 0)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := CheckContentMD5(body, r.ContentMD5); err != nil {
					b.Fatal(err)
				}
				if err := CheckDate(r.Date, now, 5*time.Minute); err != nil {
					b.Fatal(err)
				}
				if err := v.Verify(r, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSign(b *testing.B) {
	key := mustKey(b, goldenKey)
	r := &Request{Method: "GET", ContentMD5: EmptyBodyMD5, Date: "1382975431", Accept: mdxType, Resource: "/accounts"}
	s, _ := NewSigner(SHA256, key)
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Sign(r)
	}
}
