// Package hmac implements request signing for MDX On Demand v5, the protocol
// MX uses to call a financial institution's data endpoint.
//
// Every MDX request carries three headers that together authenticate it:
//
//	Date:        the UNIX epoch time in seconds, e.g. 1382975431
//	Content-MD5: the lowercase hex MD5 of the raw body bytes
//	MDX-HMAC:    the lowercase hex HMAC of the canonical string
//
// The canonical string joins seven fields with "\n": the HTTP verb, the
// Content-MD5, Content-Type, Date and Accept headers, the MDX-Session-Key
// header and the REST resource of the request. An empty field still
// contributes its (empty) line. [Request.AppendCanonical] builds it; [Signer]
// and [Verifier] both use that one builder, so the two directions cannot
// drift apart.
//
// The HMAC key is handed over in base64 and must decode to 32 to 64 bytes;
// [ParseKey] enforces that. A [Verifier] accepts several keys at once so
// that a key can be rotated without downtime, accepts hex in either case,
// and compares in constant time.
//
// MDX signs only the resource, the final segment of the path; [Routes]
// says which paths a verified request may have, so that a gateway does not
// widen what the signature leaves open: a canonical path ending in one of
// the resources MDX defines, or one of a few pinned templates.
//
// The package knows nothing of HTTP servers; it is the library under the
// mdx_hmac Caddy directive and can be used on its own.
package hmac
