package accept

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; what it accepts holds at most MaxRanges
// ranges, in lower case, with weights in range and no "*/x"; written back
// out, the ranges read the same; and an empty element more changes nothing.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "*/*", "application/json, text/plain, */*", "application/vnd.mx.api.v1+json",
		"text/*;q=0.5, application/json;charset=utf-8;q=1.000",
		`a/b; x="y, z; \"w\""; q=0.001`, "a/b;;q=0.;", ",,a/b,,", "*/json", "a/b;q=1.5",
		"text/plain;charset=\"a\\", "a/b c/d", "Application/JSON;Q=0.5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := Parse([]string{s})
		if err != nil {
			if !errors.Is(err, ErrMalformed) || rs != nil {
				t.Fatalf("Parse(%q) = %v, %v", s, rs, err)
			}
			return
		}
		if len(rs) > MaxRanges {
			t.Fatalf("Parse(%q): %d ranges", s, len(rs))
		}
		var b strings.Builder
		for i, r := range rs {
			if r.Type == "" || r.Subtype == "" || r.Type != strings.ToLower(r.Type) || r.Subtype != strings.ToLower(r.Subtype) ||
				(r.Type == "*" && r.Subtype != "*") || r.Q < 0 || r.Q > 1000 {
				t.Fatalf("Parse(%q): range %d is %+v", s, i, r)
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s/%s;q=%d.%03d", r.Type, r.Subtype, r.Q/1000, r.Q%1000)
		}
		again, err := Parse([]string{b.String()})
		if err != nil || fmt.Sprint(again) != fmt.Sprint(rs) {
			t.Fatalf("Parse(%q) = %v, written back as %q: %v, %v", s, rs, b.String(), again, err)
		}
		more, err := Parse([]string{s, ""})
		if err != nil || fmt.Sprint(more) != fmt.Sprint(rs) {
			t.Fatalf("Parse(%q) with an empty field line more: %v, %v", s, more, err)
		}
		if w := Weight(rs, "application", "json"); w < 0 || w > 1000 {
			t.Fatalf("Weight: %d", w)
		}
	})
}
