package accept

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want []Range
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{" , ,\t"}, nil},
		{[]string{"*/*"}, []Range{{"*", "*", 1000}}},
		// axios's default, which MX's Node SDK sends
		{[]string{"application/json, text/plain, */*"}, []Range{{"application", "json", 1000}, {"text", "plain", 1000}, {"*", "*", 1000}}},
		{[]string{"Application/JSON;Q=0.5"}, []Range{{"application", "json", 500}}},
		{[]string{"application/vnd.mx.api.v1+json"}, []Range{{"application", "vnd.mx.api.v1+json", 1000}}},
		{[]string{"application/vnd.mx.api.v1+json; q=1"}, []Range{{"application", "vnd.mx.api.v1+json", 1000}}},
		{[]string{"text/*;q=0, image/png ; q=0.001"}, []Range{{"text", "*", 0}, {"image", "png", 1}}},
		{[]string{"a/b;q=1.000", "c/d;q=0.", "e/f;q=1."}, []Range{{"a", "b", 1000}, {"c", "d", 0}, {"e", "f", 1000}}},
		// parameters: token or quoted-string, commas and semicolons inside quotes
		{[]string{`text/plain; charset=utf-8; format="a, b; c=\"d\""; q=0.3, a/b`}, []Range{{"text", "plain", 300}, {"a", "b", 1000}}},
		{[]string{"a/b;;q=0.2;", "c/d ;\t; x=y"}, []Range{{"a", "b", 200}, {"c", "d", 1000}}},
		{[]string{"a/b;x=1;q=0.4;ext=2"}, []Range{{"a", "b", 400}}},
		// empty elements between and around ranges
		{[]string{",a/b,,  ,c/d,"}, []Range{{"a", "b", 1000}, {"c", "d", 1000}}},
		{[]string{"a/b", "", "c/d"}, []Range{{"a", "b", 1000}, {"c", "d", 1000}}},
	} {
		got, err := Parse(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	for _, in := range []string{
		"json",
		"application",
		"application/",
		"/json",
		"*/json",
		"*",
		"text/plain/x",
		"text /plain",
		"text/ plain",
		"text/plain x",
		"text/plain;q",
		"text/plain;q=",
		"text/plain;q=2",
		"text/plain;q=1.5",
		"text/plain;q=1.001",
		"text/plain;q=0.1234",
		"text/plain;q=.5",
		"text/plain;q=-0",
		"text/plain;q=0.5x",
		`text/plain;q="0.5"`,
		"text/plain;q=0.5;q=0.5",
		"text/plain;Q=1;q=1",
		"text/plain;charset",
		"text/plain;charset=",
		"text/plain;=utf-8",
		`text/plain;charset="utf-8`,
		`text/plain;charset="a\`,
		"text/plain;charset=\"a\x01\"",
		"text/plain;charset=\"a\\\x7f\"",
		"text/plain;charset=a b",
		"text/pl\x00ain",
		"text/plain\r\n",
		"text/plain,\x80/x",
		"täxt/plain",
		"text/plain;x=1 2",
		"a/b c/d",
		"a/b; ,c/d;q=x",
		"(comment)/x",
	} {
		if got, err := Parse([]string{in}); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) = %v, %v; want ErrMalformed", in, got, err)
		}
	}
	// one bad field spoils the header
	if _, err := Parse([]string{"a/b", "c"}); !errors.Is(err, ErrMalformed) {
		t.Errorf("a malformed second field line passed: %v", err)
	}
}

func TestParseBounded(t *testing.T) {
	many := strings.TrimSuffix(strings.Repeat("a/b,", MaxRanges), ",")
	if got, err := Parse([]string{many}); err != nil || len(got) != MaxRanges {
		t.Fatalf("%d ranges: %d, %v", MaxRanges, len(got), err)
	}
	if _, err := Parse([]string{many + ",c/d"}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("%d ranges: %v", MaxRanges+1, err)
	}
	// over several field lines alike; empty elements do not count
	if _, err := Parse([]string{many, "c/d"}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("%d ranges over two lines: %v", MaxRanges+1, err)
	}
	if got, err := Parse([]string{strings.Repeat(",", 10000) + many}); err != nil || len(got) != MaxRanges {
		t.Fatalf("empty elements counted: %d, %v", len(got), err)
	}
}

func TestWeight(t *testing.T) {
	for _, c := range []struct {
		header string
		want   int
	}{
		{"", 0},
		{"*/*", 1000},
		{"application/*;q=0.4", 400},
		{"application/json;q=0.2", 200},
		{"application/json, text/plain, */*", 1000},
		{"text/plain", 0},
		{"text/*, image/*", 0},
		{"application/xml", 0},
		{"application/problem+json", 0},
		{"application/vnd.mx.api.v1+json", 0},
		// the most specific range wins, whatever comes first
		{"*/*;q=1, application/json;q=0", 0},
		{"application/json;q=0, */*", 0},
		{"application/*;q=0, */*", 0},
		{"application/*;q=0, application/json;q=0.1", 100},
		{"*/*;q=0, application/*;q=0.5", 500},
		// among equally specific ones, the highest
		{"application/json;charset=utf-8;q=0, application/json;q=0.7", 700},
		{"application/json;q=0.7, application/json;q=0", 700},
	} {
		rs, err := Parse([]string{c.header})
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.header, err)
		}
		if got := Weight(rs, "application", "json"); got != c.want {
			t.Errorf("Weight(%q, application/json) = %d, want %d", c.header, got, c.want)
		}
	}
}

func TestQvalue(t *testing.T) {
	// every qvalue the grammar allows, against its value
	for n := 0; n <= 1000; n++ {
		s := fmt.Sprintf("%d.%03d", n/1000, n%1000)
		for len(s) > 1 && (strings.HasSuffix(s, "0") && strings.Contains(s, ".")) {
			if q, ok := qvalue(s); !ok || q != n {
				t.Fatalf("qvalue(%q) = %d, %v; want %d", s, q, ok, n)
			}
			s = s[:len(s)-1]
		}
		if q, ok := qvalue(s); !ok || q != n {
			t.Fatalf("qvalue(%q) = %d, %v; want %d", s, q, ok, n)
		}
	}
}
