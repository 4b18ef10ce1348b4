package sni

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
)

// memConn is a connection whose client sent data and then closed; what
// the server writes goes nowhere.
type memConn struct{ r *bytes.Reader }

func (c memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c memConn) Close() error                     { return nil }
func (c memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c memConn) SetDeadline(time.Time) error      { return nil }
func (c memConn) SetReadDeadline(time.Time) error  { return nil }
func (c memConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzReplay: whatever a client sends, the server reads exactly that, or
// nothing at all (the connection refused).
func FuzzReplay(f *testing.F) {
	f.Add(clientHello(f, "fdx.bank.example"), 512)
	f.Add(clientHello(f, "fdx.ban\u212a.example"), 7)
	f.Add(clientHello(f, ""), 1)
	f.Add([]byte("GET / HTTP/1.1\r\nHost: fdx.bank.example\r\n\r\n"), 4096)
	f.Add([]byte{22, 3, 1, 0, 8, 1, 0, 0, 4, 3, 3, 0, 0}, 3)
	f.Fuzz(func(t *testing.T, stream []byte, size int) {
		if size <= 0 || size > 1<<16 {
			size = 512
		}
		c := &conn{Conn: memConn{bytes.NewReader(stream)}, s: &ServerName{logger: zap.NewNop()}}
		var got []byte
		buf := make([]byte, size)
		for {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if errors.Is(err, errRefused) {
				if len(got) != 0 {
					t.Fatalf("refused after handing on %d bytes", len(got))
				}
				return
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
		}
		if !bytes.Equal(got, stream) {
			t.Fatalf("handed on %d bytes, not the %d sent", len(got), len(stream))
		}
	})
}
