//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestTrustedPeer: a socket's listener is trusted when it runs as the
// client's user or root; root trusts another user's only at an address
// given on the command line, in a directory that user holds alone.
func TestTrustedPeer(t *testing.T) {
	const me, other = 1000, 1001
	sock := "/run/x/admin.sock"
	for _, c := range []struct {
		name           string
		uid, euid      int
		given          bool
		ok             bool
		wantInTheError string
	}{
		{"mine", me, me, false, true, ""},
		{"root's", 0, me, false, true, ""},
		{"root's, as root", 0, 0, false, true, ""},
		{"another user's", other, me, false, false, "uid 1001, neither this user's (uid 1000) nor root's"},
		{"another user's, given", other, me, true, false, "nothing was sent"},
		{"another user's, as root, not given", other, 0, false, false, "only with --address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := trustedPeer(sock, c.uid, c.euid, c.given)
			if c.ok != (err == nil) {
				t.Fatalf("trustedPeer = %v, want ok %v", err, c.ok)
			}
			if err != nil && (!strings.Contains(err.Error(), c.wantInTheError) || !strings.Contains(err.Error(), sock)) {
				t.Fatalf("the error does not say %q and name the socket: %v", c.wantInTheError, err)
			}
		})
	}
	if os.Geteuid() != 0 {
		return
	}
	// as root, --address: the directory vouches, or not
	held := filepath.Join(t.TempDir(), "held")
	open := filepath.Join(t.TempDir(), "open")
	for dir, mode := range map[string]os.FileMode{held: 0o750, open: 0o777} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(os.Chown(dir, other, other), os.Chmod(dir, mode)); err != nil {
			t.Fatal(err)
		}
	}
	if err := trustedPeer(filepath.Join(held, "admin.sock"), other, 0, true); err != nil {
		t.Errorf("root, --address in the gateway user's own directory: %v", err)
	}
	for name, path := range map[string]string{
		"a directory others may write to": filepath.Join(open, "admin.sock"),
		"a directory of another user":     filepath.Join(held, "admin.sock"),
		"an abstract socket":              "@mxgate-admin",
	} {
		uid := other
		if name == "a directory of another user" {
			uid = other + 1
		}
		if err := trustedPeer(path, uid, 0, true); err == nil {
			t.Errorf("root, --address in %s: trusted", name)
		}
	}
}

// listenCounting listens at path and counts the bytes it receives; it
// answers every connection with 200.
func listenCounting(t *testing.T, path string) *atomic.Int64 {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var got atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				n, _ := c.Read(buf)
				got.Add(int64(n))
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	return &got
}

// TestDialAdminSocketDefaultDirectory: mxgate's default socket is sought
// only in a directory private to the user; elsewhere nothing is sent.
func TestDialAdminSocketDefaultDirectory(t *testing.T) {
	uid := os.Geteuid()
	base := t.TempDir()
	dir := filepath.Join(base, fmt.Sprintf("mxgate-%d", uid))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	def := adminDefault{dir: dir, private: true}
	sock := filepath.Join(dir, adminSocket)
	got := listenCounting(t, sock)

	c, err := dialAdminSocket(sock, uid, false, def)
	if err != nil {
		t.Fatalf("the user's private directory: %v", err)
	}
	if err := sendOn(c, http.MethodPost, "/stop", nil, nil); err != nil {
		t.Fatalf("sendOn: %v", err)
	}
	c.Close()
	if got.Load() == 0 {
		t.Fatal("the request did not arrive")
	}
	got.Store(0)

	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = dialAdminSocket(sock, uid, false, def)
	var unreached *unreachableError
	if err == nil || errors.As(err, &unreached) || !strings.Contains(err.Error(), "not this user's private directory") {
		t.Fatalf("a default directory open to others: %v", err)
	}
	// the same socket, named by --address or a configuration's admin
	// option that is not the default, is judged by its listener
	if c, err := dialAdminSocket(sock, uid, true, adminDefault{}); err != nil {
		t.Fatalf("not the default: %v", err)
	} else {
		c.Close()
	}
	if n := got.Load(); n != 0 {
		t.Fatalf("%d bytes reached the socket", n)
	}

	_, err = dialAdminSocket(filepath.Join(base, "none", adminSocket), uid, false, adminDefault{dir: filepath.Join(base, "none"), private: true})
	if !errors.As(err, &unreached) {
		t.Fatalf("a default directory that does not exist: %v, want unreachable", err)
	}
}
