package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

const (
	dirtyAccounts = `<?xml version="1.0" encoding="UTF-8"?>
<mdx version="5.0">
  <accounts>
    <account><id>acct-0001</id><name>Everyday Checking</name><balance>10.00</balance></account>
    <account><id>4111-1111-1111-1111</id><name>Visa</name><balance>20.00</balance></account>
    <account><id>acct-0003</id><name>Savings 123456789012</name><balance>30.00</balance></account>
  </accounts>
</mdx>
`
	maskedAccounts = `<?xml version="1.0" encoding="UTF-8"?>
<mdx version="5.0">
  <accounts>
    <account><id>acct-0001</id><name>Everyday Checking</name><balance>10.00</balance></account>
    <account><id>XXXX-XXXX-XXXX-1111</id><name>Visa</name><balance>20.00</balance></account>
    <account><id>acct-0003</id><name>Savings XXXXXXXX9012</name><balance>30.00</balance></account>
  </accounts>
</mdx>
`
	cleanAccounts = `<mdx version="5.0"><accounts><account><id>acct-1</id><name>Checking ••1234</name></account></accounts></mdx>`
)

// fiApp is a stand-in FI application answering with the body and
// encoding the test chooses.
type fiApp struct {
	body        atomic.Value // string
	ctype, gzip atomic.Value // string, bool
}

func (a *fiApp) serve(w http.ResponseWriter, r *http.Request) {
	body := a.body.Load().(string)
	w.Header().Set("Content-Type", a.ctype.Load().(string))
	if a.gzip.Load().(bool) {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		io.WriteString(zw, body)
		zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(b.Bytes())
		return
	}
	io.WriteString(w, body)
}

func sanitizeGateway(t *testing.T, action string) (string, *fiApp, *gateway) {
	t.Helper()
	app := &fiApp{}
	app.body.Store(dirtyAccounts)
	app.ctype.Store(mdxType)
	app.gzip.Store(false)
	up := newUpstream(t, app.serve)
	port, mport := freePort(t), freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	mdx_sanitize {
		action %s
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	metrics
}
`, port, action, up.hostPort(), mport))
	g.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	return fmt.Sprintf("http://127.0.0.1:%d", port), app, g
}

// get fetches url as MX would, asking for gzip and decoding it itself.
func getRaw(t *testing.T, url string, gz bool) (int, http.Header, string) {
	t.Helper()
	req := mustRequest(t, "GET", url)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip answer: %v", err)
		}
		b, _ = io.ReadAll(zr)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestSanitizeMask(t *testing.T) {
	t.Parallel()
	base, app, g := sanitizeGateway(t, "mask")
	status, hdr, body := getRaw(t, base+"/inst1/accounts", false)
	if status != 200 || body != maskedAccounts || hdr.Get("Content-Length") != fmt.Sprint(len(dirtyAccounts)) {
		t.Fatalf("mask: %d %q (Content-Length %q)", status, body, hdr.Get("Content-Length"))
	}
	app.gzip.Store(true)
	status, hdr, body = getRaw(t, base+"/inst1/accounts", true)
	if status != 200 || body != maskedAccounts || hdr.Get("Content-Encoding") != "gzip" {
		t.Fatalf("mask, gzip: %d %q %v", status, body, hdr)
	}
	app.gzip.Store(false)
	// not XML, not well formed: unchanged
	for _, c := range []struct{ ctype, body string }{
		{"application/json", `{"id":"4111111111111111"}`},
		{mdxType, `<mdx><accounts><account><id>4111111111111111</id></accounts>`},
	} {
		app.ctype.Store(c.ctype)
		app.body.Store(c.body)
		if status, _, body := getRaw(t, base+"/x", false); status != 200 || body != c.body {
			t.Fatalf("%s: %d %q", c.ctype, status, body)
		}
	}
	// a large response streams through, masked
	app.ctype.Store(mdxType)
	var big strings.Builder
	big.WriteString(`<mdx version="5.0"><accounts>`)
	for i := range 30000 {
		fmt.Fprintf(&big, `<account><id>acct-%d</id><name>%s</name><balance>%d.00</balance><memo>%s</memo></account>`, i, []string{"Checking", "Card 4111111111111111"}[i%2], i, strings.Repeat("m", 100))
	}
	big.WriteString(`</accounts></mdx>`)
	app.body.Store(big.String())
	status, _, body = getRaw(t, base+"/x", false)
	if status != 200 || len(body) != big.Len() || strings.Contains(body, "4111111111111111") || strings.Count(body, "XXXXXXXXXXXX1111") != 15000 {
		t.Fatalf("large response: %d, %d bytes", status, len(body))
	}
	waitForMetric(t, g, `mxgate_sanitize_findings_total{action="mask",rule="card_number"} 15003`) // two dirty responses, the malformed one (reported, passed unchanged), and the large one
	logs := g.Stderr.String()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "4111111111111111") || strings.Contains(l, "4111-1111-1111-1111") || strings.Contains(l, "123456789012") {
			t.Fatalf("a number reached the logs, in %s", describeLine(l))
		}
	}
	if !strings.Contains(logs, `"account":2,"field":"id","rule":"card_number"`) || !strings.Contains(logs, "response not fully inspected") {
		t.Fatal("the findings or the malformed response were not logged")
	}
}

func TestSanitizeBlockAndReport(t *testing.T) {
	t.Parallel()
	base, app, _ := sanitizeGateway(t, "block")
	status, hdr, body := getRaw(t, base+"/inst1/accounts", false)
	if status != 502 || body != mdxError("Bad gateway: the response carried a complete account or card number") || hdr.Get("Content-Type") != mdxType {
		t.Fatalf("block: %d %q", status, body)
	}
	app.gzip.Store(true)
	if status, _, _ := getRaw(t, base+"/inst1/accounts", true); status != 502 {
		t.Fatalf("block, gzip: %d", status)
	}
	app.gzip.Store(false)
	app.body.Store(cleanAccounts)
	if status, _, body := getRaw(t, base+"/inst1/accounts", false); status != 200 || body != cleanAccounts {
		t.Fatalf("block, clean: %d %q", status, body)
	}

	base, _, g := sanitizeGateway(t, "report")
	if status, _, body := getRaw(t, base+"/inst1/accounts", false); status != 200 || body != dirtyAccounts {
		t.Fatalf("report: %d %q", status, body)
	}
	waitForMetric(t, g, `mxgate_sanitize_findings_total{action="report",rule="account_number"} 1`)
	waitForMetric(t, g, `mxgate_sanitize_findings_total{action="report",rule="card_number"} 1`)
}
