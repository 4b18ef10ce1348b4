package cidr_test

import (
	"fmt"

	"github.com/mxgate/mxgate/cidr"
)

func Example() {
	allow, err := cidr.Parse("mdx", "127.0.0.1")
	if err != nil {
		panic(err)
	}
	for _, a := range []string{"64.77.254.33", "::ffff:64.77.254.33", "66.43.0.1", "127.0.0.1", "garbage"} {
		fmt.Println(a, allow.ContainsString(a))
	}
	// Output:
	// 64.77.254.33 true
	// ::ffff:64.77.254.33 true
	// 66.43.0.1 false
	// 127.0.0.1 true
	// garbage false
}
