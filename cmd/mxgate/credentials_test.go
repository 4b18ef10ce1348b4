package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/freeport"
)

// Two MDX HMAC keys (32 bytes each, base64), made for this test only.
const (
	testKeyA = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="
	testKeyB = "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dXY="
)

// TestCredentialsDirectoryPlaceholder starts mxgate as the systemd unit in
// deploy/systemd does, with $RUNTIME_DIRECTORY for the admin endpoint's
// socket: the MDX HMAC key is a file in $CREDENTIALS_DIRECTORY,
// which the Caddyfile reads as {file.{$CREDENTIALS_DIRECTORY}/mdx-hmac.key}.
// A request signed with that key passes, one signed with another key does
// not; after the file changes, `mxgate reload --force` (the unit's
// ExecReload) makes the new key the one that passes.
func TestCredentialsDirectoryPlaceholder(t *testing.T) {
	creds := t.TempDir()
	keyFile := filepath.Join(creds, "mdx-hmac.key")
	if err := os.WriteFile(keyFile, []byte(testKeyA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	caddyfile := filepath.Join(t.TempDir(), "Caddyfile")
	config := fmt.Sprintf(`{
	auto_https off
	persist_config off
}

http://127.0.0.1:%d {
	mdx_hmac verify {
		key {file.{$CREDENTIALS_DIRECTORY}/mdx-hmac.key}
	}
	respond "signed" 200
}
`, port)
	if err := os.WriteFile(caddyfile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	env := []string{
		"CREDENTIALS_DIRECTORY=" + creds, "RUNTIME_DIRECTORY=" + t.TempDir(),
		"XDG_DATA_HOME=" + state, "XDG_CONFIG_HOME=" + state, "HOME=" + state,
	}

	// The unit's ExecStart.
	ctx, cancel := context.WithCancel(context.Background())
	run := exec.CommandContext(ctx, binary, "run", "--config", caddyfile, "--adapter", "caddyfile")
	run.Env = append(os.Environ(), env...)
	logs := new(syncBuffer)
	run.Stderr = logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = run.Wait() })

	url := fmt.Sprintf("http://127.0.0.1:%d/inst1/accounts", port)
	signedGet := func(key string) int {
		t.Helper()
		out, errOut, status := mxgate(t, []string{"MDX_HMAC_KEY=" + key}, "mdx-sign", "--url", url)
		if status != 0 {
			t.Fatalf("mdx-sign: %s", errOut)
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			if name, value, ok := strings.Cut(sc.Text(), ": "); ok {
				req.Header.Set(name, value)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	deadline := time.Now().Add(15 * time.Second)
	for signedGet(testKeyA) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("mxgate did not accept a request signed with the credential's key:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := signedGet(testKeyB); got != http.StatusPreconditionFailed {
		t.Errorf("signed with another key: %d, want 412", got)
	}

	// Rotation: a new file, then the unit's ExecReload.
	if err := os.WriteFile(keyFile, []byte(testKeyB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, status := mxgate(t, env, "reload", "--config", caddyfile, "--adapter", "caddyfile", "--force"); status != 0 {
		t.Fatalf("reload exited %d: %s", status, errOut)
	}
	if got := signedGet(testKeyB); got != http.StatusOK {
		t.Errorf("after reload, signed with the new key: %d, want 200", got)
	}
	if got := signedGet(testKeyA); got != http.StatusPreconditionFailed {
		t.Errorf("after reload, signed with the old key: %d, want 412", got)
	}
	for _, key := range []string{testKeyA, testKeyB} {
		if strings.Contains(logs.String(), key) {
			t.Error("mxgate logged a key")
		}
	}
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
