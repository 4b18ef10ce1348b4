// Package sanitize finds complete card and bank account numbers in the
// account ids and names of MDX On Demand XML responses, and masks them, as
// MDX requires of partners ("avoid sending ... complete account and/or
// credit card numbers for account IDs and names").
//
// It streams: bytes outside the inspected fields pass through unchanged as
// soon as they are parsed, and memory is bounded by the largest inspected
// field, not by the response. Masking replaces digits in place (the raw
// bytes of a digit written as a character reference are all replaced), so
// the output is exactly as long as the input.
package sanitize

// Rules.
const (
	RuleCard    = "card_number"    // 13 to 19 digits, grouped by spaces or dashes or not, Luhn-valid
	RuleAccount = "account_number" // any other run of 9 or more digits
)

// span is a found number: the indexes of its digits in the text.
type span struct {
	rule   string
	digits []int
}

// findNumbers returns the numbers in text. A card number is a sequence of
// 13 to 19 digits, optionally in groups separated by one space or dash,
// that passes the Luhn check; an account number is any other run of 9 or
// more consecutive digits. Anything else (a letter, two separators in a
// row) breaks a sequence.
func findNumbers(text []byte) []span {
	var out []span
	i := 0
	for i < len(text) {
		if !isDigit(text[i]) {
			i++
			continue
		}
		// a grouped sequence: digits, then (separator digit)...
		var digits []int
		j := i
		for j < len(text) {
			if isDigit(text[j]) {
				digits = append(digits, j)
				j++
				continue
			}
			if (text[j] == ' ' || text[j] == '-') && j+1 < len(text) && isDigit(text[j+1]) {
				j++
				continue
			}
			break
		}
		if n := len(digits); n >= 13 && n <= 19 && luhn(text, digits) {
			out = append(out, span{RuleCard, digits})
		} else {
			// contiguous runs inside the sequence
			start := 0
			for k := 1; k <= len(digits); k++ {
				if k == len(digits) || digits[k] != digits[k-1]+1 {
					if k-start >= 9 {
						out = append(out, span{RuleAccount, digits[start:k]})
					}
					start = k
				}
			}
		}
		i = j
	}
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// luhn checks the digits at the given indexes of text.
func luhn(text []byte, idx []int) bool {
	sum := 0
	double := false
	for k := len(idx) - 1; k >= 0; k-- {
		d := int(text[idx[k]] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
