// Package cli holds mxgate's own commands: mdx-sign, which signs a request as
// MX signs it; fdx-dev, which writes a development PKI and token for the FDX
// example; hash-secret; state-names; and healthcheck, a readiness probe for
// container runtimes.
package cli

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/hmac"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "mdx-sign",
		Usage: "--url <url> [--method <verb>] [--body <file>] [--key-env <VAR> | --key-file <file>] [--algorithm <alg>] [--session-key <key>] [--resource final|path] [--base-path <prefix>] [--resource-query] [--curl]",
		Short: "Signs an MDX On Demand request and prints its headers or a curl command",
		Long: `
Computes the Date, Content-MD5 and MDX-HMAC headers of an MDX On Demand v5
request, the way MX signs the requests it sends to an FI's endpoint, so that
an endpoint behind mdx_hmac can be exercised by hand.

The key is read from the environment variable named by --key-env (default
MDX_HMAC_KEY) or from --key-file, never from the command line, so that it
stays out of shell history and process listings.

--url           the full request URL; its path gives the signed resource
--method        the HTTP verb (default GET, or POST when --body is given)
--body          a file holding the body ('-' for standard input)
--algorithm     sha1, sha224, sha256, sha384 or sha512 (default sha1)
--session-key   the MDX-Session-Key value (empty on /sessions)
--resource      final (default: the last path segment) or path
--base-path     with --resource path: the prefix stripped before signing;
                {name} matches any one segment
--resource-query  with --resource path: sign the query string too
--date          UNIX seconds to sign (default now)
--curl          print a ready curl command instead of headers
`,
		CobraFunc: func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.String("url", "", "request URL")
			f.String("method", "", "HTTP verb")
			f.String("body", "", "body file, or - for stdin")
			f.String("key-env", "MDX_HMAC_KEY", "environment variable holding the base64 key")
			f.String("key-file", "", "file holding the base64 key")
			f.String("algorithm", "sha1", "HMAC algorithm")
			f.String("session-key", "", "MDX-Session-Key value")
			f.String("content-type", "", "Content-Type (default: the MDX v5 type when there is a body)")
			f.String("accept", refusal.MDXContentType, "Accept")
			f.String("resource", "final", "resource derivation: final or path")
			f.String("base-path", "", "base path stripped with --resource path")
			f.Bool("resource-query", false, "sign the query string with --resource path")
			f.Int64("date", 0, "UNIX seconds to sign (default now)")
			f.Bool("curl", false, "print a curl command")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdMDXSign)
		},
	})
}

// signOptions are the inputs of one mdx-sign run.
type signOptions struct {
	URL, Method, ContentType, Accept, SessionKey string
	Resource, BasePath                           string
	ResourceQuery                                bool
	Algorithm                                    string
	Key                                          string // base64
	Body                                         []byte
	BodyFile                                     string // for the curl command
	Date                                         time.Time
}

// signedRequest is what mdx-sign computed.
type signedRequest struct {
	Method, URL string
	Headers     [][2]string // in the order they are printed
	BodyFile    string
}

func cmdMDXSign(fs caddycmd.Flags) (int, error) {
	o := signOptions{
		URL:           fs.String("url"),
		Method:        fs.String("method"),
		ContentType:   fs.String("content-type"),
		Accept:        fs.String("accept"),
		SessionKey:    fs.String("session-key"),
		Resource:      fs.String("resource"),
		BasePath:      fs.String("base-path"),
		ResourceQuery: fs.Bool("resource-query"),
		Algorithm:     fs.String("algorithm"),
		BodyFile:      fs.String("body"),
		Date:          time.Now(),
	}
	if d := fs.Int("date"); d != 0 {
		o.Date = time.Unix(int64(d), 0)
	}
	var err error
	switch kf := fs.String("key-file"); {
	case kf != "":
		b, err := os.ReadFile(kf)
		if err != nil {
			return exitCodeFailed, fmt.Errorf("reading key file: %w", err)
		}
		o.Key = string(b)
	default:
		name := fs.String("key-env")
		o.Key = os.Getenv(name)
		if o.Key == "" {
			return exitCodeFailed, fmt.Errorf("no key: set %s to the base64 HMAC key, or use --key-file", name)
		}
	}
	switch o.BodyFile {
	case "":
	case "-":
		o.Body, err = io.ReadAll(os.Stdin)
	default:
		o.Body, err = os.ReadFile(o.BodyFile)
	}
	if err != nil {
		return exitCodeFailed, fmt.Errorf("reading body: %w", err)
	}
	sr, err := signMDXRequest(o)
	if err != nil {
		return exitCodeFailed, err
	}
	if fs.Bool("curl") {
		fmt.Println(sr.curl())
	} else {
		for _, h := range sr.Headers {
			fmt.Printf("%s: %s\n", h[0], h[1])
		}
	}
	return 0, nil
}

// exitCodeFailed mirrors caddy's exit code for a command that
// could not start its work.
const exitCodeFailed = 1

// signMDXRequest signs the request o describes with the same code the
// mdx_hmac handler verifies with.
func signMDXRequest(o signOptions) (*signedRequest, error) {
	if o.URL == "" {
		return nil, errors.New("--url is required")
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--url %q is not an absolute URL", o.URL)
	}
	alg, err := hmac.ParseAlgorithm(o.Algorithm)
	if err != nil {
		return nil, err
	}
	key, err := hmac.ParseKey(o.Key)
	if err != nil {
		return nil, err
	}
	rule, err := hmac.FinalSegment(), nil
	switch o.Resource {
	case "", "final":
		if o.BasePath != "" || o.ResourceQuery {
			return nil, errors.New("--base-path and --resource-query need --resource path")
		}
	case "path":
		rule, err = hmac.PathAfter(o.BasePath, o.ResourceQuery)
	default:
		err = fmt.Errorf("--resource %q: want final or path", o.Resource)
	}
	if err != nil {
		return nil, err
	}
	resource, err := rule.Resource(u.EscapedPath(), u.RawQuery)
	if err != nil {
		return nil, err
	}
	method := strings.ToUpper(o.Method)
	if method == "" {
		method = "GET"
		if len(o.Body) > 0 {
			method = "POST"
		}
	}
	ctype := o.ContentType
	if ctype == "" && len(o.Body) > 0 {
		ctype = refusal.MDXContentType
	}
	req := hmac.Request{
		Method:      method,
		ContentMD5:  hmac.ContentMD5(o.Body),
		ContentType: ctype,
		Date:        hmac.FormatDate(o.Date),
		Accept:      o.Accept,
		SessionKey:  o.SessionKey,
		Resource:    resource,
	}
	sig, err := hmac.Sign(alg, key, &req)
	if err != nil {
		return nil, err
	}
	sr := &signedRequest{Method: method, URL: u.String(), BodyFile: o.BodyFile}
	add := func(k, v string) { sr.Headers = append(sr.Headers, [2]string{k, v}) }
	if req.Accept != "" {
		add("Accept", req.Accept)
	}
	if req.ContentType != "" {
		add("Content-Type", req.ContentType)
	}
	add("Date", req.Date)
	add("Content-MD5", req.ContentMD5)
	if req.SessionKey != "" {
		add("MDX-Session-Key", req.SessionKey)
	}
	add("MDX-Job-Type", "foreground")
	add("MDX-HMAC", sig)
	return sr, nil
}

func (sr *signedRequest) curl() string {
	var b strings.Builder
	b.WriteString("curl -sS -i -X " + sr.Method)
	for _, h := range sr.Headers {
		b.WriteString(" -H " + shellQuote(h[0]+": "+h[1]))
	}
	if sr.BodyFile != "" {
		b.WriteString(" --data-binary " + shellQuote("@"+sr.BodyFile))
	}
	b.WriteString(" " + shellQuote(sr.URL))
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
