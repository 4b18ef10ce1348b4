package redact

import (
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// The config adapters that give every log naming no encoder mxgate_redact.
// mxgate's run, reload, validate and adapt commands load a Caddyfile and a
// JSON configuration through them; the admin API takes them by
// Content-Type (text/mxgate-caddyfile, application/mxgate-json).
const (
	CaddyfileAdapter = "mxgate-caddyfile"
	JSONAdapter      = "mxgate-json"
)

func init() {
	caddyconfig.RegisterAdapter(CaddyfileAdapter, Adapter{Inner: "caddyfile"})
	caddyconfig.RegisterAdapter(JSONAdapter, Adapter{})
}

// Adapter adapts a configuration with the adapter named Inner (or takes
// it as Caddy's JSON when Inner is empty), then gives mxgate_redact to
// every log that names no encoder (WithDefaultEncoder). The zero value
// is the JSON adapter.
type Adapter struct {
	// Inner names the adapter that turns the configuration into JSON
	// first. Default: none, the configuration is JSON.
	Inner string
}

// Adapt implements caddyconfig.Adapter.
func (a Adapter) Adapt(body []byte, options map[string]any) ([]byte, []caddyconfig.Warning, error) {
	var warnings []caddyconfig.Warning
	if a.Inner != "" {
		inner := caddyconfig.GetAdapter(a.Inner)
		if inner == nil {
			return nil, nil, fmt.Errorf("the %s config adapter is not in this build", a.Inner)
		}
		var err error
		if body, warnings, err = inner.Adapt(body, options); err != nil {
			return nil, warnings, err
		}
	}
	out, err := WithDefaultEncoder(body)
	if a.Inner == "" && errors.Is(err, errNotJSON) {
		// as Caddy says it of a file it takes for JSON
		err = fmt.Errorf("%w; did you mean to use a config adapter (the --adapter flag)?", err)
	}
	return out, warnings, err
}

// Interface guard
var _ caddyconfig.Adapter = Adapter{}
