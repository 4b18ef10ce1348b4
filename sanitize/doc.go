// Package sanitize keeps complete card and bank account numbers out of the
// MDX On Demand replies an FI sends to MX, as MDX requires of partners
// ("avoid sending ... complete account and/or credit card numbers for
// account IDs and names"). It is the library under the mdx_sanitize Caddy
// directive and knows nothing of HTTP servers.
//
// A [Guard] reads a reply with its own streaming XML scanner. [Guard.Mask]
// writes it on with every number it finds masked; [Guard.Inspect] only
// reports. [Guard.MaskText] and [Guard.InspectText] read a reply that is
// not XML as text, every byte of it; [Guard.InspectHeader] reads one
// header or trailer field. [ParseContentType], [CheckContentType] and
// [CheckContentEncoding] decide from a reply's headers how it can be
// read, if at all.
//
// # What is found
//
// Text is read where a reply carries it: element text, CDATA sections and
// attribute values, and also comments and processing instructions. A text
// run is the text between two tags; CDATA sections, comments, processing
// instructions and character references inside it do not break it, so
// "12345<!-- -->67890" is one run. Inside a field (below) the run goes on
// through the tags of child elements, each counting as a separator.
//
// A digit is any decimal digit of any script (Unicode category Nd: ASCII,
// fullwidth, Arabic-Indic, Devanagari, ...), written as itself or as a
// character reference (&#52;, &#x34;); it counts as the ASCII digit of the
// same value.
//
// A separator is one of:
//
//   - space, tab, CR, LF, '-', '.', '/', '_';
//   - any Unicode space, line or paragraph separator (categories Zs, Zl,
//     Zp: no-break space U+00A0, figure space U+2007, thin space U+2009,
//     narrow no-break space U+202F, ideographic space U+3000, ...) and
//     next line U+0085;
//   - the dashes U+2010 to U+2015 (hyphen, non-breaking hyphen, figure
//     dash, en dash, em dash, horizontal bar), minus U+2212, small dashes
//     U+FE58 and U+FE63, fullwidth hyphen-minus U+FF0D;
//   - the dots middle dot U+00B7, one dot leader U+2024, hyphenation point
//     U+2027, ideographic full stop U+3002, small full stop U+FE52,
//     fullwidth full stop U+FF0E; fullwidth solidus U+FF0F and low line
//     U+FF3F;
//   - any invisible formatting character or combining mark (categories Cf,
//     Mn, Me: soft hyphen U+00AD, zero-width space U+200B, word joiner
//     U+2060, ...), except U+FEFF, which is refused (ErrBOM);
//   - with AllowMalformed, a reference to an entity the guard does not
//     know (&nbsp;).
//
// A number is a maximal sequence of digits in which each two consecutive
// digits are apart by nothing or by one or more separators; its groups are
// its runs of digits with no separator between them. Anything else, a
// letter, a comma, a tag outside a field, ends a number.
//
// The rules:
//
//   - Card numbers, anywhere: a window of whole consecutive groups of a
//     number holding 13 to 19 digits that passes the Luhn check is a card
//     number. At the end of each group the windows ending there are
//     tried, and the longest valid one is masked; the masked digits then
//     split the number, which starts again at the four digits kept. So
//     "4111 1111 1111 1111 12/25" is found although the expiry date
//     follows, and no Luhn-valid window of whole groups is left in the
//     output. A run of more than 19 digits with no separator is no card
//     number.
//   - Account numbers, in fields: in an account-number field, a number of
//     9 or more digits is an account number ("1234-5678-90" included).
//
// A field is an element, or an attribute, whose local name (after any
// namespace prefix) is one of the field names, matched without regard to
// ASCII case: id and name when inside an <account> element (at any depth,
// and as attributes of <account> itself), and account_number, account_id
// and every name in Options.Fields anywhere in the document. An element's
// text is in the field if the element or any element around it is one;
// so are the attributes of such elements. A transaction's <id> is not a
// field; its <account_id> is.
//
// Names are read too: element and attribute names, namespace prefixes,
// processing instruction targets and (with AllowMalformed) the names of
// entity references. A name holding a number by the rules above, read
// alone (a card number; inside a field, 9 digits or more), is refused
// with ErrNumberInName: a name cannot be masked without corrupting the
// document.
//
// # How it is masked
//
// All but the last four digits of a number found are replaced, in place,
// by 'X': every byte of the digit's raw form becomes an X, so an ASCII
// digit becomes one X, a fullwidth digit (three bytes of UTF-8) three, a
// reference such as &#52; five. Separators and everything else stay. The
// output has exactly the input's length (a Content-Length stays right)
// and is valid UTF-8 and XML. Masks are never undone.
//
// # What is refused
//
// The guard fails closed: what it cannot fully inspect it refuses, with
// one of the errors of type [*Error] ([ErrEncoding], [ErrInvalidUTF8],
// [ErrBOM], [ErrDoctype], [ErrEntity], [ErrUpperCase], [ErrNumberInName],
// [ErrFieldTooLarge], [ErrMalformed], [ErrDecodedTooLarge], and from the
// header checks [ErrContentType], [ErrMediaType] and
// [ErrContentEncoding]), each with a
// reason for logs
// and metrics ([Reason]) and a text that never carries bytes of the reply.
// MDX itself requires UTF-8, lower-case tags, escaped reserved characters,
// no byte-order mark and gzip as the only content coding, so a correct
// reply is never refused. Inspect refuses at the first such condition;
// Mask stops there, having written only what came before it, and never
// the end of the document (see [Guard.Mask]).
//
// [Options.AllowMalformed] lets through replies that are not well-formed
// (an unescaped & or <, unbalanced tags, a reply cut short), refer to
// undeclared entities or have upper-case names, for an FI that needs it:
// the scanner recovers (a stray & or < is text, an end tag closes the
// open element of its name, a reply that ends inside markup is read as
// text to its end) and goes on masking, and [Report.Malformed] says what
// was let through. Everything else is refused all the same.
//
// # Memory and speed
//
// A reply is read through one buffer of twice Options.MaxField plus 64 KiB
// (192 KiB by default), taken from a pool: memory does not grow with the
// reply, and a reply costs a handful of allocations whatever its size.
// Mask writes in batches as soon as no later byte can change them.
package sanitize
