package secrethash_test

import (
	"crypto/rand"
	"fmt"

	"github.com/mxgate/mxgate/secrethash"
)

func Example() {
	// Once, where the secret is made: keep only the hash.
	h, err := secrethash.New([]byte("mxk_7Qp2ZfV9rT4sLw8yBn3HdK6cJx1A"), rand.Reader)
	if err != nil {
		panic(err)
	}
	stored := h.String() // $hmac-sha256$<salt>$<mac>

	// On every request: parse once, verify each candidate.
	parsed, err := secrethash.Parse(stored)
	if err != nil {
		panic(err)
	}
	fmt.Println(parsed.Verify([]byte("mxk_7Qp2ZfV9rT4sLw8yBn3HdK6cJx1A")), parsed.Verify([]byte("a guess")))
	// Output: true false
}
