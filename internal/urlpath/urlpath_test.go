package urlpath

import (
	"errors"
	"math/rand/v2"
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	ok := []string{
		"/",
		"/inst1/accounts",
		"/inst1/accounts/acct-7/transactions",
		"/fdx/v6/core/accounts/a1",
		"/a/b.c/d..e/...",
		"/a/%20b/%C3%A9/%2C%3A%40%21",
		"/a:b@c/!$&'()*+,=",
		"/~user/x_y-z",
	}
	for _, p := range ok {
		if err := Check(p); err != nil {
			t.Errorf("Check(%q) = %v", p, err)
		}
	}
	bad := map[string]Reason{
		"":                       NotAPath,
		"*":                      NotAPath,
		"inst1/accounts":         NotAPath,
		"//inst1/accounts":       EmptySegment,
		"/inst1//accounts":       EmptySegment,
		"/inst1/accounts/":       TrailingSlash,
		"/inst1/./accounts":      DotSegment,
		"/inst1/../accounts":     DotSegment,
		"/inst1/accounts/.":      DotSegment,
		"/inst1/accounts/..":     DotSegment,
		"/inst1/%2e/accounts":    DotSegment,
		"/inst1/%2E%2e/accounts": DotSegment,
		"/inst1/.%2e/accounts":   DotSegment,
		"/inst1/a%2eb/accounts":  NeedlessEncoding,
		"/inst1/x%2faccounts":    EncodedSeparator,
		"/inst1/x%2Faccounts":    EncodedSeparator,
		"/inst1/x%252faccounts":  EncodedSeparator,
		"/inst1/x%3faccounts":    EncodedSeparator,
		"/inst1/x%23accounts":    EncodedSeparator,
		"/inst1/x%5caccounts":    Backslash,
		"/inst1/accounts\\x":     Backslash,
		"/inst1\\..\\admin":      Backslash,
		"/inst1/accounts;x=1":    Parameter,
		"/inst1;/accounts":       Parameter,
		"/inst1/accounts%3bx":    Parameter,
		"/inst1/acc%00ounts":     ControlByte,
		"/inst1/acc\x00ounts":    ControlByte,
		"/inst1/acc\tounts":      ControlByte,
		"/inst1/acc%7founts":     ControlByte,
		"/inst1/acc\x7founts":    ControlByte,
		"/inst1/acc\xc3\xa9":     ControlByte,
		"/inst1/%61ccounts":      NeedlessEncoding,
		"/inst1/accounts%7e":     NeedlessEncoding,
		"/inst1/acc%zzounts":     BadEncoding,
		"/inst1/accounts%2":      BadEncoding,
		"/inst1/accounts%":       BadEncoding,
		"/inst1/admin#/accounts": BadCharacter,
		"/inst1/a b":             BadCharacter,
		"/inst1/a\"b":            BadCharacter,
		"/inst1/a{b}":            BadCharacter,
		"/inst1/a|b":             BadCharacter,
		"/inst1/[a]":             BadCharacter,
	}
	for p, want := range bad {
		err := Check(p)
		var e *Error
		if !errors.As(err, &e) || e.Reason != want || !errors.Is(err, ErrNotCanonical) {
			t.Errorf("Check(%q) = %v, want %s", p, err, want)
		}
	}
}

func TestCheckAllocates(t *testing.T) {
	for _, p := range []string{"/inst1/accounts/7/transactions", "/inst1/%2e%2e/accounts"} {
		if n := testing.AllocsPerRun(100, func() { _ = Check(p) }); n != 0 {
			t.Errorf("Check(%q) allocates %v times", p, n)
		}
	}
}

func TestFromRequestURI(t *testing.T) {
	for target, want := range map[string]string{
		"/inst1/accounts":                    "/inst1/accounts",
		"/inst1/accounts?page=2":             "/inst1/accounts",
		"/inst1/acc%2Founts?x=/../":          "/inst1/acc%2Founts",
		"http://mdx.bank.example/a/b?c":      "/a/b",
		"https://mdx.bank.example:8443/a/..": "/a/..",
		"/":                                  "/",
	} {
		if got, ok := FromRequestURI(target); !ok || got != want {
			t.Errorf("FromRequestURI(%q) = %q, %v; want %q", target, got, ok, want)
		}
	}
	for _, target := range []string{"*", "mdx.bank.example:443", "http://h", "http://h?x", "", "://x/y"} {
		if got, ok := FromRequestURI(target); ok {
			t.Errorf("FromRequestURI(%q) = %q, want none", target, got)
		}
	}
}

// reference is a slow, independent statement of the rule: split, decode
// each segment with net/url, and look at what it decodes to.
func reference(p string) bool {
	if p == "/" {
		return true
	}
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			allowed := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
				strings.IndexByte("-._~!$&'()*+,=:@%", c) >= 0
			if !allowed {
				return false
			}
			if c == '%' && i+2 < len(seg) {
				if d, err := url.PathUnescape(seg[i : i+3]); err == nil && len(d) == 1 {
					b := d[0]
					if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("-._~", b) >= 0 {
						return false // needless encoding
					}
				}
			}
		}
		dec, err := url.PathUnescape(seg)
		if err != nil || dec == "." || dec == ".." {
			return false
		}
		for i := 0; i < len(dec); i++ {
			b := dec[i]
			if b < 0x20 || b == 0x7f || strings.IndexByte("/\\;%?#", b) >= 0 {
				return false
			}
		}
	}
	return true
}

func TestCheckAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"/", ".", "%2e", "%2E", "%2f", "%5c", "%3b", "%25", "%20", "%41", "%c3", "%zz", "%", "a", "Z", "0",
		"\\", ";", "#", " ", "\x00", "\x7f", "\xc3", "~", "-", "_", ":", "@", "!", "?", "%7f", "%00", "%3F"}
	for range 200_000 {
		var sb strings.Builder
		if rng.IntN(10) != 0 {
			sb.WriteByte('/')
		}
		for n := rng.IntN(8); n > 0; n-- {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		p := sb.String()
		if got, want := Check(p) == nil, reference(p); got != want {
			t.Fatalf("Check(%q) accepts: %v, reference: %v (%v)", p, got, want, Check(p))
		}
	}
}

// FuzzCanonicalPath: Check never panics, agrees with the reference, and a
// path it accepts decodes to one that path.Clean leaves alone, with as
// many separators as it was sent with and no backslash or parameter.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "/inst1/accounts", "/inst1/%2e%2e/accounts", "/inst1/x%2faccounts", "/a/./b", "/a;b", "/a\\b", "//a", "/a/", "/%C3%A9", "/a%2", "/..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := Check(p)
		if (err == nil) != reference(p) {
			t.Fatalf("Check(%q) = %v; reference disagrees", p, err)
		}
		if err != nil {
			if !errors.Is(err, ErrNotCanonical) {
				t.Fatalf("Check(%q): %v does not match ErrNotCanonical", p, err)
			}
			return
		}
		d, uerr := url.PathUnescape(p)
		switch {
		case uerr != nil:
			t.Fatalf("accepted %q does not decode: %v", p, uerr)
		case path.Clean(d) != d:
			t.Fatalf("accepted %q decodes to %q, which cleaning changes", p, d)
		case strings.Count(d, "/") != strings.Count(p, "/"):
			t.Fatalf("accepted %q hides a separator", p)
		case strings.ContainsAny(d, "\\;%"):
			t.Fatalf("accepted %q decodes to %q", p, d)
		}
	})
}
