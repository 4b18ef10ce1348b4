package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Class is a group of HTTP methods that share a budget.
type Class uint8

// The classes. MX's per-client limits are 2000 GET, 750 POST+PUT and 150
// DELETE requests per second.
const (
	Get    Class = iota // GET, HEAD
	Write               // POST, PUT, PATCH
	Delete              // DELETE
	Other               // every other method
	NumClasses
)

var classNames = [NumClasses]string{"get", "write", "delete", "other"}

// String returns the class's name: get, write, delete or other.
func (c Class) String() string {
	if c < NumClasses {
		return classNames[c]
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// ParseClass returns the class named s.
func ParseClass(s string) (Class, bool) {
	for i, n := range classNames {
		if n == s {
			return Class(i), true
		}
	}
	return 0, false
}

// ClassOf returns the class of an HTTP method, whatever its case: `get`
// and `Get` draw on the GET budget, since an upstream may treat them as
// GET even though methods are case-sensitive (RFC 9110, section 9.1).
// Case is folded in ASCII only (methods are ASCII tokens): POST spelt
// with a long s (U+017F) is not POST. Every other method, standard (OPTIONS,
// TRACE, CONNECT) or not, is Other.
func ClassOf(method string) Class {
	switch {
	case asciiFold(method, "GET"), asciiFold(method, "HEAD"):
		return Get
	case asciiFold(method, "POST"), asciiFold(method, "PUT"), asciiFold(method, "PATCH"):
		return Write
	case asciiFold(method, "DELETE"):
		return Delete
	}
	return Other
}

// asciiFold reports whether s is upper, an upper-case ASCII word, in any
// mix of ASCII case.
func asciiFold(s, upper string) bool {
	if len(s) != len(upper) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

// Standard reports whether method is one of the methods whose class is
// certain, spelt as RFC 9110 and RFC 5789 spell them: GET, HEAD, POST,
// PUT, PATCH, DELETE or OPTIONS. Any other spelling (`get`), TRACE,
// CONNECT and extension methods are not.
func Standard(method string) bool {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return true
	}
	return false
}

// Inf is the rate of an unlimited class.
var Inf = math.Inf(1)

// Limit is one class's budget: Rate tokens a second into a bucket of Burst.
// A Rate of Inf is unlimited. The zero Limit is invalid.
type Limit struct {
	Rate  float64 // tokens per second; > 0, or Inf
	Burst int     // bucket size; >= 1 unless unlimited
}

// Unlimited reports whether l admits everything.
func (l Limit) Unlimited() bool { return math.IsInf(l.Rate, 1) }

// Validate checks l.
func (l Limit) Validate() error {
	switch {
	case l.Unlimited():
		return nil
	case !(l.Rate > 0) || math.IsNaN(l.Rate):
		return errors.New("ratelimit: rate must be positive (or unlimited)")
	case l.Burst < 1:
		return errors.New("ratelimit: burst must be at least 1")
	}
	return nil
}

// ParseRate parses "<n>/s", "<n>/m" or "<n>/h" (n may be fractional) into
// tokens per second.
func ParseRate(s string) (float64, error) {
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("ratelimit: rate %q: want <n>/s, <n>/m or <n>/h", s)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || !(n > 0) || math.IsInf(n, 0) {
		return 0, fmt.Errorf("ratelimit: rate %q: want a positive number before the slash", s)
	}
	switch unit {
	case "s":
		return n, nil
	case "m":
		return n / 60, nil
	case "h":
		return n / 3600, nil
	}
	return 0, fmt.Errorf("ratelimit: rate %q: unit must be s, m or h", s)
}

// Policy is the budget of every class.
type Policy [NumClasses]Limit

// MXPolicy returns MX's per-client limits: 2000 GET, 750 POST+PUT+PATCH and
// 150 DELETE a second, each with a burst of one second's worth; other
// methods unlimited.
func MXPolicy() Policy {
	return Policy{
		Get:    {Rate: 2000, Burst: 2000},
		Write:  {Rate: 750, Burst: 750},
		Delete: {Rate: 150, Burst: 150},
		Other:  {Rate: Inf},
	}
}

// Validate checks every class's limit.
func (p Policy) Validate() error {
	for c, l := range p {
		if err := l.Validate(); err != nil {
			return fmt.Errorf("%s: %w", Class(c), err)
		}
	}
	return nil
}

// Result is a store's answer for one request.
type Result struct {
	// Allowed is true when the request may proceed, after Delay.
	Allowed bool
	// Limit is the bucket's size; 0 for an unlimited class.
	Limit int
	// Remaining is the whole tokens left after this request.
	Remaining int
	// Reset is how long until the bucket is full again.
	Reset time.Duration
	// RetryAfter, for a refused request, is how long until a request of
	// this class could be admitted.
	RetryAfter time.Duration
	// Delay, for an admitted request, is how long it must wait first.
	Delay time.Duration
	// Overflow is true when the key had no buckets of its own (a Memory
	// at its cap with none full to drop) and the request drew on the
	// store's shared overflow budget.
	Overflow bool

	cancel canceler
}

// canceler returns an unused reservation's token.
type canceler interface {
	cancel(ctx context.Context, now time.Time)
}

// Cancel returns the token of an admitted request that will not proceed
// (its client went away while it waited). It is a no-op on a refused
// request or one that needed no reservation.
func (r *Result) Cancel(ctx context.Context, now time.Time) {
	if r.cancel != nil {
		r.cancel.cancel(ctx, now)
		r.cancel = nil
	}
}

// Store keeps buckets. Take asks for one token of class c for key at now;
// with maxWait > 0 the request may be admitted with a Delay of at most
// maxWait. A refused request consumes no token.
type Store interface {
	Take(ctx context.Context, key string, c Class, now time.Time, maxWait time.Duration) (Result, error)
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// RetryAfterSeconds returns r.RetryAfter as the value of a Retry-After
// header: whole seconds, rounded up, at least 1.
func (r Result) RetryAfterSeconds() int64 { return max(1, ceilSeconds(r.RetryAfter)) }

// ResetSeconds returns r.Reset in whole seconds, rounded up.
func (r Result) ResetSeconds() int64 { return ceilSeconds(r.Reset) }
