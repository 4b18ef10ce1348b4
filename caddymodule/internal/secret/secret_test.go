package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	t.Setenv("MXGATE_GATE_SECRET", "  s3cret-value\n")
	t.Setenv("MXGATE_GATE_EMPTY", "")
	t.Setenv("MXGATE_GATE_BRACES", "pa{s}s-w0rd{")
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte("file-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for raw, want := range map[string]string{
		"{env.MXGATE_GATE_SECRET}":     "s3cret-value",
		"{file." + file + "}":          "file-s3cret",
		"literal-value":                "literal-value",
		"pre-{env.MXGATE_GATE_SECRET}": "pre-  s3cret-value",
		"{env.MXGATE_GATE_BRACES}":     "pa{s}s-w0rd{", // a value's braces are its own
	} {
		if got, err := Read(raw); err != nil || got != want {
			t.Errorf("Read(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for raw, want := range map[string]error{
		"":                          ErrEmpty,
		"   ":                       ErrEmpty,
		"{env.MXGATE_GATE_EMPTY}":   ErrEmpty,
		"{env.MXGATE_GATE_NOT_SET}": ErrEmpty,
		"{vars.user}":               ErrUnresolved,
		"x{http.request.uri}y":      ErrUnresolved,
		"{env.MXGATE_GATE_SECRET":   ErrUnresolved, // mistyped
		"pass}word":                 ErrUnresolved,
		"a{}b":                      ErrUnresolved,
		"{env.MXGATE_GATE_EMPTY}{":  ErrUnresolved,
	} {
		got, err := Read(raw)
		if err != want || got != "" {
			t.Errorf("Read(%q) = %q, %v; want %v", raw, got, err, want)
		}
	}
	for _, err := range []error{ErrEmpty, ErrUnresolved} {
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %q reveals the value", err)
		}
	}
}
