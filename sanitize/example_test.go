package sanitize_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mxgate/mxgate/sanitize"
)

func Example() {
	g, err := sanitize.New(sanitize.Options{})
	if err != nil {
		panic(err)
	}
	reply := `<mdx version="5.0"><accounts><account>` +
		`<id>4111-1111-1111-1111</id><name>Savings 1234 5678 90</name><balance>1000.00</balance>` +
		`</account></accounts></mdx>`
	report, err := g.Mask(os.Stdout, strings.NewReader(reply), sanitize.Identity)
	fmt.Println()
	if err != nil {
		panic(err)
	}
	for _, f := range report.Findings {
		fmt.Printf("account %d, %s: %s\n", f.Account, f.Field, f.Rule)
	}
	// Output:
	// <mdx version="5.0"><accounts><account><id>XXXX-XXXX-XXXX-1111</id><name>Savings XXXX XX78 90</name><balance>1000.00</balance></account></accounts></mdx>
	// account 1, id: card_number
	// account 1, name: account_number
}

// The checks an HTTP handler makes before it inspects a reply, and the
// reason it logs when the reply is refused.
func ExampleCheckContentType() {
	for _, ct := range []string{"application/vnd.moneydesktop.mdx.v5+xml", "application/json", "", "text/xml; charset=ISO-8859-1"} {
		inspect, err := sanitize.CheckContentType(ct, true)
		fmt.Printf("%q: inspect %v, refused %q\n", ct, inspect, sanitize.Reason(err))
	}
	// Output:
	// "application/vnd.moneydesktop.mdx.v5+xml": inspect true, refused ""
	// "application/json": inspect false, refused ""
	// "": inspect false, refused "content_type"
	// "text/xml; charset=ISO-8859-1": inspect false, refused "encoding"
}

func ExampleGuard_Inspect() {
	g, _ := sanitize.New(sanitize.Options{})
	_, err := g.Inspect(strings.NewReader(`<?xml version="1.0" encoding="ISO-8859-1"?><mdx/>`), sanitize.Identity)
	fmt.Println(errors.Is(err, sanitize.ErrEncoding), sanitize.Reason(err))

	var out bytes.Buffer
	_, err = g.Mask(&out, strings.NewReader(`<mdx><account><id>4111111111111111</id></account><name>AT&T</name></mdx>`), sanitize.Identity)
	fmt.Println(sanitize.Reason(err), out.Len())
	// Output:
	// true encoding
	// malformed 0
}
