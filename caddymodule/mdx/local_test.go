package mdx

import "net/http"

// local makes r come from a loopback peer, as the credential directives
// require of their callers.
func local(r *http.Request) *http.Request {
	r.RemoteAddr = "127.0.0.1:40000"
	return r
}
