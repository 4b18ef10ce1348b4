package hmac

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary header values to the verifier. It must never
// panic, must accept the signature the signer makes for the same fields,
// and must reject any other well-formed signature.
func FuzzVerify(f *testing.F) {
	f.Add("POST", goldenMD5, mdxType, "1382975431", mdxType, "", "/sessions", goldenHMAC)
	f.Add("GET", "", "", "1382975431", mdxType, "abc", "/accounts", strings.ToUpper(goldenHMAC))
	f.Add("", "", "", "", "", "", "", "")
	f.Add("GET", "\n", "\n\n", "x", "y", "z", "/", "zz")
	key := mustKey(f, goldenKey)
	s, _ := NewSigner(SHA1, key)
	v, _ := NewVerifier(SHA1, key)
	f.Fuzz(func(t *testing.T, method, md5, ctype, date, accept, session, resource, sig string) {
		r := &Request{method, md5, ctype, date, accept, session, resource}
		good := s.Sign(r)
		if err := v.Verify(r, good); err != nil {
			t.Fatalf("own signature rejected: %v", err)
		}
		err := v.Verify(r, sig)
		if err == nil && !strings.EqualFold(sig, good) {
			t.Fatalf("foreign signature %q accepted (want %q)", sig, good)
		}
		if err != nil && !errors.Is(err, ErrMissingSignature) && !errors.Is(err, ErrMalformedSignature) && !errors.Is(err, ErrSignatureMismatch) {
			t.Fatalf("unexpected error %v", err)
		}
		_ = CheckContentMD5([]byte(resource), md5)
		_ = CheckDate(date, time.Unix(1382975431, 0), time.Minute)
	})
}

// FuzzResource checks that deriving a resource never panics and that, with
// a base path, a derived resource always starts with '/'.
func FuzzResource(f *testing.F) {
	f.Add("/{institution_id}", "/inst/accounts/1/transactions", "page=1")
	f.Add("/mdx/{id}", "/mdx", "")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, base, path, query string) {
		if got, err := FinalSegment().Resource(path, query); err != nil || !strings.HasPrefix(got, "/") {
			t.Fatalf("FinalSegment(%q) = %q, %v", path, got, err)
		}
		rr, err := PathAfter(base, true)
		if err != nil {
			return
		}
		got, err := rr.Resource(path, query)
		if err == nil && !strings.HasPrefix(got, "/") {
			t.Fatalf("PathAfter(%q).Resource(%q) = %q", base, path, got)
		}
	})
}
