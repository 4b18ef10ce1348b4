package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
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
const rootFooter = `mxgate's documentation is its README and the manual in its docs/. For
Caddy's own directives and options, see the documentation of Caddy %s.`

// caddyCommands are the commands of Caddy's that mxgate offers as Caddy
// defines them, each with mxgate's one-line summary for its command list.
// Their help is composed by caddyHelp: the summary, mxgate's notes, then
// Caddy's own text under a line that says whose it is. A command a Caddy
// upgrade adds is offered with Caddy's own help until it is listed here
// (TestEveryCommandIsAccountedFor fails meanwhile).
var caddyCommands = map[string]string{
	"adapt":         "Adapts a configuration to the JSON mxgate loads",
	"environ":       "Prints the environment mxgate sees",
	"file-server":   "Serves the files of a directory, from the command line",
	"fmt":           "Formats a Caddyfile",
	"hash-password": "Hashes a password for basic_auth, and writes it in base64",
	"list-modules":  "Lists the modules built into mxgate",
	"reload":        "Gives the running mxgate a new configuration",
	"respond":       "Answers HTTP requests with a fixed response, for development and tests",
	"reverse-proxy": "Runs a reverse proxy from the command line",
	"run":           "Runs mxgate in the foreground until it is stopped",
	"start":         "Starts mxgate in the background, then returns",
	"stop":          "Stops a running mxgate gracefully, through its admin endpoint",
	"storage":       "Exports and imports the contents of mxgate's storage (experimental)",
	"trust":         "Installs a local CA's certificate into the system's trust stores",
	"untrust":       "Removes a local CA's certificate from the system's trust stores",
	"validate":      "Loads and provisions a configuration without running it",
}

// ownCommands are the commands mxgate's packages register with
// caddycmd.RegisterCommand, in mxgate's words already.
var ownCommands = []string{"fdx-dev", "hash-secret", "healthcheck", "mdx-sign", "state-names"}

// caddyHeading introduces Caddy's own help text of a command.
const caddyHeading = `Caddy's own description of the command follows. mxgate is Caddy with
mxgate's modules: where it says caddy or Caddy, it means mxgate.`

// caddyHelp returns c, one of Caddy's commands, with mxgate's summary as
// its short help and, as its long help, the summary, then mxgate's notes,
// then Caddy's own long help under caddyHeading.
func caddyHelp(c caddycmd.Command, summary string, notes ...string) caddycmd.Command {
	parts := []string{summary + "."}
	for _, n := range notes {
		parts = append(parts, strings.TrimSpace(n))
	}
	if long := strings.TrimSpace(c.Long); long != "" {
		parts = append(parts, caddyHeading, long)
	}
	c.Short, c.Long = summary, "\n"+strings.Join(parts, "\n\n")+"\n"
	return c
}

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

	caddys := caddycmd.Commands()
	overrides := map[string]caddycmd.Command{
		versionCommand.Name:   versionCommand,
		buildInfoCommand.Name: buildInfoCommand,
		"reload":              reloadCommand(caddyHelp(caddys["reload"], caddyCommands["reload"], redactingNote, adminClientNote)),
		"stop":                stopCommand(caddyHelp(caddys["stop"], caddyCommands["stop"], adminClientNote)),
	}
	for _, name := range sortedCommandNames() {
		if slices.Contains(removedCommands, name) {
			continue
		}
		cmd, ok := overrides[name]
		if summary, summarized := caddyCommands[name]; !ok && summarized {
			var notes []string
			if slices.Contains(redactingCommands, name) {
				notes = append(notes, redactingNote)
			}
			cmd = caddyHelp(caddys[name], summary, notes...)
		} else if !ok {
			cmd = caddys[name] // mxgate's own, or new in Caddy
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
// for its own root, except that a Func's status reaches exitStatus.
func toCobra(c caddycmd.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   strings.TrimSpace(c.Name + " " + c.Usage),
		Short: c.Short,
		Long:  c.Long,
	}
	if c.CobraFunc != nil {
		c.CobraFunc(cmd)
	} else {
		cmd.RunE = runFunc(c.Func)
		cmd.Flags().AddGoFlagSet(c.Flags)
	}
	return cmd
}

// statusError carries a command's exit status above 1 to exitStatus.
type statusError struct {
	status int
	err    error
}

func (e *statusError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exiting with status %d", e.status)
	}
	return e.err.Error()
}

func (e *statusError) Unwrap() error { return e.err }

// runFunc is caddycmd.WrapCommandFuncForCobra for mxgate's commands: it
// logs f's error through Caddy's logger, as Caddy's wrapper does, and
// returns a status above 1 in a statusError, which exitStatus reads. (The
// status of Caddy's own commands, whose cobra functions Caddy sets, comes
// back in an error type Caddy does not export: it is exit status 1.)
func runFunc(f caddycmd.CommandFunc) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		status, err := f(caddycmd.Flags{FlagSet: cmd.Flags()})
		if err != nil {
			caddy.Log().Error(err.Error())
			cmd.SilenceErrors = true
		}
		if status > 1 {
			return &statusError{status: status, err: err}
		}
		return err
	}
}

// execute runs root with args and returns the process's exit status.
func execute(root *cobra.Command, args []string) int {
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		return exitStatus(err)
	}
	return 0
}

// exitStatus is the exit status an error from a command stands for: the
// status a statusError carries, else 1.
func exitStatus(err error) int {
	if se, ok := errors.AsType[*statusError](err); ok && se.status > 1 {
		return se.status
	}
	return 1
}
