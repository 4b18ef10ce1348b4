package redact

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// names is the set of sensitive header names. Immutable.
type names struct {
	list []string // lower case, _ as -
}

func newNames(extra []string) (*names, error) {
	n := &names{}
	for _, h := range append(append([]string(nil), DefaultHeaders...), extra...) {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, errors.New("an empty header name")
		}
		if !n.sensitive(h) {
			n.list = append(n.list, fold(h))
		}
	}
	return n, nil
}

func fold(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '_':
			return '-'
		case 'A' <= r && r <= 'Z':
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// sensitive reports whether key names a sensitive header: equal to one,
// ignoring ASCII case and taking _ for -. It allocates nothing.
func (n *names) sensitive(key string) bool {
	for _, name := range n.list {
		if len(key) != len(name) {
			continue
		}
		i := 0
		for ; i < len(key); i++ {
			c := key[i]
			switch {
			case c == '_':
				c = '-'
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			}
			if c != name[i] {
				break
			}
		}
		if i == len(key) {
			return true
		}
	}
	return false
}

// scrub returns v, or, when v could hold a sensitive key (a header map, a
// map, a struct, a slice of them), a copy with those values replaced.
// Values that JSON cannot represent are returned unchanged: the wrapped
// encoder fails on them as it would have.
func (n *names) scrub(v any) any {
	switch v := v.(type) {
	case nil, string, bool, int, int64, int32, uint, uint64, uint32, float64, float32, json.Number:
		return v
	case http.Header:
		return n.scrubHeader(v)
	case map[string][]string:
		return n.scrubHeader(v)
	case map[string]string:
		out := make(map[string]string, len(v))
		for k, val := range v {
			if n.sensitive(k) {
				val = Redacted
			}
			out[k] = val
		}
		return out
	}
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return v
	}
	return n.scrubTree(tree)
}

func (n *names) scrubHeader(h map[string][]string) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, vals := range h {
		if n.sensitive(k) {
			vals = []string{Redacted}
		}
		out[k] = vals
	}
	return out
}

func (n *names) scrubTree(t any) any {
	switch t := t.(type) {
	case map[string]any:
		for k, v := range t {
			if n.sensitive(k) {
				t[k] = Redacted
			} else {
				t[k] = n.scrubTree(v)
			}
		}
	case []any:
		for i, v := range t {
			t[i] = n.scrubTree(v)
		}
	}
	return t
}
