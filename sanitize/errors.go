package sanitize

import "errors"

// Error is the type of this package's sentinel errors. Each one stands for
// one reason why a reply was not let through; Reason names it in a form
// fit for a log field or a metric label. Match them with errors.Is (or
// errors.As for the reason), never by their text. An error's text names
// the condition and never carries bytes of the reply.
type Error struct {
	reason string
	text   string
}

func (e *Error) Error() string { return e.text }

// Reason is a short snake_case name of the condition, e.g. "malformed".
func (e *Error) Reason() string { return e.reason }

// The conditions under which a reply is refused. Every one of them is
// returned by [Guard.Mask] and [Guard.Inspect] (possibly wrapped, with a
// fixed description of the spot appended), except ErrContentType,
// ErrMediaType and ErrContentEncoding, which come from [CheckContentType],
// [ParseContentType] and [CheckContentEncoding]. With [Options.AllowMalformed], ErrMalformed,
// ErrEntity and ErrUpperCase let the reply through and are reported in
// [Report.Malformed] instead.
var (
	// ErrEncoding: the XML declaration, or the Content-Type's charset,
	// names an encoding other than UTF-8 ("UTF-8" in any case is fine;
	// "utf8", "ISO-8859-1" and "US-ASCII" are not).
	ErrEncoding = &Error{"encoding", "sanitize: the reply declares an encoding other than UTF-8"}
	// ErrInvalidUTF8: a byte sequence is not UTF-8.
	ErrInvalidUTF8 = &Error{"invalid_utf8", "sanitize: the reply is not valid UTF-8"}
	// ErrBOM: a byte-order mark (U+FEFF, or the UTF-16 marks at the
	// start), anywhere in the reply: MDX forbids them.
	ErrBOM = &Error{"bom", "sanitize: the reply contains a byte-order mark"}
	// ErrDoctype: a document type declaration, or any other markup
	// declaration (<!ENTITY, <!ELEMENT, ...): an entity could carry a
	// number past the guard.
	ErrDoctype = &Error{"doctype", "sanitize: the reply has a document type or entity declaration"}
	// ErrEntity: a reference to an entity other than the five predefined
	// ones (&lt; &gt; &amp; &apos; &quot;) and character references.
	ErrEntity = &Error{"entity", "sanitize: the reply refers to an undeclared entity"}
	// ErrUpperCase: an element or attribute name that is not lower-case
	// ASCII (an upper-case letter, or any non-ASCII character). MDX
	// requires lower-case tags.
	ErrUpperCase = &Error{"upper_case_name", "sanitize: an element or attribute name is not lower-case ASCII"}
	// ErrFieldTooLarge: a text run, a tag (with its attributes), a
	// comment, a processing instruction or the tail after the root
	// element is longer than Options.MaxField.
	ErrFieldTooLarge = &Error{"field_too_large", "sanitize: a field of the reply exceeds the size bound"}
	// ErrMalformed: the reply is not well-formed XML: an unescaped & or
	// <, unbalanced tags, a second root element, text outside the root,
	// a control character, a reply that ends inside markup, and so on.
	ErrMalformed = &Error{"malformed", "sanitize: the reply is not well-formed XML"}
	// ErrContentType: a reply with a body has no Content-Type, or one that
	// does not parse.
	ErrContentType = &Error{"content_type", "sanitize: the reply's Content-Type is missing or unparseable"}
	// ErrMediaType: a reply with a body is of a media type the guard
	// does not read as XML, and the caller has not said how to read it.
	ErrMediaType = &Error{"media_type", "sanitize: the reply's media type is not one the guard reads"}
	// ErrNumberInName: an element or attribute name, a namespace prefix,
	// a processing instruction's target or an entity reference's name
	// holds a number that would be masked as text. A name cannot be
	// masked without corrupting the document, so the reply is refused,
	// in every mode and with AllowMalformed too.
	ErrNumberInName = &Error{"number_in_name", "sanitize: a name in the reply holds a complete account or card number"}
	// ErrContentEncoding: the reply's content coding is not one gzip (or
	// none), or its body does not decode as gzip.
	ErrContentEncoding = &Error{"content_encoding", "sanitize: the reply's content coding is not a single gzip, or its body does not decode"}
	// ErrDecodedTooLarge: a gzip-encoded reply decodes to more than
	// Options.MaxDecoded bytes.
	ErrDecodedTooLarge = &Error{"decoded_too_large", "sanitize: the reply's decoded body exceeds the size bound"}
	// ErrRead: reading the reply failed (the source's error is wrapped
	// too). The reply was not seen whole.
	ErrRead = &Error{"read", "sanitize: reading the reply failed"}
	// ErrWrite: writing the output failed (the writer's error is wrapped
	// too).
	ErrWrite = &Error{"write", "sanitize: writing the reply failed"}
)

// Reason returns the reason of the package's error in err's chain, for a
// log field or a metric label, or "" if err is nil or none of ours.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.reason
	}
	return ""
}

// spotError adds a fixed description of where a condition was met; it
// never holds bytes of the reply.
type spotError struct {
	err  *Error
	spot string
}

func (e *spotError) Error() string { return e.err.text + ": " + e.spot }
func (e *spotError) Unwrap() error { return e.err }

// causeError wraps a reader's or writer's own error under ErrRead or
// ErrWrite.
type causeError struct {
	err   *Error
	cause error
}

func (e *causeError) Error() string   { return e.err.text + ": " + e.cause.Error() }
func (e *causeError) Unwrap() []error { return []error{e.err, e.cause} }
