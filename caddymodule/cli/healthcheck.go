package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/version"
)

// HealthURLEnv names the environment variable that gives healthcheck its
// URL when --url is not given; the container image sets it.
const HealthURLEnv = "MXGATE_HEALTH_URL"

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "healthcheck",
		Usage: "[--url <url>] [--timeout <duration>]",
		Short: "Exits 0 when a readiness URL answers 2xx, else 1",
		Long: `
Sends one GET to a readiness URL of a running mxgate and exits 0 if it answers
with a 2xx status, or 1 (with the status and the start of the answer on
stderr) if it answers otherwise, does not answer within --timeout, or
redirects. It needs no shell and no curl, so a container image without either
can use it as its HEALTHCHECK.

The URL is --url, else $` + HealthURLEnv + `. Only http and https URLs are
accepted; https certificates are verified as usual.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("url", "", "readiness URL (default $"+HealthURLEnv+")")
			cmd.Flags().Duration("timeout", 5*time.Second, "give up after this long")
			cmd.Args = cobra.NoArgs
			cmd.RunE = runHealthcheck
		},
	})
}

var errUnhealthy = errors.New("unhealthy")

func runHealthcheck(cmd *cobra.Command, _ []string) error {
	rawURL, _ := cmd.Flags().GetString("url")
	timeout, _ := cmd.Flags().GetDuration("timeout")
	if rawURL == "" {
		rawURL = os.Getenv(HealthURLEnv)
	}
	err := probe(cmd.Context(), rawURL, timeout)
	if err != nil {
		cmd.SilenceErrors = true
		fmt.Fprintf(cmd.ErrOrStderr(), "mxgate healthcheck: %v\n", err)
		return errUnhealthy
	}
	return nil
}

// probe GETs rawURL and returns nil for a 2xx answer. Its errors are one
// line, and name the URL without any user information it holds.
func probe(ctx context.Context, rawURL string, timeout time.Duration) error {
	if rawURL == "" {
		return fmt.Errorf("no URL: give --url or set $%s", HealthURLEnv)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("the URL must be an absolute http or https URL")
	}
	if timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return errors.New("the URL must be an absolute http or https URL")
	}
	req.Header.Set("User-Agent", "mxgate-healthcheck/"+version.Get().Version)
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	where := u.Redacted()
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: no answer within %s", where, timeout)
		}
		return fmt.Errorf("%s: %v", where, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg := fmt.Sprintf("%s: %s", where, resp.Status)
	if s := oneLine(string(body), 200); s != "" {
		msg += ": " + s
	}
	return errors.New(msg)
}

// unwrapURLError drops url.Error's repetition of the method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// oneLine folds s to one line of printable characters, at most n runes.
func oneLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}
