package secret_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/secret"
	"github.com/mxgate/mxgate/caddymodule/redact"
)

type nowhere struct{}

func (nowhere) Write(p []byte) (int, error) { return len(p), nil }
func (nowhere) Sync() error                 { return nil }

// TestLeakedHeaders: the probe sees which headers an encoder would write,
// whatever the encoder, and writes nothing itself.
func TestLeakedHeaders(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	load := func(enc zapcore.Encoder) zapcore.Encoder {
		if p, ok := enc.(caddy.Provisioner); ok {
			if err := p.Provision(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return enc
	}
	core := func(enc zapcore.Encoder) zapcore.Core {
		return zapcore.NewCore(load(enc), nowhere{}, zapcore.DebugLevel)
	}
	var filterFields map[string]json.RawMessage
	_ = json.Unmarshal([]byte(`{"request>headers>Mdx-Hmac":{"filter":"delete"}}`), &filterFields)
	all := []string{"Mdx-Hmac", "Mdx-Session-Key", "Authorization"}
	for name, c := range map[string]struct {
		core zapcore.Core
		want []string
	}{
		"json":            {core(&logging.JSONEncoder{}), all},
		"console":         {core(&logging.ConsoleEncoder{}), all},
		"mxgate_redact":   {core(&redact.Encoder{}), nil},
		"filter, partial": {core(&logging.FilterEncoder{FieldsRaw: filterFields}), []string{"Mdx-Session-Key", "Authorization"}},
		"redact and json": {zapcore.NewTee(core(&redact.Encoder{}), core(&logging.JSONEncoder{})), all},
		"sampled json":    {zapcore.NewSamplerWithOptions(core(&logging.JSONEncoder{}), 1, 1, 1), all},
		"nop":             {zapcore.NewNopCore(), nil},
	} {
		if got := secret.LeakedHeaders(c.core, all); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
}
