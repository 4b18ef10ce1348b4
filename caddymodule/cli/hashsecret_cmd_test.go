package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/pflag"

	"github.com/mxgate/mxgate/secrethash"
)

// TestHashSecretCommand runs the command on a secret in a file: what it
// prints is a hash the secret verifies against, and holds no secret.
func TestHashSecretCommand(t *testing.T) {
	secret := "mxk_7Qp2ZfV9rT4sLw8yBn3HdK6cJx1A"
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(path string) (string, int, error) {
		fs := pflag.NewFlagSet("hash-secret", pflag.ContinueOnError)
		fs.String("file", path, "")
		r, w, _ := os.Pipe()
		stdout := os.Stdout
		os.Stdout = w
		code, err := cmdHashSecret(caddycmd.Flags{FlagSet: fs})
		os.Stdout = stdout
		w.Close()
		out, _ := io.ReadAll(r)
		return strings.TrimSpace(string(out)), code, err
	}
	out, code, err := run(file)
	if err != nil || code != 0 {
		t.Fatalf("%d %v", code, err)
	}
	h, err := secrethash.Parse(out)
	if err != nil || !h.Verify([]byte(secret)) || h.Verify([]byte(secret+"x")) || strings.Contains(out, secret) {
		t.Fatalf("printed %q: %v", out, err)
	}
	weak := filepath.Join(t.TempDir(), "weak")
	_ = os.WriteFile(weak, []byte("password\n"), 0o600)
	if _, code, err := run(weak); err == nil || code == 0 {
		t.Fatal("a low-entropy secret was hashed")
	}
	if _, code, err := run(filepath.Join(t.TempDir(), "missing")); err == nil || code == 0 {
		t.Fatal("a missing file was taken")
	}
}
