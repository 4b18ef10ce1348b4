package fdx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds one request to the authorization server (its
// answer read whole) when a type's Client is nil.
const DefaultTimeout = 5 * time.Second

// defaultClient is the client of a type whose Client is nil: the system's
// roots, DefaultTimeout, and no redirects followed.
var defaultClient = &http.Client{Timeout: DefaultTimeout, CheckRedirect: NoRedirects}

// NoRedirects is an http.Client's CheckRedirect that follows none: the
// authorization server's metadata names each endpoint exactly, and an
// introspection request, credentials and all, must not be sent on to
// wherever a redirect points.
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// CauseMax bounds the length of a cause (Cause).
const CauseMax = 300

// Cause describes why a fetch from the authorization server failed, for
// a log line or a readiness reason: the error's text with any URL in it
// reduced to its scheme, host and path (a query or user information may
// hold a secret), at most CauseMax bytes. Errors of this package hold no
// token or secret: a client secret, an assertion, an answer's body are
// never in them.
func Cause(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error's text is `Op "URL": err`; say it again without the
		// query, whatever wraps it
		if ue.Err != nil {
			s = strings.ReplaceAll(s, ue.Error(), ue.Op+" "+RedactURL(ue.URL)+": "+ue.Err.Error())
		}
	}
	if len(s) > CauseMax {
		s = strings.ToValidUTF8(s[:CauseMax-3], "") + "..."
	}
	return s
}

// RedactURL returns raw without user information, query or fragment.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// statusError is an answer other than 200 from the authorization server.
type statusError struct {
	what string
	code int
}

func (e *statusError) Error() string {
	if e.code >= 300 && e.code < 400 {
		return fmt.Sprintf("%s: status %d (redirects are not followed)", e.what, e.code)
	}
	return fmt.Sprintf("%s: status %d", e.what, e.code)
}

// get fetches rawURL with client and returns its body, at most max bytes;
// what names the document in errors. The URL in an error is redacted.
func get(ctx context.Context, client *http.Client, rawURL, what string, max int64) ([]byte, error) {
	if client == nil {
		client = defaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fdx: fetching the %s: a bad URL (%s)", what, RedactURL(rawURL))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fdx: fetching the %s: %s", what, Cause(err)) // the URL is in err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("fdx: fetching the %w", &statusError{what + " from " + RedactURL(rawURL), resp.StatusCode})
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("fdx: reading the %s from %s: %s", what, RedactURL(rawURL), Cause(err))
	}
	if int64(len(raw)) > max {
		return nil, fmt.Errorf("fdx: the %s from %s is larger than %d bytes", what, RedactURL(rawURL), max)
	}
	return raw, nil
}
