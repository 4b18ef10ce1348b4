package cli

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/caddymodule/internal/store"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "state-names",
		Usage: "--config <path> [--adapter <name>]",
		Short: "Prints the name of each directive's state and checks that none is shared by accident",
		Long: `
Loads a configuration as validate does (through the same adapters, every
directive provisioned, no listener opened, no store used) and prints, for
each directive that keeps state (mdx_hmac verify's replay cache,
mx_rate_limit's budgets), the namespace it is named by, its role, what it
protects and where it stands:

	mx_rate_limit  ingress  site mdx.bank.example on port 443  1f0c…  default  redis  in the server srv0 …

A namespace is "given" when the directive says namespace, "default" when
it comes from what the state protects. It fails, as loading the
configuration would, when two directives would share state by accident.
The names recorded in a Redis store by other gateways are not consulted:
that check is made when a gateway starts.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("config", "c", "", "configuration file")
			cmd.Flags().StringP("adapter", "a", "", "name of the configuration adapter")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdStateNames)
		},
	})
}

func cmdStateNames(fs caddycmd.Flags) (int, error) {
	path := fs.String("config")
	if path == "" {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--config is required")
	}
	input, _, _, err := caddycmd.LoadConfig(path, fs.String("adapter"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if err := stateNames(caddy.RemoveMetaFields(input), os.Stdout); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, nil
}

// stateNames provisions the JSON configuration input, without starting
// it, and writes the names of its directives' state to w.
func stateNames(input []byte, w io.Writer) error {
	var cfg *caddy.Config
	if err := caddy.StrictUnmarshalJSON(input, &cfg); err != nil {
		return fmt.Errorf("decoding config: %v", err)
	}
	ctx, err := caddy.ProvisionContext(cfg)
	if err != nil {
		return err
	}
	app, err := ctx.App(store.AppID)
	if err != nil {
		return err
	}
	names, err := app.(*store.App).Names()
	if err != nil {
		return err
	}
	if len(names) == 0 {
		_, err := fmt.Fprintln(w, "no directive keeps state")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIRECTIVE\tROLE\tPROTECTS\tNAMESPACE\tNAMED\tSTORE\tWHERE")
	for _, n := range names {
		named := "default"
		if n.Explicit {
			named = "given"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Identity.Directive, n.Identity.Role,
			n.Identity.Protects, n.Namespace, named, n.Store, n.Where)
	}
	return tw.Flush()
}
