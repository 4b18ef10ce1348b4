// Package mdx holds the MDX On Demand handlers: mdx_hmac verify (the
// signature of MX's requests to an FI), mdx_hmac sign (the same signature
// made, for an aggregator or a test harness) and mdx_sanitize (complete
// account and card numbers in the FI's replies).
package mdx

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/bodies"
	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
	"github.com/mxgate/mxgate/hmac"
)

// MDX request headers, in canonical form so that lookups need no
// canonicalisation (MDX-HMAC on the wire is Mdx-Hmac in http.Header).
const (
	headerHMAC        = "Mdx-Hmac"
	headerSessionKey  = "Mdx-Session-Key"
	headerContentMD5  = "Content-Md5"
	headerDate        = "Date"
	headerAccept      = "Accept"
	headerContentType = "Content-Type"
)

// DefaultMaxBody bounds the request body mdx_hmac buffers.
const DefaultMaxBody = 1 << 20

// Signing is what mdx_hmac verify and sign share: the keys, the algorithm
// and how the signed resource is derived from the path.
type Signing struct {
	// Keys are the base64 HMAC keys, 32 to 64 bytes each once decoded.
	// verify accepts a signature made with any of them, so that keys can
	// be rotated; sign takes exactly one. {env.*} and {file.*}
	// placeholders are replaced at provisioning; use them to keep keys out
	// of the configuration.
	Keys []string `json:"keys,omitempty"`

	// Algorithm is sha1, sha224, sha256, sha384 or sha512. Default: sha1,
	// as in MX's example.
	Algorithm string `json:"algorithm,omitempty"`

	// Resource is how the signed resource is derived from the path:
	// "final", the last path segment ("/transactions" for
	// /{institution_id}/accounts/{id}/transactions), or "path", the whole
	// path after BasePath. Default: final.
	Resource string `json:"resource,omitempty"`

	// ResourceQuery, with Resource "path", appends "?" and the raw query
	// string to the signed resource when the request has one.
	ResourceQuery bool `json:"resource_query,omitempty"`

	// BasePath, with Resource "path", is stripped from the front of the
	// path before signing. A segment in braces, such as {institution_id},
	// matches any one segment. Caddy's global placeholders ({env.*}) are
	// replaced at provisioning. Default: none.
	BasePath string `json:"base_path,omitempty"`

	// MaxBody is the largest body accepted, in bytes. Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// ErrorFormat is how a refusal is written: mdx, json, fdx, text or
	// handle_errors. Default: mdx.
	ErrorFormat string `json:"error_format,omitempty"`
}

// signing is a provisioned Signing.
type signing struct {
	alg    hmac.Algorithm
	keys   []hmac.Key
	rule   hmac.ResourceRule
	format refusal.Format
}

// validate checks s's options among themselves; it reads no key.
func (s *Signing) validate() error {
	if _, err := refusal.ParseFormat(s.ErrorFormat, refusal.FormatMDX); err != nil {
		return err
	}
	if _, err := hmac.ParseAlgorithm(cmp.Or(s.Algorithm, "sha1")); err != nil {
		return err
	}
	if len(s.Keys) == 0 {
		return errors.New("at least one key is required")
	}
	if s.MaxBody < 0 {
		return errors.New("max_body must be positive")
	}
	switch s.Resource {
	case "", "final":
		if s.BasePath != "" || s.ResourceQuery {
			return errors.New("base_path and the resource query apply only to `resource path`")
		}
	case "path":
	default:
		return fmt.Errorf("unknown resource %q (want final or path)", s.Resource)
	}
	return nil
}

// maxBody is MaxBody or its default.
func (s *Signing) maxBody() int64 { return cmp.Or(s.MaxBody, DefaultMaxBody) }

// provision fills s's defaults and reads its keys; s is valid (validate).
func (s *Signing) provision() (*signing, error) {
	var out signing
	var err error
	if out.format, err = refusal.ParseFormat(s.ErrorFormat, refusal.FormatMDX); err != nil {
		return nil, err
	}
	if s.Algorithm == "" {
		s.Algorithm = "sha1"
	}
	if out.alg, err = hmac.ParseAlgorithm(s.Algorithm); err != nil {
		return nil, err
	}
	for i, raw := range s.Keys {
		k, err := parseKey(raw)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		out.keys = append(out.keys, k)
	}
	s.MaxBody = s.maxBody()
	if s.Resource == "path" {
		if out.rule, err = hmac.PathAfter(provision.Resolve(s.BasePath), s.ResourceQuery); err != nil {
			return nil, err
		}
	} else {
		out.rule = hmac.FinalSegment()
	}
	return &out, nil
}

// parseKey resolves placeholders in raw and decodes the key. Its errors
// never contain the key.
func parseKey(raw string) (hmac.Key, error) {
	s, err := secret.Read(raw)
	if err != nil {
		return hmac.Key{}, err
	}
	return hmac.ParseKey(s)
}

// unmarshalOption reads a Signing option, if d is on one.
func (s *Signing) unmarshalOption(d *caddyfile.Dispenser) (bool, error) {
	var err error
	switch d.Val() {
	case "key":
		args := d.RemainingArgs()
		if len(args) != 1 {
			return true, d.Err("key takes exactly one base64 key (repeat the option for several)")
		}
		s.Keys = append(s.Keys, args[0])
	case "algorithm":
		s.Algorithm, err = caddyfileopt.OneOf(d, "sha1", "sha224", "sha256", "sha384", "sha512")
	case "max_body":
		s.MaxBody, err = caddyfileopt.Size(d)
	case "resource":
		args := d.RemainingArgs()
		switch {
		case len(args) == 1 && (args[0] == "final" || args[0] == "path"):
			s.Resource = args[0]
		case len(args) == 2 && args[0] == "path" && args[1] == "query":
			s.Resource, s.ResourceQuery = "path", true
		default:
			return true, d.Err("resource takes final, path, or path query")
		}
	case "base_path":
		s.BasePath, err = caddyfileopt.String(d)
	case "error_format":
		s.ErrorFormat, err = caddyfileopt.ErrorFormat(d)
	default:
		return false, nil
	}
	return true, err
}

// refusalFor maps the hmac library's errors to MDX answers. Messages name
// the faulty header and never reveal the expected value.
var refusalFor = map[error]refusal.Refusal{
	hmac.ErrMissingSignature:   {Status: 412, Reason: "hmac_missing", Message: "MDX-HMAC header missing"},
	hmac.ErrMalformedSignature: {Status: 412, Reason: "hmac_malformed", Message: "MDX-HMAC header malformed"},
	hmac.ErrSignatureMismatch:  {Status: 412, Reason: "hmac_mismatch", Message: "MDX-HMAC invalid"},
	hmac.ErrContentMD5Missing:  {Status: 412, Reason: "md5_missing", Message: "Content-MD5 header missing"},
	hmac.ErrContentMD5Mismatch: {Status: 412, Reason: "md5_mismatch", Message: "Content-MD5 does not match the body"},
	hmac.ErrDateMissing:        {Status: 412, Reason: "date_missing", Message: "Date header missing"},
	hmac.ErrDateMalformed:      {Status: 412, Reason: "date_malformed", Message: "Date header is not UNIX epoch seconds"},
	hmac.ErrDateSkew:           {Status: 412, Reason: "date_skew", Message: "Date header outside the allowed clock skew"},
	hmac.ErrOutsideBasePath:    {Status: 412, Reason: "resource_underivable", Message: "MDX-HMAC invalid: request path is outside the signed base path"},
	bodies.ErrTooLarge:         {Status: 413, Reason: "body_too_large", Message: "Request body too large"},
	bodies.ErrUnreadable:       {Status: 400, Reason: "body_unreadable", Message: "Request body could not be read"},
}

// refusalOf returns the answer to err, one of refusalFor's keys.
func refusalOf(err error) refusal.Refusal {
	for e, rf := range refusalFor {
		if errors.Is(err, e) {
			return rf
		}
	}
	return refusalFor[hmac.ErrSignatureMismatch]
}
