package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/internal/version"
)

// binaryName is the root command's name in help, completions and man pages.
const binaryName = "mxgate"

// removedCommands are Caddy commands mxgate does not offer: each downloads
// a stock Caddy build from Caddy's servers and replaces the running binary
// with it, losing every mxgate module.
var removedCommands = []string{"upgrade", "add-package", "remove-package"}

const rootLong = `mxgate is a security gateway for open-banking integrations with MX: Caddy
with mxgate's modules.

It checks what MX sends to a financial institution (mx_ip_allow, mdx_hmac,
mdx_sanitize, mx_rate_limit), signs and paces what an application sends to
MX (mx_auth, mxconnect_token, mx_retry, mx_jwe), guards FDX v6 APIs
(fdx_auth), and answers what exceeds its capacity with 503 at once
(mx_conn_limit, mx_shed). Every other Caddy module and Caddyfile directive
works as it does in Caddy.

Run it in the foreground with a configuration file:

	$ mxgate run --config /etc/mxgate/Caddyfile

Check a configuration before loading it (it needs the environment variables
that the configuration reads through {$VAR} and {env.VAR}):

	$ mxgate validate --config /etc/mxgate/Caddyfile
	$ mxgate adapt --config /etc/mxgate/Caddyfile --pretty

Load a changed configuration, or rotated keys, without dropping connections:

	$ mxgate reload --config /etc/mxgate/Caddyfile --force

mxgate opens a local administration endpoint through which reload and stop
reach the running process. It can read and replace the configuration and
stop the gateway, and has no authentication of its own, so mxgate's default
is a Unix socket only the gateway's user can open: $RUNTIME_DIRECTORY/admin.sock
under systemd, else $XDG_RUNTIME_DIR/mxgate/admin.sock, else
$TMPDIR/mxgate-<uid>/admin.sock, /tmp/mxgate-<uid>/admin.sock when TMPDIR
is unset (CADDY_ADMIN or the global "admin" option changes it). reload and
stop send nothing to a socket on which another user listens. Never put it
on TCP: every local user could reach it.`

// rootFooter closes the root command's help; %s is Caddy's version.
const rootFooter = `mxgate's documentation is its README. For Caddy's own directives and
options, see the documentation of Caddy %s.`

// newRootCommand builds mxgate's command line from every command registered
// with Caddy's caddycmd.RegisterCommand (Caddy's, its standard modules' and
// mxgate's), under mxgate's name.
func newRootCommand() *cobra.Command {
	info := version.Get()
	root := &cobra.Command{
		Use:   binaryName,
		Short: "A security gateway for open-banking integrations with MX",
		Long:  rootLong,
		Example: `  $ mxgate run --config /etc/mxgate/Caddyfile
  $ mxgate validate --config /etc/mxgate/Caddyfile
  $ mxgate reload --config /etc/mxgate/Caddyfile --force
  $ mxgate version`,
		// A failed provisioning is not helped by the usage text.
		SilenceUsage: true,
		Version:      info.Short(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetHelpTemplate(root.HelpTemplate() + "\n" + fmt.Sprintf(rootFooter, info.Caddy) + "\n")

	overrides := map[string]caddycmd.Command{
		versionCommand.Name:   versionCommand,
		buildInfoCommand.Name: buildInfoCommand,
		"reload":              reloadCommand(caddycmd.Commands()["reload"]),
		"stop":                stopCommand(caddycmd.Commands()["stop"]),
	}
	for _, name := range sortedCommandNames() {
		if slices.Contains(removedCommands, name) {
			continue
		}
		cmd, ok := overrides[name]
		if !ok {
			cmd = renamed(caddycmd.Commands()[name])
		}
		c := toCobra(cmd)
		if slices.Contains(redactingCommands, name) {
			loadThroughRedact(c)
		}
		root.AddCommand(c)
	}
	root.AddCommand(toCobra(manpageCommand(root)), toCobra(completionCommand()))
	return root
}

func sortedCommandNames() []string {
	cmds := caddycmd.Commands()
	names := make([]string, 0, len(cmds))
	for name := range cmds {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// toCobra turns a caddycmd.Command into a cobra command, as caddycmd does
// for its own root.
func toCobra(c caddycmd.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   strings.TrimSpace(c.Name + " " + c.Usage),
		Short: c.Short,
		Long:  c.Long,
	}
	if c.CobraFunc != nil {
		c.CobraFunc(cmd)
	} else {
		cmd.RunE = caddycmd.WrapCommandFuncForCobra(c.Func)
		cmd.Flags().AddGoFlagSet(c.Flags)
	}
	return cmd
}

var (
	// "Caddy" as a word (not "Caddyfile", not "caddyserver.com").
	caddyWord = regexp.MustCompile(`\bCaddy\b`)
	// "caddy run", "caddy storage export": the command as typed.
	caddyInvocation = regexp.MustCompile(`\bcaddy( [a-z])`)
)

// renamed returns c with its help text speaking of mxgate where Caddy's
// commands speak of the caddy binary or the Caddy process.
func renamed(c caddycmd.Command) caddycmd.Command {
	r := func(s string) string {
		s = caddyWord.ReplaceAllString(s, binaryName)
		return caddyInvocation.ReplaceAllString(s, binaryName+"$1")
	}
	c.Short, c.Long, c.Usage = r(c.Short), r(c.Long), r(c.Usage)
	return c
}

// execute runs root with args and returns the process's exit status.
func execute(root *cobra.Command, args []string) int {
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	// Caddy has printed (or logged, as JSON) the full chain; a start-up
	// error also gets one line that names the directive and its complaint.
	if cmd != nil && slices.Contains(summarizedCommands, cmd.Name()) {
		if line := summarize(err.Error()); line != "" {
			fmt.Fprintln(root.ErrOrStderr(), line)
		}
	}
	return exitStatus(err)
}

// exitStatus is the exit status an error from a command stands for.
// caddycmd.WrapCommandFuncForCobra reports a command's status above 1 in
// an error type it does not export, with an int field ExitCode (as
// caddycmd.Main reads it); any other error is status 1.
func exitStatus(err error) int {
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			continue
		}
		if f := v.FieldByName("ExitCode"); f.IsValid() && f.CanInt() {
			if code := int(f.Int()); code > 0 {
				return code
			}
		}
	}
	return 1
}
