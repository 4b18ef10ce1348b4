package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/secrethash"
)

func TestHashSecret(t *testing.T) {
	const secret = "mxk_7Qp2ZfV9rT4sLw8yBn3HdK6cJx1A"
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("  "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := readSecret(file, os.Stdin, nil)
	if err != nil || string(raw) != secret {
		t.Fatalf("read %d bytes, %v", len(raw), err)
	}
	out, err := hashSecret(raw)
	if err != nil {
		t.Fatal(err)
	}
	h, err := secrethash.Parse(out)
	if err != nil || !h.Verify([]byte(secret)) || strings.Contains(out, secret) {
		t.Fatalf("the printed hash %q does not verify the secret (%v)", out, err)
	}

	// standard input, when it is not a terminal
	stdin := filepath.Join(dir, "stdin")
	_ = os.WriteFile(stdin, []byte(secret+"\r\n"), 0o600)
	f, _ := os.Open(stdin)
	defer f.Close()
	if raw, err := readSecret("-", f, nil); err != nil || string(raw) != secret {
		t.Fatalf("stdin: %d bytes, %v", len(raw), err)
	}

	for _, weak := range []string{"", "hunter2", "API-KEY-4567", "correcthorse"} {
		_, err := hashSecret([]byte(weak))
		if err == nil {
			t.Errorf("%q was hashed", weak)
			continue
		}
		if weak != "" && strings.Contains(err.Error(), weak) {
			t.Errorf("the refusal echoes the secret: %v", err)
		}
	}
	big := filepath.Join(dir, "big")
	_ = os.WriteFile(big, make([]byte, maxSecret+1), 0o600)
	if _, err := readSecret(big, os.Stdin, nil); err == nil {
		t.Error("an input over the bound was read")
	}
}
