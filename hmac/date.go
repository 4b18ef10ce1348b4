package hmac

import (
	"errors"
	"strconv"
	"time"
)

// Errors of CheckDate.
var (
	ErrDateMissing   = errors.New("hmac: Date header missing")
	ErrDateMalformed = errors.New("hmac: Date is not an integer of UNIX epoch seconds")
	ErrDateSkew      = errors.New("hmac: Date is outside the allowed clock skew")
)

// ParseDate parses an MDX Date header: UNIX epoch seconds in decimal digits
// (not an HTTP date).
func ParseDate(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, ErrDateMissing
	}
	if len(s) > 12 {
		return time.Time{}, ErrDateMalformed
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, ErrDateMalformed
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, ErrDateMalformed
	}
	return time.Unix(n, 0), nil
}

// CheckDate parses the Date header s and checks that it lies within maxSkew
// of now, in either direction. A maxSkew of zero or less admits no date at
// all (it fails closed); a caller that wants no skew bound calls ParseDate.
func CheckDate(s string, now time.Time, maxSkew time.Duration) error {
	t, err := ParseDate(s)
	if err != nil {
		return err
	}
	d := now.Sub(t)
	if maxSkew <= 0 || d > maxSkew || d < -maxSkew {
		return ErrDateSkew
	}
	return nil
}

// FormatDate formats t as an MDX Date header value.
func FormatDate(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
