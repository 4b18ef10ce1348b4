package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/hmac"
)

const testKey = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="

var testDate = time.Unix(1382975431, 0)

// verify checks sr's MDX-HMAC with the library's verifier over the request
// its headers describe, with resource derived by rule.
func verify(t *testing.T, sr *signedRequest, alg hmac.Algorithm, rule hmac.ResourceRule, body []byte) error {
	t.Helper()
	h := map[string]string{}
	for _, kv := range sr.Headers {
		h[kv[0]] = kv[1]
	}
	if err := hmac.CheckContentMD5(body, h["Content-MD5"]); err != nil {
		return err
	}
	u := strings.SplitN(strings.SplitN(sr.URL, "://", 2)[1], "/", 2)[1]
	path, query, _ := strings.Cut("/"+u, "?")
	resource, err := rule.Resource(path, query)
	if err != nil {
		return err
	}
	k, _ := hmac.ParseKey(testKey)
	v, err := hmac.NewVerifier(alg, k)
	if err != nil {
		return err
	}
	return v.Verify(&hmac.Request{Method: sr.Method, ContentMD5: h["Content-MD5"], ContentType: h["Content-Type"], Date: h["Date"],
		Accept: h["Accept"], SessionKey: h["MDX-Session-Key"], Resource: resource}, h["MDX-HMAC"])
}

func TestSignMDXRequestVerifies(t *testing.T) {
	pathRule, _ := hmac.PathAfter("/mdx/{institution_id}", true)
	for name, c := range map[string]struct {
		o    signOptions
		alg  hmac.Algorithm
		rule hmac.ResourceRule
	}{
		"session":   {signOptions{URL: "https://fi.example/inst1/sessions", Body: []byte("<mdx/>"), Accept: refusal.MDXContentType}, hmac.SHA1, hmac.FinalSegment()},
		"get":       {signOptions{URL: "https://fi.example/inst1/accounts/7/transactions?page=2", SessionKey: "sess", Accept: refusal.MDXContentType, Algorithm: "sha256"}, hmac.SHA256, hmac.FinalSegment()},
		"path rule": {signOptions{URL: "https://fi.example/mdx/inst1/accounts?x=1", Resource: "path", BasePath: "/mdx/{institution_id}", ResourceQuery: true, Method: "delete", Algorithm: "sha512"}, hmac.SHA512, pathRule},
	} {
		c.o.Key, c.o.Date = testKey, testDate
		if c.o.Algorithm == "" {
			c.o.Algorithm = "sha1"
		}
		sr, err := signMDXRequest(c.o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := verify(t, sr, c.alg, c.rule, c.o.Body); err != nil {
			t.Errorf("%s: the signature does not verify: %v", name, err)
		}
		// a changed session key, date or body does not
		for i, kv := range sr.Headers {
			if kv[0] == "Date" {
				sr.Headers[i][1] = "1382975432"
			}
		}
		if err := verify(t, sr, c.alg, c.rule, c.o.Body); err == nil {
			t.Errorf("%s: a changed Date still verifies", name)
		}
	}
}

func TestSignMDXRequestHeaders(t *testing.T) {
	sr, err := signMDXRequest(signOptions{URL: "https://fi.example/inst1/sessions", Key: testKey, Algorithm: "sha1", Date: testDate,
		Body: []byte("<mdx/>"), SessionKey: "s-1", Accept: refusal.MDXContentType, BodyFile: "session.xml"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, kv := range sr.Headers {
		names = append(names, kv[0])
	}
	if sr.Method != "POST" || strings.Join(names, ",") != "Accept,Content-Type,Date,Content-MD5,MDX-Session-Key,MDX-Job-Type,MDX-HMAC" {
		t.Errorf("%s %v", sr.Method, names)
	}
	if sr.Headers[1][1] != refusal.MDXContentType || sr.Headers[2][1] != "1382975431" || sr.Headers[3][1] != hmac.ContentMD5([]byte("<mdx/>")) {
		t.Errorf("headers %v", sr.Headers)
	}
	// no body, no Accept: GET, and neither Content-Type nor Accept is sent
	sr, _ = signMDXRequest(signOptions{URL: "http://fi.example/x/accounts", Key: testKey, Algorithm: "sha1", Date: testDate})
	if sr.Method != "GET" || sr.Headers[0][0] != "Date" {
		t.Errorf("bodiless: %s %v", sr.Method, sr.Headers)
	}
}

func TestSignMDXRequestErrors(t *testing.T) {
	for name, c := range map[string]struct {
		o   signOptions
		msg string
	}{
		"no url":            {signOptions{}, "--url is required"},
		"relative url":      {signOptions{URL: "/inst1/sessions"}, `--url "/inst1/sessions" is not an absolute URL`},
		"algorithm":         {signOptions{URL: "https://fi/x", Algorithm: "md5"}, ""},
		"short key":         {signOptions{URL: "https://fi/x", Algorithm: "sha1", Key: "c2hvcnQ="}, ""},
		"base path, final":  {signOptions{URL: "https://fi/x", Algorithm: "sha1", Key: testKey, BasePath: "/a"}, "--base-path and --resource-query need --resource path"},
		"query, final":      {signOptions{URL: "https://fi/x", Algorithm: "sha1", Key: testKey, Resource: "final", ResourceQuery: true}, "need --resource path"},
		"resource":          {signOptions{URL: "https://fi/x", Algorithm: "sha1", Key: testKey, Resource: "all"}, `--resource "all": want final or path`},
		"bad base path":     {signOptions{URL: "https://fi/x", Algorithm: "sha1", Key: testKey, Resource: "path", BasePath: "nope"}, ""},
		"outside base path": {signOptions{URL: "https://fi/other/x", Algorithm: "sha1", Key: testKey, Resource: "path", BasePath: "/mdx"}, ""},
	} {
		_, err := signMDXRequest(c.o)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		} else if strings.Contains(err.Error(), "c2hvcnQ=") {
			t.Errorf("%s: the error reveals the key", name)
		}
	}
}

func TestCurl(t *testing.T) {
	sr := &signedRequest{Method: "POST", URL: "https://fi.example/it's", Headers: [][2]string{{"Accept", "a"}, {"MDX-Session-Key", "o'k"}}, BodyFile: "my body.xml"}
	want := `curl -sS -i -X POST -H 'Accept: a' -H 'MDX-Session-Key: o'\''k' --data-binary '@my body.xml' 'https://fi.example/it'\''s'`
	if got := sr.curl(); got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

// command returns the registered command name with its flags set, and
// runs it, returning what it printed.
func command(t *testing.T, name string, flags map[string]string) (*cobra.Command, func() (string, error)) {
	t.Helper()
	c, ok := caddycmd.Commands()[name]
	if !ok {
		t.Fatalf("%s is not registered", name)
	}
	cmd := &cobra.Command{Use: c.Name}
	c.CobraFunc(cmd)
	for k, v := range flags {
		if err := cmd.Flags().Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	return cmd, func() (string, error) { return stdout(t, func() error { return cmd.RunE(cmd, nil) }) }
}

// stdout runs f and returns what it wrote to standard output.
func stdout(t *testing.T, f func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	ferr := f()
	os.Stdout = saved
	w.Close()
	return <-done, ferr
}

func TestMDXSignCommand(t *testing.T) {
	t.Setenv("MDX_HMAC_KEY", testKey)
	dir := t.TempDir()
	body := filepath.Join(dir, "session.xml")
	if err := os.WriteFile(body, []byte("<mdx/>"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, run := command(t, "mdx-sign", map[string]string{"url": "https://fi.example/inst1/sessions", "body": body, "date": "1382975431"})
	out, err := run()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := signMDXRequest(signOptions{URL: "https://fi.example/inst1/sessions", Key: testKey, Algorithm: "sha1", Date: testDate,
		Body: []byte("<mdx/>"), Accept: refusal.MDXContentType, Resource: "final"})
	var lines []string
	for _, kv := range want.Headers {
		lines = append(lines, kv[0]+": "+kv[1])
	}
	if out != strings.Join(lines, "\n")+"\n" {
		t.Errorf("printed\n%s\nwant\n%s", out, strings.Join(lines, "\n"))
	}
	if strings.Contains(out, testKey) {
		t.Error("the key was printed")
	}

	// --key-file, --curl, the body from standard input
	keyFile := filepath.Join(dir, "key")
	_ = os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600)
	stdin, _ := os.Open(body)
	saved := os.Stdin
	os.Stdin = stdin
	t.Cleanup(func() { os.Stdin = saved; stdin.Close() })
	_, run = command(t, "mdx-sign", map[string]string{"url": "https://fi.example/inst1/sessions", "body": "-", "key-file": keyFile, "curl": "true", "key-env": "MXGATE_NO_SUCH_VAR"})
	out, err = run()
	if err != nil || !strings.HasPrefix(out, "curl -sS -i -X POST -H 'Accept: "+refusal.MDXContentType+"'") || !strings.Contains(out, "--data-binary '@-'") {
		t.Errorf("curl: %v %q", err, out)
	}
	if strings.Contains(out, testKey) {
		t.Error("the key was printed")
	}
}

func TestMDXSignCommandErrors(t *testing.T) {
	t.Setenv("MXGATE_EMPTY_KEY", "")
	t.Setenv("MDX_HMAC_KEY", testKey)
	for name, c := range map[string]struct {
		flags map[string]string
		msg   string
	}{
		"no key":        {map[string]string{"url": "https://fi/x", "key-env": "MXGATE_EMPTY_KEY"}, "no key: set MXGATE_EMPTY_KEY to the base64 HMAC key, or use --key-file"},
		"key file gone": {map[string]string{"url": "https://fi/x", "key-file": filepath.Join(t.TempDir(), "none")}, "reading key file"},
		"body gone":     {map[string]string{"url": "https://fi/x", "body": filepath.Join(t.TempDir(), "none")}, "reading body"},
		"no url":        {map[string]string{}, "--url is required"},
	} {
		_, run := command(t, "mdx-sign", c.flags)
		out, err := run()
		if err == nil || !strings.Contains(err.Error(), c.msg) || out != "" {
			t.Errorf("%s: %v %q, want %q", name, err, out, c.msg)
		}
	}
}
