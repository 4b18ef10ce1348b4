package servername

import (
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, c := range []struct {
		name string
		want error
	}{
		{"", nil},
		{"fdx.bank.example", nil},
		{"FDX.Bank.Example", nil},
		{"localhost", nil},
		{"xn--ban-0k1a.example", nil}, // an IDNA form is ASCII: it is its own name
		{"_acme.a-b.example", nil},
		{"127.0.0.1", nil},
		{long + "." + long + "." + long + "." + strings.Repeat("a", 61), nil}, // 253
		{long + "." + long + "." + long + "." + strings.Repeat("a", 62), ErrMalformed},
		{long + "a.example", ErrMalformed},
		{"fdx.ban\u212a.example", ErrNotASCII},  // KELVIN SIGN
		{"fdx\u017f.bank.example", ErrNotASCII}, // LATIN SMALL LETTER LONG S
		{"fdx.bank.example\u3002", ErrNotASCII}, // IDEOGRAPHIC FULL STOP
		{"fdx.bank.example\xff", ErrNotASCII},   // not even UTF-8
		{"fdx.bank.example.", ErrMalformed},
		{".fdx.bank.example", ErrMalformed},
		{"fdx..bank.example", ErrMalformed},
		{".", ErrMalformed},
		{" fdx.bank.example", ErrMalformed}, // certificate lookup trims spaces
		{"fdx.bank.example ", ErrMalformed},
		{"fdx.bank.example\x00.evil", ErrMalformed},
		{"fdx.bank.example:443", ErrMalformed},
		{"*.bank.example", ErrMalformed},
		{"[::1]", ErrMalformed},
		{"fdx.bank.example%00", ErrMalformed},
		{"fdx/bank", ErrMalformed},
	} {
		if got := Check(c.name); got != c.want {
			t.Errorf("Check(%q) = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestMatchHost(t *testing.T) {
	for _, c := range []struct {
		sni, host string
		want      error
	}{
		{"fdx.bank.example", "fdx.bank.example", nil},
		{"fdx.bank.example", "fdx.bank.example:443", nil},
		{"fdx.bank.example", "FDX.BANK.EXAMPLE:8443", nil},
		{"FDX.bank.example", "fdx.Bank.example", nil},
		{"fdx.bank.example", "fdx.bank.example:", nil}, // an empty port, as RFC 3986 allows
		{"127.0.0.1", "127.0.0.1:443", nil},
		{"", "fdx.bank.example", ErrNoServerName},
		{"", "127.0.0.1", ErrNoServerName},
		{"fdx.bank.example", "fdx.bank.example.", ErrHostMismatch},
		{"fdx.bank.example", "fdx.bank.example.:443", ErrHostMismatch},
		{"fdx.bank.example", "other.bank.example", ErrHostMismatch},
		{"fdx.bank.example", "fdx.bank.example.evil", ErrHostMismatch},
		{"fdx.bank.example", "xn--fdx-bank.example", ErrHostMismatch},
		{"fdx.bank.example", "[::1]:443", ErrHostMismatch},
		{"fdx.ban\u212a.example", "fdx.bank.example", ErrNotASCII}, // strings.EqualFold says equal
		{"fdx\u017f.bank.example", "fdxs.bank.example", ErrNotASCII},
		{"fdx.bank.example", "fdx.ban\u212a.example", ErrNotASCII},
		{"fdx.bank.example.", "fdx.bank.example.", ErrMalformed},
		{" fdx.bank.example", "fdx.bank.example", ErrMalformed},
		{"fdx.bank.example", "", ErrMalformed},
		{"fdx.bank.example", ":443", ErrMalformed},
		{"fdx.bank.example", "fdx.bank.example:https", ErrMalformed},
		{"fdx.bank.example", "fdx.bank.example:443:443", ErrMalformed},
		{"fdx.bank.example", "[::1", ErrMalformed},
		{"fdx.bank.example", "[::1]x", ErrMalformed},
		{"fdx.bank.example", "[]", ErrMalformed},
		{"fdx.bank.example", "[fdx.bank.example]", ErrMalformed},
		{"fdx.bank.example", "[fdx.bank.example]:443", ErrMalformed},
		{"fdx.bank.example", "::1", ErrMalformed},
	} {
		if got := MatchHost(c.sni, c.host); got != c.want {
			t.Errorf("MatchHost(%q, %q) = %v, want %v", c.sni, c.host, got, c.want)
		}
	}
}

// refName is Check written another way: a regular expression over the
// whole name.
var refName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*$`)

func refCheck(name string) bool {
	return name == "" || len(name) <= MaxLen && refName.MatchString(name)
}

// refMatch is MatchHost written another way: net.SplitHostPort and
// strings.ToLower over names the reference has checked are ASCII.
func refMatch(sni, host string) bool {
	if sni == "" || !refCheck(sni) || strings.HasPrefix(host, "[") { // a server name is never an IPv6 literal
		return false
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		if strings.Contains(host, ":") || strings.ContainsAny(host, "[]") {
			return false
		}
		h, port = host, ""
	}
	if strings.Trim(port, "0123456789") != "" || strings.ContainsAny(h, "[]:") {
		return false
	}
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			return false
		}
	}
	//lint:ignore SA6005 the reference lower-cases, as certificate lookup does; EqualFold is what the package replaces
	return strings.ToLower(sni) == strings.ToLower(h)
}

// TestAgainstReference compares Check and MatchHost with the references
// on names built from the characters that matter.
func TestAgainstReference(t *testing.T) {
	alphabet := []string{"a", "K", "k", "\u212a", "s", "\u017f", ".", "-", "_", " ", ":", "4", "[", "]", "\x00", "\xff"}
	var names []string
	var build func(prefix string, n int)
	build = func(prefix string, n int) {
		names = append(names, prefix)
		if n == 0 {
			return
		}
		for _, a := range alphabet {
			build(prefix+a, n-1)
		}
	}
	build("", 3)
	for _, n := range names {
		if got, want := Check(n) == nil, refCheck(n); got != want {
			t.Fatalf("Check(%q) admits %v, reference %v", n, got, want)
		}
	}
	for _, sni := range []string{"", "k", "K", "a.k", "\u212a", "s", "\u017f", "a.b"} {
		for _, h := range names {
			if got, want := MatchHost(sni, h) == nil, refMatch(sni, h); got != want {
				t.Fatalf("MatchHost(%q, %q) admits %v, reference %v", sni, h, got, want)
			}
		}
	}
}

func TestErrorsDoNotQuoteTheName(t *testing.T) {
	for _, err := range []error{Check("evil\u212a"), Check("evil name"), MatchHost("evil", "other"), MatchHost("", "evil")} {
		if err == nil || strings.Contains(err.Error(), "evil") {
			t.Errorf("error %v", err)
		}
		if !errors.Is(err, err) {
			t.Error("not a sentinel")
		}
	}
}

func BenchmarkMatchHost(b *testing.B) {
	for b.Loop() {
		_ = MatchHost("fdx.bank.example", "fdx.bank.example:443")
	}
}
