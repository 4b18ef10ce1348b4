package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// The load generator speaks HTTP/1.1 itself: each request is written as
// pre-built bytes in one write, and the answer is read by the minimal
// parser below (status line; Content-Length, Transfer-Encoding and
// Connection; the body discarded). net/http's client costs several
// microseconds of CPU per request in allocation and bookkeeping, which on
// a 2-core machine shared with the gateways would make the client the
// bottleneck at the upstream's 100k requests a second. One request is in
// flight per connection (no pipelining), as with wrk.

var errMalformed = errors.New("malformed response")

// conn is one client connection.
type conn struct {
	nc net.Conn
	br *bufio.Reader
}

func dial(addr string, timeout time.Duration) (*conn, error) {
	return dialBy(addr, time.Now().Add(timeout))
}

// dialError is a failure to connect, told apart from a connection that
// failed later.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dialBy connects to addr, giving up at deadline (at once if it has
// passed).
func dialBy(addr string, deadline time.Time) (*conn, error) {
	if !time.Now().Before(deadline) {
		return nil, &dialError{errDeadline}
	}
	d := net.Dialer{Deadline: deadline}
	nc, err := d.Dial("tcp", addr)
	if err == nil {
		nc, err = handshake(nc, addr, deadline) // a TLS target's, or nc itself
	}
	if err != nil {
		noteDialError(err)
		return nil, &dialError{err}
	}
	return &conn{nc: nc, br: newReader(nc)}, nil
}

var errDeadline = errors.New("deadline passed before the request could be sent")

// dialErrors keeps the first few distinct dial errors, to tell a target
// that refuses connections from a client out of ports or descriptors.
var dialErrors struct {
	sync.Mutex
	seen map[string]int
}

func noteDialError(err error) {
	dialErrors.Lock()
	defer dialErrors.Unlock()
	if dialErrors.seen == nil {
		dialErrors.seen = map[string]int{}
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:] // drop the addresses, keep the cause
	}
	if _, ok := dialErrors.seen[msg]; ok || len(dialErrors.seen) < 20 {
		dialErrors.seen[msg]++
	}
}

// takeDialErrors returns and forgets the dial errors seen so far.
func takeDialErrors() map[string]int {
	dialErrors.Lock()
	defer dialErrors.Unlock()
	m := dialErrors.seen
	dialErrors.seen = nil
	return m
}

// newReader buffers a connection's answers; 4 KiB holds any status line
// or header line the targets send, and keeps a storm's thousands of
// connections cheap.
func newReader(nc net.Conn) *bufio.Reader { return bufio.NewReaderSize(nc, 4<<10) }

func (c *conn) close() { c.nc.Close() }

// roundTrip sends req and reads the answer. keep reports whether the
// connection may carry another request. If body is not nil, the answer's
// body is appended to it.
func (c *conn) roundTrip(req []byte, body *[]byte) (status int, keep bool, err error) {
	if _, err := c.nc.Write(req); err != nil {
		return 0, false, err
	}
	return readResponse(c.br, body)
}

var (
	hContentLength    = []byte("content-length")
	hTransferEncoding = []byte("transfer-encoding")
	hConnection       = []byte("connection")
)

// readResponse reads one HTTP/1.x response from br. Interim (1xx)
// responses are skipped.
func readResponse(br *bufio.Reader, body *[]byte) (status int, keep bool, err error) {
	for {
		status, keep, err = readOne(br, body)
		if err != nil || status >= 200 {
			return status, keep, err
		}
	}
}

func readOne(br *bufio.Reader, body *[]byte) (status int, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, errMalformed
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return 0, false, errMalformed
		}
		status = status*10 + int(d-'0')
	}
	keep = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, false, errMalformed
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, hContentLength):
			n, ok := parseUint(value, 10)
			if !ok {
				return 0, false, errMalformed
			}
			length = n
		case bytes.EqualFold(name, hTransferEncoding):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, hConnection):
			switch {
			case bytes.EqualFold(value, []byte("close")):
				keep = false
			case bytes.EqualFold(value, []byte("keep-alive")):
				keep = true
			}
		}
	}
	switch {
	case status < 200 || status == 204 || status == 304:
		return status, keep, nil
	case chunked:
		return status, keep, readChunked(br, body)
	case length >= 0:
		return status, keep, readN(br, length, body)
	default: // the body runs to the end of the connection
		err := readN(br, -1, body)
		return status, false, err
	}
}

// readN reads n bytes of body, or up to EOF if n < 0.
func readN(br *bufio.Reader, n int64, body *[]byte) error {
	if body == nil {
		if n < 0 {
			_, err := io.Copy(io.Discard, br)
			return err
		}
		_, err := br.Discard(int(n))
		return err
	}
	var r io.Reader = br
	if n >= 0 {
		r = io.LimitReader(br, n)
	}
	var buf bytes.Buffer
	got, err := buf.ReadFrom(r)
	*body = append(*body, buf.Bytes()...)
	if err == nil && n >= 0 && got < n {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func readChunked(br *bufio.Reader, body *[]byte) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimSpace(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, ok := parseUint(line, 16)
		if !ok {
			return errMalformed
		}
		if size == 0 { // trailers, then an empty line
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimSpace(line)) == 0 {
					return nil
				}
			}
		}
		if err := readN(br, size, body); err != nil {
			return err
		}
		if line, err := br.ReadSlice('\n'); err != nil {
			return err
		} else if len(bytes.TrimSpace(line)) != 0 {
			return errMalformed
		}
	}
}

func parseUint(b []byte, base int64) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		var d int64
		switch {
		case c >= '0' && c <= '9':
			d = int64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = int64(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = int64(c-'A') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}
