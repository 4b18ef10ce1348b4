package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/hmac"
)

// TestSignAndVerifyAcrossTwoGateways: an aggregator's mxgate signs
// (mdx_hmac sign), an FI's mxgate verifies (mdx_hmac verify), for every
// algorithm and both resource modes; a request altered between them is
// refused.
func TestSignAndVerifyAcrossTwoGateways(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	type pair struct {
		name, alg, resource  string
		signPort, verifyPort int
		tamper               string
	}
	var pairs []pair
	for _, alg := range hmac.Algorithms() {
		for _, res := range []string{"final", "path query\n\t\tbase_path /{institution_id}"} {
			pairs = append(pairs, pair{name: alg.String() + "/" + strings.Fields(res)[0], alg: alg.String(), resource: res})
		}
	}
	pairs = append(pairs,
		pair{name: "tampered session key", alg: "sha256", resource: "final", tamper: "header_up MDX-Session-Key other"},
		pair{name: "tampered accept", alg: "sha256", resource: "final", tamper: "header_up Accept application/xml"},
		pair{name: "tampered path", alg: "sha256", resource: "path\n\t\tbase_path /{institution_id}", tamper: "rewrite * /inst1/accounts/other/transactions"},
	)
	var signer, verifier strings.Builder
	signer.WriteString("{\n\tadmin {ADMIN}\n}\n")
	verifier.WriteString("{\n\tadmin {ADMIN}\n}\n")
	for i := range pairs {
		p := &pairs[i]
		p.signPort, p.verifyPort = freePort(t), freePort(t)
		// Tampering happens on the signer's side after signing, that is,
		// on the way between the two gateways: a header the proxy changes,
		// or a rewrite (which runs after mdx_hmac in a site).
		proxy := fmt.Sprintf("reverse_proxy 127.0.0.1:%d", p.verifyPort)
		rewrite := ""
		if strings.HasPrefix(p.tamper, "header_up") {
			proxy = fmt.Sprintf("reverse_proxy 127.0.0.1:%d {\n\t\t%s\n\t}", p.verifyPort, p.tamper)
		} else {
			rewrite = p.tamper
		}
		fmt.Fprintf(&signer, "http://127.0.0.1:%d {\n\tmdx_hmac sign {\n\t\tkey {env.E2E_MDX_KEY}\n\t\talgorithm %s\n\t\tresource %s\n\t}\n\t%s\n\t%s\n}\n", p.signPort, p.alg, p.resource, rewrite, proxy)
		fmt.Fprintf(&verifier, "http://127.0.0.1:%d {\n\tmdx_hmac verify {\n\t\tkey {env.E2E_MDX_KEY}\n\t\talgorithm %s\n\t\tresource %s\n\t}\n\treverse_proxy %s\n}\n", p.verifyPort, p.alg, p.resource, up.hostPort())
	}
	startGateway(t, verifier.String(), "E2E_MDX_KEY="+demoKey)
	startGateway(t, signer.String(), "E2E_MDX_KEY="+demoKey)

	for _, p := range pairs {
		for _, method := range []string{"POST", "GET"} {
			body := ""
			var rd io.Reader
			if method == "POST" {
				body = sessionXML
				rd = strings.NewReader(body)
			}
			path := "/inst1/accounts/acct-7/transactions?start_date=2024-01-01&page=2"
			if method == "POST" {
				path = "/inst1/sessions"
			}
			req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", p.signPort, path), rd)
			req.Header.Set("Accept", mdxType)
			if body != "" {
				req.Header.Set("Content-Type", mdxType)
			}
			req.Header.Set("MDX-Session-Key", "sess-"+p.alg)
			before := len(up.Requests())
			status, _, got := do(t, req)
			switch {
			case p.tamper == "":
				if status != 200 {
					t.Errorf("%s %s: %d %s", p.name, method, status, got)
					continue
				}
				r := up.Requests()[before]
				if string(r.Body) != body || r.Header.Get("MDX-HMAC") == "" || r.Header.Get("Content-MD5") != hmac.ContentMD5([]byte(body)) {
					t.Errorf("%s %s: the FI got body %q, MD5 %q", p.name, method, r.Body, r.Header.Get("Content-MD5"))
				}
			default:
				if status != 412 || got != mdxError("MDX-HMAC invalid") {
					t.Errorf("%s %s: %d %q, want 412", p.name, method, status, got)
				}
			}
		}
	}
}
