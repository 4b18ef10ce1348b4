package store

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// TestReloadRenamingWarns: a reload whose directive's state is named anew
// (a host name added to its site), while the configuration it replaces
// held a state of the same kind and role on that site that the new one no
// longer names, warns, naming both; a reload that keeps the names, adds a
// site beside, or gives a namespace does not.
func TestReloadRenamingWarns(t *testing.T) {
	const warning = "STATE STARTS AFRESH"
	replay := Spec{Directive: "mdx_hmac", Kind: "replay", Options: []string{"resource", "", "base_path", ""}}
	// one configuration: a server on :443 with a site of names, holding a
	// budget and a replay cache
	type conf struct {
		app        *App
		logs       *observer.ObservedLogs
		limit, ver *Binding[state]
	}
	load := func(t *testing.T, explicit string, names ...[]string) *conf {
		t.Helper()
		logger, logs := handlertest.Logs()
		c := &conf{app: testApp(t), logs: logs}
		srv := &caddyhttp.Server{Listen: []string{":443"}}
		for i, n := range names {
			lim, ver := &handler{"limit"}, &handler{"verify"}
			srv.Routes = append(srv.Routes, route(hosts(n...), sub(route(nil, ver, lim))))
			p, err := new(Config).Provision(newContext(t), "mx_rate_limit")
			if err != nil {
				t.Fatal(err)
			}
			bl := register(c.app, srv, logger, lim, p, explicit, rlSpec, new(counter).mk)
			bv := register(c.app, srv, logger, ver, p, "", replay, new(counter).mk)
			if i == 0 {
				c.limit, c.ver = bl, bv
			}
		}
		if err := c.app.Start(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	reload := func(t *testing.T, old *conf, explicit string, names ...[]string) *conf {
		t.Helper()
		c := load(t, explicit, names...)
		old.app.halt() // the replaced configuration stops after the new one started
		return c
	}

	t.Run("a_host_name_added", func(t *testing.T) {
		old := load(t, "", []string{"127.0.0.1"})
		c := reload(t, old, "", []string{"127.0.0.1", "localhost"})
		warns := c.logs.FilterMessageSnippet(warning).All()
		if len(warns) != 2 {
			t.Fatalf("%d warnings, want one for the budget and one for the replay cache", len(warns))
		}
		for _, w := range warns {
			for _, want := range []string{"site 127.0.0.1, localhost on port 443", "site 127.0.0.1 on port 443", "`namespace`"} {
				if !strings.Contains(w.Message, want) {
					t.Errorf("the warning does not say %q: %s", want, w.Message)
				}
			}
		}
		if ns := warns[0].ContextMap()["previous_namespaces"]; ns == nil || !strings.Contains(strings.Join(toStrings(ns), " "), mustGet(t, old.limit).Namespace) {
			t.Errorf("the warning does not name the previous namespace: %v", warns[0].ContextMap())
		}
		// and a further reload of the same configuration keeps the names
		again := reload(t, c, "", []string{"127.0.0.1", "localhost"})
		if n := again.logs.FilterMessageSnippet(warning).Len(); n != 0 {
			t.Errorf("a reload that keeps the names: %d warnings", n)
		}
	})

	t.Run("a_site_added_beside", func(t *testing.T) {
		old := load(t, "", []string{"a.example"})
		c := reload(t, old, "", []string{"a.example"}, []string{"b.example"})
		if n := c.logs.FilterMessageSnippet(warning).Len(); n != 0 {
			t.Errorf("a site added beside one kept: %d warnings", n)
		}
	})

	t.Run("a_namespace_given", func(t *testing.T) {
		old := load(t, "inst1", []string{"127.0.0.1"})
		c := reload(t, old, "inst1", []string{"127.0.0.1", "localhost"})
		// the budget is named, the replay cache is not
		warns := c.logs.FilterMessageSnippet(warning).All()
		if len(warns) != 1 || !strings.Contains(warns[0].Message, "this configuration names mdx_hmac") {
			t.Errorf("with a namespace on the budget: %d warnings, want only the replay cache's", len(warns))
		}
		if mustGet(t, c.limit).Namespace != "inst1" {
			t.Error("the given namespace was not kept")
		}
	})

	t.Run("the_first_configuration", func(t *testing.T) {
		c := load(t, "", []string{"first.example"})
		if n := c.logs.FilterMessageSnippet(warning).Len(); n != 0 {
			t.Errorf("the first configuration: %d warnings", n)
		}
	})
}

func toStrings(v any) []string {
	switch v := v.(type) {
	case []string:
		return v
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
