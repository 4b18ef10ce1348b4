package sanitize

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// guards caches the guards Process builds, by their options: the
// configurations of a running gateway are few.
var guards sync.Map // string -> *Guard

// Process is the package's entry point from before Guard, kept only so
// that the Caddy glue of that time still builds; it goes when the glue
// moves to Guard.
//
// With opts.Mask it is Guard.Mask; without, it copies src to dst
// unchanged while Guard.Inspect reads it. opts.Fields keeps its old
// meaning, the children of <account> to inspect: id and name are
// inspected as they always are, other names anywhere.
//
// Deprecated: use New, then Guard.Mask or Guard.Inspect.
func Process(dst io.Writer, src io.Reader, opts Options) ([]Finding, error) {
	var fields []string
	for _, f := range opts.Fields {
		if !slices.Contains(accountFields, strings.ToLower(f)) {
			fields = append(fields, f)
		}
	}
	key := fmt.Sprint(fields, opts.MaxField, opts.AllowMalformed)
	v, ok := guards.Load(key)
	if !ok {
		g, err := New(Options{Fields: fields, MaxField: opts.MaxField, AllowMalformed: opts.AllowMalformed})
		if err != nil {
			return nil, err
		}
		v, _ = guards.LoadOrStore(key, g)
	}
	g := v.(*Guard)
	var r Report
	var err error
	if opts.Mask {
		r, err = g.Mask(dst, src, Identity)
	} else {
		r, err = g.Inspect(io.TeeReader(src, dst), Identity)
	}
	return r.Findings, err
}
