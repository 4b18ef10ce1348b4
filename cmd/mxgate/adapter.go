package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/caddymodule/redact"
)

// redactingCommands are the commands that load a configuration file. mxgate
// loads it through its own adapters (redact.CaddyfileAdapter,
// redact.JSONAdapter), which give every log that names no encoder
// mxgate_redact, so that no log writes MDX-HMAC or MDX-Session-Key
// unless its configuration names an encoder that does. (start runs run;
// state-names provisions the configuration as validate does.)
var redactingCommands = []string{"run", "reload", "validate", "adapt", "state-names"}

// redactingNote is mxgate's note in the help of redactingCommands.
const redactingNote = `
In mxgate, a Caddyfile (--adapter caddyfile, or a file that Caddy takes for
one) is adapted by mxgate-caddyfile, and a JSON file (no --adapter) is read
by mxgate-json: both give every log that names no encoder, and a default log
when there is none, the mxgate_redact encoder, which writes REDACTED for the
credential headers. A log whose encoder is named is left as written.
'mxgate adapt' shows the result.
`

// loadThroughRedact makes cmd, one of redactingCommands, load its
// configuration through mxgate's adapters: it sets --adapter (and --config,
// for an adjacent Caddyfile) before cmd runs.
func loadThroughRedact(cmd *cobra.Command) {
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		flags := c.Flags()
		config, _ := flags.GetString("config")
		adapter, _ := flags.GetString("adapter")
		if resume, _ := flags.GetBool("resume"); resume && exists(caddy.ConfigAutosavePath) {
			return run(c, args) // the autosaved JSON, as it was loaded
		}
		config2, adapter2 := adapterFor(c.Name(), config, adapter, flags.Changed("adapter"), exists)
		if config2 != config {
			if err := flags.Set("config", config2); err != nil {
				return err
			}
		}
		if adapter2 != adapter {
			if err := flags.Set("adapter", adapter2); err != nil {
				return err
			}
		}
		return run(c, args)
	}
}

// adapterFor returns the --config and --adapter with which command loads
// the configuration that config and adapter (adapterSet if given on the
// command line) name through mxgate's adapters: Caddy's caddyfile adapter
// becomes mxgate-caddyfile, JSON (no adapter) mxgate-json. Where Caddy
// would pick a Caddyfile by itself (a file named as one; an adjacent
// Caddyfile when there is no --config), it is named. Another adapter, or
// no configuration at all, is left as it is. exists reports whether a
// file exists.
func adapterFor(command, config, adapter string, adapterSet bool, exists func(string) bool) (string, string) {
	if command == "adapt" {
		// adapt's --adapter is caddyfile unless given; a JSON file shows
		// its effective configuration too
		if !adapterSet && strings.EqualFold(filepath.Ext(config), ".json") {
			return config, redact.JSONAdapter
		}
		if adapter == "caddyfile" {
			return config, redact.CaddyfileAdapter
		}
		return config, adapter
	}
	switch {
	case adapter == "caddyfile":
		return config, redact.CaddyfileAdapter
	case adapter != "":
		return config, adapter
	case config == "":
		if exists("Caddyfile") {
			return "Caddyfile", redact.CaddyfileAdapter
		}
		return config, adapter
	case caddyfileName(config):
		return config, redact.CaddyfileAdapter
	default:
		return config, redact.JSONAdapter
	}
}

// caddyfileName reports whether Caddy takes the file config for a
// Caddyfile when no adapter is given: its name starts with "caddyfile" or
// ends in ".caddyfile", in any case, and it does not end in ".json"
// (caddycmd.LoadConfig; TestAdapterForAgreesWithCaddy checks it).
func caddyfileName(config string) bool {
	base := strings.ToLower(filepath.Base(config))
	if filepath.Ext(base) == ".json" {
		return false
	}
	return strings.HasPrefix(base, "caddyfile") || strings.HasSuffix(base, ".caddyfile")
}

// exists reports whether a file is at path. An error other than its absence
// counts as there: the command that reads it reports the error.
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
