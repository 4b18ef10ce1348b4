package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mxgate/mxgate/caddymodule/internal/readiness"
)

func init() {
	caddy.RegisterModule(new(App))
}

// AppID is the ID of the app that names the state of a configuration's
// directives. It needs no configuration: the first directive with state
// brings it into the configuration.
const AppID = "mxgate_state"

// App names the state of every directive of a configuration that keeps
// some (replay caches, rate-limit budgets) by what it protects, once the
// whole configuration is provisioned and the directives' places in their
// servers' routes are known; binds each directive to its state (pooled in
// this process, and in Redis); refuses a configuration in which two
// directives would share state by accident; and records each namespace in
// its Redis store, refusing a configuration that disagrees with what
// another gateway recorded there.
//
// A handler registers in its Provision (Register). The app binds every
// registered handler in its Start, or, if the HTTP server has started
// first and a request comes before that, at that request: binding is done
// once, and gives the same result whichever comes first. Until a handler
// is bound it serves nothing.
type App struct {
	entries []*entry
	logger  *zap.Logger

	once    sync.Once
	bindErr error

	stopOnce   sync.Once
	stop       chan struct{}
	wg         sync.WaitGroup
	kick       chan struct{} // record the namespaces again now
	unregister func()        // the readiness dependency on the records
}

// Spec says what a directive's state is.
type Spec struct {
	// Directive is the directive's name: mx_rate_limit, mdx_hmac.
	Directive string
	// Kind is the kind of state, as it appears in Redis keys: rl, replay.
	Kind string
	// Options are the options that say what the state is about, name then
	// value: mx_rate_limit's key, mdx_hmac's resource and base_path.
	Options []string
	// Limits describe what the state is held to (rates, a window), for
	// information: a difference is never a different state.
	Limits string
	// MayBeEgress: beside credentials attached to the requests
	// (Credentialed), the state mirrors the MX client's budget.
	MayBeEgress bool
	// Claims: the directive can leave its replay claims to the handler
	// right after it (mdx_hmac verify; see ReplayClaim).
	Claims bool
	// DecidesClaims: the directive decides the claims left to it together
	// with its budget (mx_rate_limit).
	DecidesClaims bool
}

// Naming is the name a directive's state was given, and why.
type Naming struct {
	Namespace string
	Identity  Identity
	Explicit  bool // the operator named it (namespace)
	// ClaimsTo, for a directive whose Spec has Claims, is the handler
	// that decides its replay claims together with its budget, in one
	// Redis call; nil when the directive must decide them itself.
	ClaimsTo caddyhttp.MiddlewareHandler
}

// entry is one registered handler.
type entry struct {
	spec     Spec
	handler  caddyhttp.MiddlewareHandler
	server   *caddyhttp.Server
	store    *Provisioned
	explicit string // the namespace the operator gave, if any
	logger   *zap.Logger
	bind     func(Naming) error

	// set by App.bind
	place  *place
	naming Naming

	// the shared store's record (App.register)
	recorded bool                   // recorded or found agreeing once
	conflict atomic.Pointer[string] // why the record disagrees, while it does
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  AppID,
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets up the app.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.stop = make(chan struct{})
	return nil
}

// Start binds every registered directive to its state and records the
// namespaces in their Redis stores; an error refuses the configuration.
func (a *App) Start() error {
	if err := a.bindAll(); err != nil {
		return err
	}
	if err := a.register(); err != nil {
		return err
	}
	a.goLive()
	return nil
}

// Stop ends the app's background work.
func (a *App) Stop() error {
	a.halt()
	return nil
}

// Cleanup ends the app's background work if Stop was not called (the
// configuration failed to start).
func (a *App) Cleanup() error {
	a.halt()
	return nil
}

func (a *App) halt() {
	a.leave()
	a.stopOnce.Do(func() {
		if a.stop != nil {
			close(a.stop)
		}
		if a.unregister != nil {
			a.unregister()
		}
	})
	a.wg.Wait()
}

// Binding is a handler's state, T, once named. It is safe for concurrent
// use.
type Binding[T any] struct {
	v   atomic.Pointer[T]
	app *App // nil once bound at registration

	mu      sync.Mutex
	release func()
}

// errUnbound is what a handler answers while its state cannot be bound.
var errUnbound = errors.New("the directive's state is not bound")

// Get returns the state, binding the configuration's handlers first if
// that has not been done yet. It fails, and the handler must refuse the
// request, when binding failed.
func (b *Binding[T]) Get() (*T, error) {
	if v := b.v.Load(); v != nil {
		return v, nil
	}
	if b.app == nil {
		return nil, errUnbound
	}
	if err := b.app.bindAll(); err != nil {
		return nil, err
	}
	if v := b.v.Load(); v != nil {
		return v, nil
	}
	return nil, errUnbound
}

// Release lets go of the state; call it from the handler's Cleanup. A
// request after it gets no state.
func (b *Binding[T]) Release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.v.Store(nil)
	if b.release != nil {
		b.release()
		b.release = nil
	}
}

func (b *Binding[T]) set(v *T, release func()) {
	b.mu.Lock()
	b.release = release
	b.mu.Unlock()
	b.v.Store(v)
}

// Register makes h's state known to the configuration being provisioned:
// p is h's store (its namespace, if the operator gave one, in
// explicitNamespace), spec what the state is, and mk makes the state once
// it is named; mk's release is called from Binding.Release. Call it from
// h's Provision, after Config.Provision.
//
// A handler provisioned outside an HTTP server (in-process tests) has no
// site: its state is bound at once, named by its directive, options and
// explicit namespace only.
func Register[T any](ctx caddy.Context, h caddyhttp.MiddlewareHandler, p *Provisioned, explicitNamespace string, spec Spec, mk func(Naming) (*T, func(), error)) (*Binding[T], error) {
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		b := new(Binding[T])
		id := Identity{Directive: spec.Directive, Role: RoleIngress, Options: spec.Options}
		n := Naming{Namespace: id.Namespace(), Identity: id, Explicit: explicitNamespace != ""}
		if n.Explicit {
			n.Namespace = explicitNamespace
		}
		return b, b.bindWith(p, mk)(n)
	}
	appIface, err := ctx.App(AppID)
	if err != nil {
		return nil, err
	}
	return register(appIface.(*App), srv, ctx.Logger(), h, p, explicitNamespace, spec, mk), nil
}

// register adds h, in srv, to the handlers app binds.
func register[T any](app *App, srv *caddyhttp.Server, logger *zap.Logger, h caddyhttp.MiddlewareHandler, p *Provisioned, explicitNamespace string, spec Spec, mk func(Naming) (*T, func(), error)) *Binding[T] {
	b := &Binding[T]{app: app}
	app.entries = append(app.entries, &entry{spec: spec, handler: h, server: srv, store: p,
		explicit: explicitNamespace, logger: logger, bind: b.bindWith(p, mk)})
	return b
}

// bindWith is the function that binds b to the state mk makes.
func (b *Binding[T]) bindWith(p *Provisioned, mk func(Naming) (*T, func(), error)) func(Naming) error {
	return func(n Naming) error {
		p.bindNamespace(n.Namespace)
		v, release, err := mk(n)
		if err != nil {
			return err
		}
		b.set(v, release)
		return nil
	}
}

// bindAll names and binds every registered handler, once.
func (a *App) bindAll() error {
	a.once.Do(func() { a.bindErr = a.bind() })
	return a.bindErr
}

func (a *App) bind() error {
	if err := a.name(); err != nil {
		return err
	}
	a.pair()
	for _, e := range a.entries {
		if err := e.bind(e.naming); err != nil {
			return fmt.Errorf("%s: %w", e.naming.Identity, err)
		}
		store := Memory
		if e.store.Client != nil {
			store = Redis
		}
		e.logger.Info("state named", zap.String("namespace", e.naming.Namespace),
			zap.Bool("namespace_given", e.naming.Explicit), zap.String("role", e.naming.Identity.Role),
			zap.String("protects", e.naming.Identity.Protects.String()), zap.String("store", store))
		if store == Redis && !e.naming.Explicit && loopbackOnly(e.naming.Identity.Protects.Site) {
			e.logger.Warn("state in a shared Redis store is named by a site whose host names are all this machine's (localhost, a loopback address): "+
				"every gateway on that Redis that serves such a site on the same listeners shares it; if gateways of others use this Redis, "+
				"give the directive a `namespace` of its own",
				zap.String("namespace", e.naming.Namespace), zap.String("protects", e.naming.Identity.Protects.String()))
		}
	}
	return nil
}

// name names every registered handler's state and checks that none would
// be shared by accident.
func (a *App) name() error {
	for _, e := range a.entries {
		if err := e.name(); err != nil {
			return err
		}
	}
	return checkCollisions(a.entries)
}

// Named is a directive's state as it is named.
type Named struct {
	Naming
	Store string // memory or redis
	Where string // the directive's place in its server's routes
}

// Names names the state of every registered directive as loading the
// configuration would, and checks that none would be shared by accident,
// without taking any state or using any store: for a configuration that
// is provisioned and never started (mxgate state-names).
func (a *App) Names() ([]Named, error) {
	if err := a.name(); err != nil {
		return nil, err
	}
	// Servers are provisioned in map order: list them by name, and each
	// server's directives by their place in its routes.
	entries := slices.Clone(a.entries)
	slices.SortStableFunc(entries, func(x, y *entry) int {
		if c := strings.Compare(x.server.Name(), y.server.Name()); c != 0 {
			return c
		}
		return slices.CompareFunc(x.place.frames, y.place.frames, func(f, g frame) int { return f.index - g.index })
	})
	out := make([]Named, 0, len(entries))
	for _, e := range entries {
		n := Named{Naming: e.naming, Store: Memory, Where: e.where()}
		if e.store.Client != nil {
			n.Store = Redis
		}
		out = append(out, n)
	}
	return out, nil
}

// name finds e's place, its role and what it protects, and names it.
func (e *entry) name() error {
	p, ok := locate(e.server, e.handler)
	if !ok {
		return fmt.Errorf("%s in the server listening on %s: not found in the server's routes, so the site its state protects is unknown "+
			"(directives with state are found in routes, subroutes, error routes, named routes and the response routes of reverse_proxy and intercept)",
			e.spec.Directive, strings.Join(e.server.Listen, ", "))
	}
	e.place = p
	id := Identity{Directive: e.spec.Directive, Role: RoleIngress, Options: e.spec.Options,
		Protects: Protected{Site: p.site(e.server)}}
	if e.spec.MayBeEgress {
		if creds := p.credentials(); len(creds) > 0 {
			id.Role = RoleEgress
			var clients []Client
			for _, c := range creds {
				if c.id == "" {
					continue
				}
				cl := Client{Kind: c.kind, Hash: HashClientID(c.kind, c.id)}
				if !slices.Contains(clients, cl) {
					clients = append(clients, cl)
				}
			}
			switch {
			case len(clients) == 1:
				id.Protects = Protected{Client: &clients[0]}
			case len(clients) > 1 && e.explicit == "":
				var names []string
				for _, c := range clients {
					names = append(names, Protected{Client: &c}.String())
				}
				return fmt.Errorf("%s in %s limits requests sent with the credentials of %d MX clients (%s), whose budgets MX keeps apart: "+
					"put an %s beside each client's credentials, or give this one a `namespace`",
					e.spec.Directive, id.Protects, len(clients), strings.Join(names, "; "), e.spec.Directive)
			}
		}
	}
	e.naming = Naming{Namespace: id.Namespace(), Identity: id}
	if e.explicit != "" {
		e.naming.Namespace, e.naming.Explicit = e.explicit, true
		return nil
	}
	if site := id.Protects.Site; site != nil && len(site.Hosts) == 0 && e.store.Client != nil {
		return fmt.Errorf("%s %s keeps its state in a shared Redis store under a name made from its site, and its site names no host: "+
			"every gateway that serves a site without host names on the same listeners (another institution's, a staging one, one from the same template) "+
			"would share this state on that Redis; give the site a host name (https://mdx.bank.example), "+
			"or give the directive a `namespace` of its own (its replicas give the same one); docs/rate-limits-and-state.md: State and its name",
			id, e.where())
	}
	return nil
}

// loopbackOnly reports whether every host name of site names this
// machine (localhost, a loopback address): every gateway may serve such
// a site, as it may one without host names.
func loopbackOnly(site *Site) bool {
	if site == nil || len(site.Hosts) == 0 {
		return false
	}
	for _, h := range site.Hosts {
		h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
		if h == "localhost" || strings.HasSuffix(h, ".localhost") {
			continue
		}
		if ip, err := netip.ParseAddr(h); err == nil && ip.IsLoopback() {
			continue
		}
		return false
	}
	return true
}

// where describes e's place in its server, for errors.
func (e *entry) where() string {
	var idx []string
	for _, f := range e.place.frames {
		idx = append(idx, strconv.Itoa(f.index))
	}
	s := "in the server"
	if name := e.server.Name(); name != "" {
		s += " " + name
	}
	s += " listening on " + strings.Join(e.server.Listen, ", ") + " (route " + strings.Join(idx, ".")
	if len(e.place.part) > 0 {
		s += " of " + strings.Join(e.place.part, ", ")
	}
	return s + ")"
}

// checkCollisions refuses two directives that would share state without
// the operator having said so. In this configuration, the same kind of
// state under one namespace is shared only by directives of one role
// that the operator gave that namespace, or by egress budgets of one MX
// client id with the same limits (they mirror one budget of MX's). Two
// ingress directives never share by default: if their sites cannot be
// told apart, the operator must name them.
func checkCollisions(entries []*entry) error {
	groups := map[string][]*entry{}
	var keys []string
	for _, e := range entries {
		k := e.spec.Kind + "\x00" + e.naming.Namespace
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], e)
	}
	for _, k := range keys {
		g := groups[k]
		for i, a := range g {
			for _, b := range g[:i] {
				if err := collide(a, b); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func collide(a, b *entry) error {
	na, nb := a.naming, b.naming
	both := fmt.Sprintf("%s %s and %s %s", na.Identity, a.where(), nb.Identity, b.where())
	switch {
	case na.Identity.Directive != nb.Identity.Directive || na.Identity.Role != nb.Identity.Role:
		return fmt.Errorf("state namespace %q is given to %s: an %s and an %s state must not be shared; give them different namespaces",
			na.Namespace, both, na.Identity.Role, nb.Identity.Role)
	case na.Explicit && nb.Explicit:
		return nil // shared on purpose
	case na.Explicit != nb.Explicit:
		return fmt.Errorf("state namespace %q is given to %s, and is the default namespace of %s: give it another namespace",
			na.Namespace, pick(a, b, true), pick(a, b, false))
	case na.Identity.Protects.Client == nil && a.server == b.server:
		return fmt.Errorf("%s would share one state: nothing tells them apart (listeners, host names, path matchers); give each its own `namespace`, or both the same `namespace` to share on purpose", both)
	case na.Identity.Protects.Client == nil:
		return fmt.Errorf("%s would share one state: their servers differ only in the addresses they bind to; give each its own `namespace`, or both the same `namespace` to share on purpose", both)
	case a.spec.Limits != b.spec.Limits:
		return fmt.Errorf("%s would share one state (one MX client's budget) with different limits (%s; %s); make the limits the same, or give each its own `namespace`",
			both, a.spec.Limits, b.spec.Limits)
	}
	return nil // one MX client's budget
}

// pick describes whichever of a and b has (explicit) or has not the
// namespace its operator gave.
func pick(a, b *entry, explicit bool) string {
	e := a
	if a.naming.Explicit != explicit {
		e = b
	}
	return e.naming.Identity.String() + " " + e.where()
}

// register records each Redis-held namespace in its store (see
// registry.go), refusing the configuration on a disagreement; a store that
// cannot be reached now is recorded in later. Then, for as long as the
// configuration runs, the records are made again every registerEvery, and
// at once on a new connection to a store (onConnect) and when a store
// fails or answers again, so that a Redis that comes back empty holds them
// again before another gateway can claim them.
func (a *App) register() error {
	var recs []*entry
	seen := map[string]bool{}
	for _, e := range a.entries {
		if e.store.Client == nil {
			continue
		}
		k := e.store.poolKey + "\x00" + e.spec.Kind + "\x00" + e.naming.Namespace
		if seen[k] {
			continue
		}
		seen[k] = true
		recs = append(recs, e)
	}
	if len(recs) == 0 {
		return nil
	}
	down := map[string]bool{}
	for _, e := range recs {
		if down[e.store.poolKey] {
			continue
		}
		err := e.registerNamespace(true)
		var conflict *conflictError
		switch {
		case errors.As(err, &conflict):
			return err
		case err != nil:
			down[e.store.poolKey] = true
		default:
			e.recorded = true
		}
	}
	a.kick = make(chan struct{}, 1)
	for _, e := range recs {
		if h := e.store.Health; h != nil {
			h.onChange(a.recordNow)
		}
	}
	a.unregister = readiness.Register(readiness.Dependency{
		Name:  "state namespaces (the shared store's records)",
		Check: func(context.Context) error { return disagreements(recs) },
	})
	a.wg.Add(1)
	go a.keepRecorded(recs)
	return nil
}

// registerEvery is how often a running configuration records its
// namespaces again.
var registerEvery = 5 * time.Second

// recordNow makes the configuration record its namespaces again now.
func (a *App) recordNow() {
	if a.kick == nil { // no Redis-held namespace
		return
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// keepRecorded records recs again every registerEvery and when asked to
// (recordNow). A record that disagrees is logged as an error each time it
// is found, and readiness fails until it agrees again: the configuration is
// running and keeps running, but another gateway may be sharing its state.
func (a *App) keepRecorded(recs []*entry) {
	defer a.wg.Done()
	t := time.NewTicker(registerEvery)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		case <-a.kick:
		}
		for _, e := range recs {
			err := e.registerNamespace(!e.recorded)
			var conflict *conflictError
			switch {
			case errors.As(err, &conflict):
				msg := err.Error()
				e.conflict.Store(&msg)
				e.logger.Error("state namespace disagrees with the shared store's record: another gateway may share this state; "+
					"this gateway keeps serving, and reports not ready until the record agrees", zap.Error(err))
			case err != nil: // the store's health logs an outage
			default:
				e.recorded = true
				if e.conflict.Swap(nil) != nil {
					e.logger.Info("state namespace agrees with the shared store's record again", zap.String("namespace", e.naming.Namespace))
				}
			}
		}
	}
}

// disagreements is why readiness fails while a record disagrees; nil when
// none does.
func disagreements(recs []*entry) error {
	var ns []string
	for _, e := range recs {
		if e.conflict.Load() != nil {
			ns = append(ns, e.spec.Kind+":"+e.naming.Namespace)
		}
	}
	if len(ns) == 0 {
		return nil
	}
	return fmt.Errorf("the shared store records state namespace %s for another directive or site (see the log)", strings.Join(ns, ", "))
}
