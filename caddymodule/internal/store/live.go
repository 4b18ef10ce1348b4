package store

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// A reload keeps a directive's state when its name is unchanged: when
// what it protects (its site's listeners, host names and path matchers;
// its MX client id) and its identity options are. A reload that changes
// them names the state anew, and it starts afresh: a replay refused
// before is admitted, a spent budget is full. That follows from naming
// state by what it protects (two sites never share), and cannot be told
// apart, in general, from replacing one site with another; so it is not
// undone, but it is never silent: a directive whose name no configuration
// of this process holds, beside one of the same kind and role on the same
// listeners or host names whose name the new configuration no longer
// holds, is logged as a warning naming both (warnRenamed).

// live are the started configurations of this process whose state is
// named: during a reload, the one being replaced and its replacement.
var live = struct {
	sync.Mutex
	apps map[*App]struct{}
}{apps: map[*App]struct{}{}}

// goLive adds a to the started configurations, warning first about the
// directives whose state a reload renamed.
func (a *App) goLive() {
	live.Lock()
	defer live.Unlock()
	if _, ok := live.apps[a]; ok {
		return
	}
	var others []*entry
	for o := range live.apps {
		others = append(others, o.entries...)
	}
	warnRenamed(a.entries, others)
	live.apps[a] = struct{}{}
}

// onConnect is called by the Redis clients (openRedis) for each new
// connection. A Redis that restarted (empty, perhaps) is reached again
// through new connections, often without any call failing first (the pool
// drops a connection its server closed before using it): so the running
// configurations record their namespaces again, at once.
func onConnect(context.Context, *redis.Conn) error {
	live.Lock()
	defer live.Unlock()
	for a := range live.apps {
		a.recordNow()
	}
	return nil
}

// leave removes a from the started configurations.
func (a *App) leave() {
	live.Lock()
	delete(live.apps, a)
	live.Unlock()
}

// stateKey is what state a directive holds: its kind and namespace.
func stateKey(e *entry) string { return e.spec.Kind + "\x00" + e.naming.Namespace }

// warnRenamed warns for each directive of mine, named by default after a
// site, whose state none of the others (the configurations running
// beside it, such as the one it replaces) holds, when one of the others of
// the same directive, kind and role, on a site sharing a listener or a
// host name with it, holds a state that mine no longer does: its state
// was most likely renamed by a change to the site, and starts afresh.
func warnRenamed(mine, others []*entry) {
	if len(others) == 0 {
		return
	}
	held := map[string]bool{}
	for _, o := range others {
		held[stateKey(o)] = true
	}
	kept := map[string]bool{}
	for _, e := range mine {
		kept[stateKey(e)] = true
	}
	for _, e := range mine {
		site := e.naming.Identity.Protects.Site
		if e.naming.Explicit || site == nil || held[stateKey(e)] {
			continue
		}
		var before, namespaces []string
		for _, o := range others {
			osite := o.naming.Identity.Protects.Site
			if osite == nil || kept[stateKey(o)] || o.spec.Kind != e.spec.Kind || o.spec.Directive != e.spec.Directive ||
				o.naming.Identity.Role != e.naming.Identity.Role || !overlap(site, osite) {
				continue
			}
			if d := o.naming.Identity.String(); !slices.Contains(before, d) {
				before = append(before, d)
				namespaces = append(namespaces, o.naming.Namespace)
			}
		}
		if len(before) == 0 {
			continue
		}
		e.logger.Warn("STATE STARTS AFRESH: this configuration names "+e.naming.Identity.String()+" anew, and no longer names the state of "+
			strings.Join(before, "; ")+", which the configuration it replaces kept: a change to a site's listeners, host names or path matchers, "+
			"or to a directive's identity options, names its state anew, so replays refused before are admitted and spent budgets are full again. "+
			"To keep state across such a change, give the directive a `namespace` (the same before and after the change); docs/operations.md: Reloads and key rotation",
			zap.String("namespace", e.naming.Namespace), zap.String("protects", e.naming.Identity.Protects.String()),
			zap.Strings("previous_namespaces", namespaces))
	}
}

// overlap reports whether two sites share a listener or a host name.
func overlap(a, b *Site) bool {
	for _, l := range a.Listen {
		if slices.Contains(b.Listen, l) {
			return true
		}
	}
	for _, h := range a.Hosts {
		if slices.Contains(b.Hosts, h) {
			return true
		}
	}
	return false
}
