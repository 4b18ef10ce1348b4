//go:build unix

package shed

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// pendingBufs are the buffers readPending reads into and drops.
var pendingBufs = sync.Pool{New: func() any { return new([shedDrainMax]byte) }}

// readPending reads and drops what the client of c has sent so far, up
// to shedDrainMax bytes, without waiting for more. more reports that
// there may be more than was read (the limit was reached, or c cannot
// be read without waiting).
func readPending(c net.Conn) (got int, more bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, true
	}
	buf := pendingBufs.Get().(*[shedDrainMax]byte)
	defer pendingBufs.Put(buf)
	more = true
	// The socket is non-blocking (Go's poller owns it): each read returns
	// at once, with EAGAIN when nothing is there.
	rerr := raw.Read(func(fd uintptr) bool {
		for got < len(buf) {
			n, err := syscall.Read(int(fd), buf[got:])
			switch {
			case n > 0:
				got += n
			case err == nil, errors.Is(err, syscall.EAGAIN):
				more = false // the end of the stream, or nothing more yet
				return true
			case errors.Is(err, syscall.EINTR):
			default:
				return true
			}
		}
		return true
	})
	if rerr != nil {
		more = true
	}
	return got, more
}
