package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/mxgate/mxgate/internal/version"
)

// versionCommand replaces Caddy's, which prints only Caddy's version.
var versionCommand = caddycmd.Command{
	Name:  "version",
	Short: "Prints mxgate's version, commit, and the Caddy version it embeds",
	Long: `
Prints one line each for mxgate's version, the commit it was built from (with
-dirty when the work tree had uncommitted changes), the Caddy version it
embeds, and the Go version that built it.

The Makefile and the container image stamp mxgate's version from
'git describe --tags --always --dirty', and that stamp wins. A binary built
otherwise (plain 'go build', xcaddy) takes the module version Go recorded
(a tag or pseudo-version when Go stamped VCS information, or the required
version when mxgate is a dependency), else the VCS revision Go recorded
(-dirty for uncommitted changes), else says unknown.
`,
	Func: func(caddycmd.Flags) (int, error) {
		fmt.Print(version.Get().String())
		return caddy.ExitCodeSuccess, nil
	},
}

// buildInfoCommand replaces Caddy's, so that a binary built by the Makefile
// shows mxgate's version rather than "(devel)".
var buildInfoCommand = caddycmd.Command{
	Name:  "build-info",
	Short: "Prints information about this build",
	Long: `
Prints the Go build information of this binary: the Go version, mxgate's
module with its version, every module linked in with its version and checksum,
and the build settings.

mxgate's module is shown at the version 'mxgate version' prints (the one
stamped by the Makefile or the image build wins over the "(devel)" or the
pseudo-version the Go toolchain recorded), so the two commands agree.
`,
	Func: func(caddycmd.Flags) (int, error) {
		bi, ok := version.BuildInfo()
		if !ok {
			return caddy.ExitCodeFailedStartup, errors.New("no build information")
		}
		fmt.Println(bi)
		return caddy.ExitCodeSuccess, nil
	},
}

// manpageCommand writes man pages for every command of root, as Caddy's
// root does for its own.
func manpageCommand(root *cobra.Command) caddycmd.Command {
	return caddycmd.Command{
		Name:  "manpage",
		Usage: "--directory <path>",
		Short: "Generates the manual pages for mxgate's commands",
		Long: `
Generates the manual pages for mxgate's commands into the directory given by
--directory, in section 8 (System Administration). The directory is created if
it does not exist.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("directory", "o", "", "The output directory where the manpages are generated")
			cmd.RunE = runFunc(func(fl caddycmd.Flags) (int, error) {
				dir := strings.TrimSpace(fl.String("directory"))
				if dir == "" {
					return caddy.ExitCodeFailedQuit, errors.New("the output directory (--directory) is required")
				}
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return caddy.ExitCodeFailedQuit, err
				}
				if err := doc.GenManTree(root, &doc.GenManHeader{Title: binaryName, Section: "8"}, dir); err != nil {
					return caddy.ExitCodeFailedQuit, err
				}
				return caddy.ExitCodeSuccess, nil
			})
		},
	}
}

// completionCommand prints shell completion scripts for mxgate.
func completionCommand() caddycmd.Command {
	return caddycmd.Command{
		Name:  "completion",
		Usage: "[bash|zsh|fish|powershell]",
		Short: "Generate completion script",
		Long: fmt.Sprintf(`
Prints a completion script for the given shell. To load completions:

	Bash:   source <(%[1]s completion bash)
	        or once: %[1]s completion bash > /etc/bash_completion.d/%[1]s
	Zsh:    %[1]s completion zsh > "${fpath[1]}/_%[1]s"
	fish:   %[1]s completion fish > ~/.config/fish/completions/%[1]s.fish
	PowerShell:
	        %[1]s completion powershell | Out-String | Invoke-Expression
`, binaryName),
		CobraFunc: func(cmd *cobra.Command) {
			cmd.DisableFlagsInUseLine = true
			cmd.ValidArgs = []string{"bash", "zsh", "fish", "powershell"}
			cmd.Args = cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs)
			cmd.RunE = func(cmd *cobra.Command, args []string) error {
				out := cmd.OutOrStdout()
				switch args[0] {
				case "bash":
					return cmd.Root().GenBashCompletion(out)
				case "zsh":
					return cmd.Root().GenZshCompletion(out)
				case "fish":
					return cmd.Root().GenFishCompletion(out, true)
				default:
					return cmd.Root().GenPowerShellCompletionWithDesc(out)
				}
			}
		},
	}
}
