package sanitize

import (
	"mime"
	"strings"
)

// CheckContentType decides from a reply's Content-Type whether its body
// is to be inspected. A reply with a body (hasBody) and no Content-Type,
// or one that does not parse (a malformed parameter included), is refused
// with ErrContentType: it cannot be known to be anything but XML. An XML
// type (application/xml, text/xml, or any type ending in +xml, such as
// MDX's application/vnd.moneydesktop.mdx.v5+xml) is inspected, and
// refused with ErrEncoding if its charset parameter names anything but
// UTF-8. Any other well-formed type passes uninspected (inspect false, no
// error): the guard reads XML only. A reply without a body is never
// refused.
func CheckContentType(value string, hasBody bool) (inspect bool, err error) {
	if !hasBody {
		return false, nil
	}
	if strings.TrimSpace(value) == "" {
		return false, ErrContentType
	}
	mt, params, err := mime.ParseMediaType(value)
	if err != nil || !strings.Contains(mt, "/") || strings.HasSuffix(mt, "/") {
		return false, ErrContentType
	}
	if mt != "application/xml" && mt != "text/xml" && !strings.HasSuffix(mt, "+xml") {
		return false, nil
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false, ErrEncoding
	}
	return true, nil
}

// CheckContentEncoding returns the content coding named by a reply's
// Content-Encoding header values (all of them, as http.Header.Values
// gives them): Identity for none (or "identity"), Gzip for exactly one
// "gzip" in any case. Anything else is refused with ErrContentEncoding:
// "x-gzip", "deflate", "br", stacked codings such as "gzip, gzip", and
// a header given twice. MDX allows gzip only.
func CheckContentEncoding(values []string) (Coding, error) {
	n, last := 0, ""
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if p := strings.TrimSpace(part); p != "" {
				n++
				last = p
			}
		}
	}
	switch {
	case n == 0:
		return Identity, nil
	case n > 1:
		return Identity, ErrContentEncoding
	case strings.EqualFold(last, "gzip"):
		return Gzip, nil
	case strings.EqualFold(last, "identity"):
		return Identity, nil
	}
	return Identity, ErrContentEncoding
}
