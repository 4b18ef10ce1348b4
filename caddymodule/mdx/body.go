package mdx

import (
	"crypto/md5"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/mxgate/mxgate/caddymodule/internal/bodies"
)

// A request body is held in blocks from a pool, taken as its bytes
// arrive: a client that declares a large body and sends little of it
// holds little memory, and bodies of signed requests re-use the blocks
// of earlier ones. A body declared no longer than smallBody gets a block
// of its own length instead.
const (
	blockSize = 16 << 10
	smallBody = 4 << 10
)

var blockPool = sync.Pool{New: func() any { return new([blockSize]byte) }}

// budget bounds the bytes of request bodies a handler holds at once,
// across all its requests. Reserved bytes are the declared length (or,
// for a body of unknown length, its blocks as they fill), from before the
// first byte is read until the handler returns. It is safe for
// concurrent use.
type budget struct {
	max  int64
	held atomic.Int64
}

// reserve takes n bytes, or reports false and takes nothing.
func (b *budget) reserve(n int64) bool {
	if b.held.Add(n) > b.max {
		b.held.Add(-n)
		return false
	}
	return true
}

func (b *budget) release(n int64) { b.held.Add(-n) }

// errBudget is readBody's error when the budget is spent.
var errBudget = errors.New("mdx: too many request bodies held at once")

// heldBody is a request body read whole into pooled blocks. Its blocks go
// back to the pool when both the handler and the body's reader are done
// with it (a proxy's transport may still be writing the body upstream
// after the handler has returned, so neither alone may free them).
type heldBody struct {
	blocks   [][]byte // each blockSize long but the last
	size     int64
	reserved int64 // bytes of the budget held for it
	refs     atomic.Int32
}

// readBody reads r's body whole, up to max bytes, into pooled blocks
// while hashing it with MD5. Its errors are bodies.ErrTooLarge,
// bodies.ErrUnreadable and errBudget; on error every block and every
// reserved byte is given back. The caller owns the result and calls done
// when its handler returns.
func readBody(r *http.Request, max int64, b *budget) (*heldBody, [md5.Size]byte, error) {
	var sum [md5.Size]byte
	h := &heldBody{}
	h.refs.Store(1)
	declared := r.ContentLength
	if declared > max {
		return nil, sum, bodies.ErrTooLarge
	}
	if declared > 0 {
		if !b.reserve(declared) {
			return nil, sum, errBudget
		}
		h.reserved = declared
	}
	hash := md5.New()
	fail := func(err error) (*heldBody, [md5.Size]byte, error) {
		h.free()
		b.release(h.reserved)
		return nil, sum, err
	}
	if r.Body != nil && r.Body != http.NoBody && declared != 0 {
		for {
			want := int64(blockSize)
			if declared > 0 {
				want = min(want, declared-h.size)
				if want == 0 {
					break
				}
			} else if h.size+want > max+1 {
				want = max + 1 - h.size // one byte past max tells a body too large
			}
			if declared < 0 { // unknown length: reserve as blocks fill
				if !b.reserve(want) {
					return fail(errBudget)
				}
				h.reserved += want
			}
			var blk []byte
			if declared > 0 && declared <= smallBody {
				blk = make([]byte, declared)
			} else {
				blk = blockPool.Get().(*[blockSize]byte)[:]
			}
			h.blocks = append(h.blocks, blk)
			n, err := readFull(r.Body, blk[:want])
			hash.Write(blk[:n])
			h.size += int64(n)
			if h.size > max {
				return fail(bodies.ErrTooLarge)
			}
			if err != nil {
				var mbe *http.MaxBytesError
				switch {
				case errors.As(err, &mbe):
					return fail(bodies.ErrTooLarge)
				case declared < 0 && err == io.EOF:
				default:
					return fail(bodies.ErrUnreadable)
				}
				break
			}
		}
	}
	if declared < 0 && h.size < h.reserved { // give back what the last block did not use
		b.release(h.reserved - h.size)
		h.reserved = h.size
	}
	hash.Sum(sum[:0])
	return h, sum, nil
}

// readFull reads into buf until it is full or src fails. Unlike
// io.ReadFull it reports io.EOF whenever src ended cleanly, however much
// it read, and passes src's other errors through: io.ErrUnexpectedEOF is
// then what net/http's body reader says of a chunked body cut short, never
// a clean end.
func readFull(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			if err == io.EOF && n == len(buf) {
				err = nil // full; the next read tells the end
			}
			return n, err
		}
	}
	return n, nil
}

// reader returns the body to hand on; it takes a reference that its Close
// gives back.
func (h *heldBody) reader() io.ReadCloser {
	if h.size == 0 {
		return http.NoBody
	}
	h.refs.Add(1)
	return &heldReader{h: h}
}

// done is the handler's end: the budget is given back, and the blocks
// too once the reader is closed.
func (h *heldBody) done(b *budget) {
	b.release(h.reserved)
	h.reserved = 0
	h.unref()
}

func (h *heldBody) unref() {
	if h.refs.Add(-1) == 0 {
		h.free()
	}
}

func (h *heldBody) free() {
	for i, blk := range h.blocks {
		if cap(blk) == blockSize {
			blockPool.Put((*[blockSize]byte)(blk[:blockSize]))
		}
		h.blocks[i] = nil
	}
	h.blocks = nil
}

// heldReader reads a heldBody. Read and Close may be called from
// different goroutines (a transport's writer and its caller); after
// Close, Read reports http.ErrBodyReadAfterClose and never touches the
// blocks, which may then be another request's.
type heldReader struct {
	mu     sync.Mutex
	h      *heldBody
	off    int64
	closed bool
}

func (r *heldReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	n := 0
	for n < len(p) && r.off < r.h.size {
		blk := r.h.blocks[r.off/blockSize]
		start := r.off % blockSize
		end := min(int64(blockSize), start+(r.h.size-r.off))
		c := copy(p[n:], blk[start:end])
		n += c
		r.off += int64(c)
	}
	if n == 0 && r.off >= r.h.size {
		return 0, io.EOF
	}
	return n, nil
}

func (r *heldReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.h.unref()
	}
	return nil
}
