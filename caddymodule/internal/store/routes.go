package store

import (
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/intercept"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// Credentialed is a handler that attaches a client's credentials to the
// requests it passes on (mx_auth attach, mxconnect_token, mdx_hmac sign):
// the mx_rate_limit beside it is an egress budget. Kind names the kind of
// credentials; ID is the MX client id, "" when there is none (a signing
// key). It is called once the handler is provisioned.
type Credentialed interface {
	Credentials() (kind, id string)
}

// A place is where a handler stands in its server's routes: the route
// lists from the server's down to the one holding it, with the index of
// the route taken in each, and the part of the server they are in.
type place struct {
	frames []frame
	part   []string
}

type frame struct {
	list  caddyhttp.RouteList
	index int
}

func (f frame) route() *caddyhttp.Route { return &f.list[f.index] }

// routeLists are the lists of routes a handler holds: a subroute's routes
// and error routes, a reverse proxy's or intercept's response routes.
type routeList struct {
	list caddyhttp.RouteList
	part string // "" for routes that see the request as it came
}

func childLists(h caddyhttp.MiddlewareHandler) []routeList {
	var out []routeList
	switch h := h.(type) {
	case *caddyhttp.Subroute:
		out = append(out, routeList{h.Routes, ""})
		if h.Errors != nil {
			out = append(out, routeList{h.Errors.Routes, "errors"})
		}
	case *reverseproxy.Handler:
		for _, rh := range h.HandleResponse {
			out = append(out, routeList{rh.Routes, "handle_response"})
		}
	case *intercept.Intercept:
		for _, rh := range h.HandleResponse {
			out = append(out, routeList{rh.Routes, "handle_response"})
		}
	}
	return out
}

// serverLists are a server's lists of routes: its routes, its error
// routes, its named routes (sorted by name).
func serverLists(srv *caddyhttp.Server) []routeList {
	out := []routeList{{srv.Routes, ""}}
	if srv.Errors != nil {
		out = append(out, routeList{srv.Errors.Routes, "errors"})
	}
	names := make([]string, 0, len(srv.NamedRoutes))
	for name := range srv.NamedRoutes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if r := srv.NamedRoutes[name]; r != nil {
			out = append(out, routeList{caddyhttp.RouteList{*r}, "named route " + name})
		}
	}
	return out
}

// locate finds h, by identity, in srv's routes.
func locate(srv *caddyhttp.Server, h caddyhttp.MiddlewareHandler) (*place, bool) {
	for _, l := range serverLists(srv) {
		var part []string
		if l.part != "" {
			part = []string{l.part}
		}
		if p, ok := find(l.list, h, nil, part); ok {
			return p, true
		}
	}
	return nil, false
}

func find(list caddyhttp.RouteList, h caddyhttp.MiddlewareHandler, path []frame, part []string) (*place, bool) {
	for i := range list {
		fr := append(slices.Clip(path), frame{list, i})
		for _, mh := range list[i].Handlers {
			if mh == h { // a pointer compared with pointers: never panics
				return &place{frames: fr, part: part}, true
			}
			for _, l := range childLists(mh) {
				sub := part
				if l.part != "" {
					sub = append(slices.Clip(part), l.part)
				}
				if p, ok := find(l.list, h, fr, sub); ok {
					return p, true
				}
			}
		}
	}
	return nil, false
}

// hostsOf are the host names route r is matched on, in any of its
// matcher sets.
func hostsOf(r *caddyhttp.Route) []string {
	var hosts []string
	for _, set := range r.MatcherSets {
		for _, m := range set {
			switch m := m.(type) {
			case caddyhttp.MatchHost:
				hosts = append(hosts, m...)
			case *caddyhttp.MatchHost:
				hosts = append(hosts, *m...)
			}
		}
	}
	return sortedSet(hosts, strings.ToLower)
}

// pathsOf are the paths route r is matched on, in any of its matcher sets.
func pathsOf(r *caddyhttp.Route) []string {
	var paths []string
	for _, set := range r.MatcherSets {
		for _, m := range set {
			switch m := m.(type) {
			case caddyhttp.MatchPath:
				paths = append(paths, m...)
			case *caddyhttp.MatchPath:
				paths = append(paths, *m...)
			}
		}
	}
	return sortedSet(paths, nil)
}

func sortedSet(v []string, norm func(string) string) []string {
	if len(v) == 0 {
		return nil
	}
	out := make([]string, 0, len(v))
	for _, s := range v {
		if norm != nil {
			s = norm(s)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// site is the site p is in: the server's listeners, the host names on the
// routes down to it, and the path matchers.
func (p *place) site(srv *caddyhttp.Server) *Site {
	s := &Site{Listen: listeners(srv.Listen), Part: p.part}
	var hosts []string
	for _, f := range p.frames {
		hosts = append(hosts, hostsOf(f.route())...)
		if paths := pathsOf(f.route()); len(paths) > 0 {
			s.Paths = append(s.Paths, paths)
		}
	}
	s.Hosts = sortedSet(hosts, nil)
	return s
}

// listeners names a server's listen addresses by what a replica shares
// with the others: the port (range) or the Unix socket, not the address
// bound to.
func listeners(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		na, err := caddy.ParseNetworkAddress(a)
		switch {
		case err != nil:
			out = append(out, "address "+a)
		case na.IsUnixNetwork():
			path, _, _ := strings.Cut(na.Host, "|") // the socket's file mode
			out = append(out, "unix "+path)
		case na.IsFdNetwork():
			out = append(out, "fd "+na.Host)
		case na.StartPort == na.EndPort:
			out = append(out, "port "+strconv.FormatUint(uint64(na.StartPort), 10))
		default:
			out = append(out, "ports "+strconv.FormatUint(uint64(na.StartPort), 10)+"-"+strconv.FormatUint(uint64(na.EndPort), 10))
		}
	}
	return sortedSet(out, nil)
}

// credential is one Credentialed handler's credentials.
type credential struct{ kind, id string }

// credentials are the credentials attached to the requests that reach p:
// those of the nearest routes around it that hold any. From the innermost
// list of routes outwards, every route of the list is searched, its
// subroutes too, but for a route matched on other host names than the
// route taken at that level; the first list with credentials answers.
func (p *place) credentials() []credential {
	for l := len(p.frames) - 1; l >= 0; l-- {
		f := p.frames[l]
		ours := hostsOf(f.route())
		var found []credential
		for i := range f.list {
			if hs := hostsOf(&f.list[i]); len(hs) > 0 && len(ours) > 0 && !slices.Equal(hs, ours) {
				continue
			}
			found = collectCredentials(f.list[i].Handlers, found)
		}
		if len(found) > 0 {
			return found
		}
	}
	return nil
}

func collectCredentials(hs []caddyhttp.MiddlewareHandler, found []credential) []credential {
	for _, h := range hs {
		if c, ok := h.(Credentialed); ok {
			kind, id := c.Credentials()
			found = append(found, credential{kind, id})
		}
		for _, l := range childLists(h) {
			for i := range l.list {
				found = collectCredentials(l.list[i].Handlers, found)
			}
		}
	}
	return found
}
