package hmac_test

import (
	"fmt"

	"github.com/mxgate/mxgate/hmac"
)

// Sign a request as MX does, then verify it as the FI's gateway does.
func Example() {
	key, err := hmac.ParseKey("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=")
	if err != nil {
		panic(err)
	}
	body := []byte("<?xml version=\"1.0\"?>\n<mdx version=\"5.0\">\n  <session>\n    <userkey><![CDATA[the-userkey]]></userkey>\n  </session>\n</mdx>\n")
	resource, _ := hmac.FinalSegment().Resource("/inst1/sessions", "")
	req := &hmac.Request{
		Method:      "POST",
		ContentMD5:  hmac.ContentMD5(body),
		ContentType: "application/vnd.moneydesktop.mdx.v5+xml",
		Date:        "1382975431",
		Accept:      "application/vnd.moneydesktop.mdx.v5+xml",
		Resource:    resource,
	}
	sig, _ := hmac.Sign(hmac.SHA1, key, req)
	fmt.Println("Content-MD5:", req.ContentMD5)
	fmt.Println("MDX-HMAC:", sig)

	v, _ := hmac.NewVerifier(hmac.SHA1, key)
	fmt.Println("verified:", v.Verify(req, sig) == nil)
	// Output:
	// Content-MD5: e9a179f879165fd64bdeaa57032d342f
	// MDX-HMAC: e47928dcd29e494116961ad12884c8fd7aae07f2
	// verified: true
}
