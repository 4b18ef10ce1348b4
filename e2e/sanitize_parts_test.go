package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 18's replies that walked around the guard of issue 11: numbers in
// replies not labelled as XML, in names, in header fields, 1xx fields and
// trailers, and in error bodies.

// partCase is one such reply. The upstream serves it at /inst1/<name>.
type partCase struct {
	name  string
	serve func(w http.ResponseWriter, r *http.Request)
	// what mask mode answers: a status, and with refused the reason of
	// the 502 (otherwise the body, masked); block mode always refuses
	mask            int
	refused         string // both modes: 502 for this reason
	blockRefused    string // block mode only
	maskBody        string // mask mode's body, if not refused
	reqHeader       map[string]string
	upstreamNoRange bool // the upstream must not have seen Range or If-Range
}

// fullAnswer is everything a client gets: the 1xx replies' fields, the
// header, the body and the trailers.
type fullAnswer struct {
	answer
	info    []http.Header
	trailer http.Header
}

// text is every name and value the answer carries, for noNumberIn.
func (a fullAnswer) text() string {
	var b strings.Builder
	write := func(h http.Header) {
		keys := make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteString(k + ": " + strings.Join(h[k], ", ") + "\n")
		}
	}
	for _, h := range a.info {
		write(h)
	}
	write(a.header)
	b.WriteString(a.body + "\n")
	write(a.trailer)
	return b.String()
}

// fetchAll gets url as MX would, with the extra request header fields
// given, recording the 1xx replies and the trailers too.
func fetchAll(t *testing.T, url string, extra map[string]string) fullAnswer {
	t.Helper()
	var mu sync.Mutex
	var info []http.Header
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		info = append(info, http.Header(h).Clone())
		return nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", mdxType)
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	mu.Lock()
	defer mu.Unlock()
	return fullAnswer{answer{resp.StatusCode, resp.Header, string(b), rerr}, info, resp.Trailer}
}

// xmlReply answers status with body, of the MDX type.
func xmlReply(status int, body string) func(http.ResponseWriter, *http.Request) {
	return typedReply(status, mdxType, body)
}

// typedReply answers status with body, of ctype ("" for none, which Go's
// server then sniffs).
func typedReply(status int, ctype, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// withField answers a clean MDX reply of status with a header field k: v.
func withField(status int, k, v string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(k, v)
		xmlReply(status, cleanAccounts)(w, r)
	}
}

func partCases() []partCase {
	cardReply := account("<id>" + testCard + "</id><name>Visa</name>")
	maskedReply := strings.Replace(cardReply, testCard, "XXXXXXXXXXXX1111", 1)
	notXML := func(name, ctype string) partCase {
		return partCase{name: name, serve: typedReply(200, ctype, cardReply), refused: "media_type"}
	}
	// what Go's net/http sniffs as text/plain: no XML declaration
	bare := strings.TrimPrefix(cardReply, `<?xml version="1.0" encoding="UTF-8"?>`)
	named := func(name, body string) partCase {
		return partCase{name: name, serve: xmlReply(200, body), refused: "number_in_name"}
	}
	field := func(name string, status int, k, v string) partCase {
		return partCase{name: name, serve: withField(status, k, v), mask: status, maskBody: cleanAccounts, blockRefused: "number_in_header"}
	}
	return []partCase{
		// 1. replies not labelled as XML
		{name: "sniffed text/plain", serve: typedReply(200, "", bare), refused: "media_type"},
		notXML("application/octet-stream", "application/octet-stream"),
		notXML("text/html", "text/html; charset=utf-8"),
		notXML("MDX in JSON", "application/vnd.moneydesktop.mdx.v5+json"),
		{name: "206 multipart/byteranges to a Range request", reqHeader: map[string]string{"Range": "bytes=0-9,10-1000", "If-Range": "\"v1\""},
			serve: func(w http.ResponseWriter, r *http.Request) {
				// the application honours ranges, as http.ServeContent does
				w.Header().Set("Content-Type", mdxType)
				w.Header().Set("Etag", "\"v1\"")
				http.ServeContent(w, r, "", time.Time{}, strings.NewReader(cardReply))
			}, mask: 200, maskBody: maskedReply, upstreamNoRange: true},
		{name: "206 unasked", serve: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "multipart/byteranges; boundary=b")
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, "--b\r\nContent-Type: "+mdxType+"\r\nContent-Range: bytes 0-200/300\r\n\r\n"+cardReply+"\r\n--b--\r\n")
		}, refused: "partial_content"},
		{name: "error body 404", serve: xmlReply(404, cardReply), mask: 404, maskBody: maskedReply},
		{name: "error body 500", serve: xmlReply(500, cardReply), mask: 500, maskBody: maskedReply},
		{name: "error body 404 text/plain", serve: typedReply(404, "text/plain; charset=utf-8", "no account "+testCard), refused: "media_type"},
		// 2. numbers in names
		named("element name", `<mdx version="5.0"><accounts><acct_`+testCard+`>1</acct_`+testCard+`></accounts></mdx>`),
		named("attribute name", `<mdx version="5.0"><accounts><account n_`+testCard+`="1"/></accounts></mdx>`),
		named("processing instruction target", `<mdx version="5.0"><?card_`+testCard+` x?></mdx>`),
		named("namespace prefix", `<mdx version="5.0" xmlns:a_`+testCard+`="urn:x"><accounts/></mdx>`),
		// 3. numbers outside the body
		field("X-Account-Number", 200, "X-Account-Number", testCard),
		field("Location on a 302", 302, "Location", "/inst1/accounts/"+testCard),
		field("header name", 200, "X-Acct-"+testCard, "1"),
		{name: "103 Early Hints", serve: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</inst1/accounts/"+testCard+">; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			xmlReply(200, cleanAccounts)(w, r)
		}, mask: 200, maskBody: cleanAccounts, blockRefused: "number_in_header"},
		{name: "trailer", serve: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", mdxType)
			w.Header().Set("Trailer", "X-Account-Number")
			io.WriteString(w, cleanAccounts)
			w.Header().Set("X-Account-Number", testCard)
		}, mask: 200, maskBody: cleanAccounts, blockRefused: "number_in_trailer"},
		{name: "undeclared trailer", serve: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", mdxType)
			io.WriteString(w, cleanAccounts)
			http.NewResponseController(w).Flush()
			w.Header().Set(http.TrailerPrefix+"X-Account-Number", testCard)
		}, mask: 200, maskBody: cleanAccounts, blockRefused: "number_in_trailer"},
	}
}

// TestSanitizeHostileReplyParts: each reply of issue 18, through a real
// mxgate in mask and in block mode: the full number reaches the client in
// no part of the answer, 1xx replies and trailers included. Each case's
// control is the same reply fetched from the upstream directly, which
// must carry the number where the test looks for it.
func TestSanitizeHostileReplyParts(t *testing.T) {
	t.Parallel()
	cases := partCases()
	byPath := map[string]partCase{}
	for _, c := range cases {
		byPath["/inst1/"+c.name] = c
	}
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		byPath[r.URL.Path].serve(w, r)
	})
	gateways := map[string]*gateway{}
	bases := map[string]string{}
	for _, mode := range []string{"mask", "block"} {
		bases[mode], gateways[mode] = sanitizeSite(t, up, "action "+mode)
	}
	numbers := []string{testCard}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Run("control", func(t *testing.T) {
				a := fetchAll(t, caseURL(up.URL, c.name), c.reqHeader)
				if !strings.Contains(digitsOf(a.text()), testCard) {
					t.Fatalf("the reply does not carry the number where the test looks: %d", a.status)
				}
			})
			for _, mode := range []string{"mask", "block"} {
				t.Run(mode, func(t *testing.T) {
					seen := len(up.Requests())
					a := fetchAll(t, caseURL(bases[mode], c.name), c.reqHeader)
					noNumberIn(t, "the answer", a.text(), numbers)
					refused := c.refused
					if mode == "block" && refused == "" {
						refused = c.blockRefused
					}
					switch {
					case refused != "":
						want := mdxError("Bad gateway: the response could not be inspected (" + refused + ")")
						if a.status != 502 || a.body != want || a.header.Get("Content-Type") != mdxType || a.readErr != nil {
							t.Errorf("%d %.200q (%v), want 502 %q", a.status, a.body, a.readErr, want)
						}
					case mode == "mask":
						if a.status != c.mask || a.body != c.maskBody || a.readErr != nil {
							t.Errorf("%d %v\n got %.300q\nwant %.300q", a.status, a.readErr, a.body, c.maskBody)
						}
					default:
						if want := mdxError("Bad gateway: the response carried a complete account or card number"); a.status != 502 || a.body != want {
							t.Errorf("%d %.200q", a.status, a.body)
						}
					}
					if c.upstreamNoRange {
						reqs := up.Requests()[seen:]
						if len(reqs) != 1 || reqs[0].Header.Get("Range") != "" || reqs[0].Header.Get("If-Range") != "" {
							t.Errorf("the upstream saw %d request(s), Range %q", len(reqs), reqs[0].Header.Get("Range"))
						}
					}
				})
			}
		})
	}
	for mode, g := range gateways {
		for _, l := range strings.Split(g.Stderr.String(), "\n") {
			if strings.Contains(l, testCard) {
				t.Errorf("%s: a number reached the logs, in %s", mode, describeLine(l))
			}
		}
	}
	waitForMetric(t, gateways["block"], `mxgate_rejections_total{directive="mdx_sanitize",reason="number_in_trailer"} 2`)
	waitForMetric(t, gateways["mask"], `mxgate_rejections_total{directive="mdx_sanitize",reason="media_type"} 5`)
	waitForMetric(t, gateways["block"], `mxgate_rejections_total{directive="mdx_sanitize",reason="number_in_header"} 4`)
}

// TestSanitizeAllowTypes: allow_types lets a type through read as text:
// masked in mask mode, refused in block mode; what it does not name is
// still refused.
func TestSanitizeAllowTypes(t *testing.T) {
	t.Parallel()
	body := "account " + testCard + " closed"
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", strings.TrimPrefix(r.URL.Path, "/"))
		io.WriteString(w, body)
	})
	mask, _ := sanitizeSite(t, up, "allow_types text/plain scan text")
	block, _ := sanitizeSite(t, up, "action block\n\t\tallow_types text/plain scan text")
	if a := fetch(t, mask+"/text/plain"); a.status != 200 || a.body != "account XXXXXXXXXXXX1111 closed" {
		t.Errorf("mask: %d %q", a.status, a.body)
	}
	if a := fetch(t, block+"/text/plain"); a.status != 502 || !bytes.Contains([]byte(a.body), []byte("complete account or card number")) {
		t.Errorf("block: %d %q", a.status, a.body)
	}
	if a := fetch(t, mask+"/text/html"); a.status != 502 || strings.Contains(a.body, testCard) {
		t.Errorf("a type not named: %d %q", a.status, a.body)
	}
}
