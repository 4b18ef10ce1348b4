package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/mxgate/mxgate/hmac"
)

// The demo key of MDX On Demand's document (reference 004); never a real one.
const demoKey = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="

const mdxType = "application/vnd.moneydesktop.mdx.v5+xml"

// bodySize is the size of every POST body.
const bodySize = 1024

// traffic is a kind of request stream.
type traffic int

const (
	trafficGET traffic = iota // signed GET /{inst}/accounts/{id}/transactions
	trafficMix                // the GETs alternating with signed POST /{inst}/sessions of 1 KiB
)

func (t traffic) String() string {
	if t == trafficMix {
		return "mix"
	}
	return "get"
}

func parseTraffic(s string) (traffic, error) {
	switch s {
	case "get":
		return trafficGET, nil
	case "mix":
		return trafficMix, nil
	}
	return 0, fmt.Errorf("unknown traffic %q (want get or mix)", s)
}

// generator builds pre-signed MDX requests, as raw HTTP/1.1 bytes ready to
// be written to a connection. No two requests of one generator carry the
// same signature, so a gateway's replay_window never refuses one: each GET
// has its own session key and each POST its own userkey in the body (so
// its own Content-MD5). The session key and userkey hold a random nonce
// chosen per generator and a counter. Date is the signing time: the
// requests must be sent within max_skew (5 minutes) of being built.
//
// A generator is not safe for concurrent use.
type generator struct {
	signer *hmac.Signer
	rule   hmac.ResourceRule
	nonce  string // 16 hex digits
	n      uint64 // requests built so far
	now    func() time.Time

	chunk []byte // the arena requests are cut from
}

func newGenerator(now func() time.Time) (*generator, error) {
	key, err := hmac.ParseKey(demoKey)
	if err != nil {
		return nil, err
	}
	s, err := hmac.NewSigner(hmac.SHA1, key)
	if err != nil {
		return nil, err
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return &generator{signer: s, rule: hmac.FinalSegment(), nonce: hex.EncodeToString(b[:]), now: now}, nil
}

// build returns count requests of kind t for host (the Host header's
// value). The i-th request of a mix is a POST when i is odd.
func (g *generator) build(t traffic, host string, count int) [][]byte {
	date := hmac.FormatDate(g.now())
	reqs := make([][]byte, count)
	for i := range reqs {
		if t == trafficMix && i%2 == 1 {
			reqs[i] = g.post(host, date)
		} else {
			reqs[i] = g.get(host, date)
		}
	}
	return reqs
}

// alloc returns an empty slice with room for n bytes, cut from the arena
// so that a pool of requests is a few large pointer-free allocations.
func (g *generator) alloc(n int) []byte {
	if cap(g.chunk)-len(g.chunk) < n {
		g.chunk = make([]byte, 0, max(4<<20, n))
	}
	start := len(g.chunk)
	g.chunk = g.chunk[:start+n]
	return g.chunk[start : start : start+n]
}

// unique returns the 64 hex digits that make the next request unique.
func (g *generator) unique() string {
	g.n++
	return g.nonce + fmt.Sprintf("%048x", g.n)
}

func (g *generator) get(host, date string) []byte {
	id := g.n
	session := g.unique()
	path := "/inst" + strconv.FormatUint(id%3, 10) + "/accounts/" + strconv.FormatUint(id, 10) + "/transactions"
	resource, _ := g.rule.Resource(path, "")
	sig := g.signer.Sign(&hmac.Request{
		Method: "GET", ContentMD5: hmac.EmptyBodyMD5, Date: date,
		Accept: mdxType, SessionKey: session, Resource: resource,
	})
	head := "GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nAccept: " + mdxType +
		"\r\nDate: " + date +
		"\r\nContent-MD5: " + hmac.EmptyBodyMD5 +
		"\r\nMDX-Session-Key: " + session +
		"\r\nMDX-HMAC: " + sig +
		"\r\nMDX-Job-Type: background\r\n\r\n"
	return append(g.alloc(len(head)), head...)
}

const (
	bodyHead = "<?xml version=\"1.0\"?>\n<mdx version=\"5.0\">\n  <session>\n    <userkey><![CDATA["
	bodyTail = "]]></userkey>\n  </session>\n</mdx>\n"
)

// postBody returns the 1 KiB session request carrying userkey, padded.
func postBody(userkey string) []byte {
	b := make([]byte, 0, bodySize)
	b = append(b, bodyHead...)
	b = append(b, userkey...)
	for len(b) < bodySize-len(bodyTail) {
		b = append(b, 'u')
	}
	return append(b, bodyTail...)
}

func (g *generator) post(host, date string) []byte {
	path := "/inst" + strconv.FormatUint(g.n%3, 10) + "/sessions"
	body := postBody(g.unique())
	md5 := hmac.ContentMD5(body)
	resource, _ := g.rule.Resource(path, "")
	sig := g.signer.Sign(&hmac.Request{
		Method: "POST", ContentMD5: md5, ContentType: mdxType, Date: date,
		Accept: mdxType, SessionKey: "", Resource: resource,
	})
	head := "POST " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nAccept: " + mdxType +
		"\r\nContent-Type: " + mdxType +
		"\r\nDate: " + date +
		"\r\nContent-MD5: " + md5 +
		"\r\nMDX-Session-Key: " +
		"\r\nMDX-HMAC: " + sig +
		"\r\nMDX-Job-Type: background" +
		"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	b := append(g.alloc(len(head)+len(body)), head...)
	return append(b, body...)
}

// tamper returns a copy of req with the first digit of its MDX-HMAC
// changed, which no verifier may accept.
func tamper(req []byte) []byte {
	out := append([]byte(nil), req...)
	i := bytes.Index(out, []byte("\r\nMDX-HMAC: "))
	if i < 0 {
		panic("no MDX-HMAC in the request")
	}
	i += len("\r\nMDX-HMAC: ")
	if out[i] == '0' {
		out[i] = '1'
	} else {
		out[i] = '0'
	}
	return out
}
