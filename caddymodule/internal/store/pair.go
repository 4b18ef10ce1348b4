package store

import (
	"slices"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// pair finds, for each directive that can leave its replay claims to the
// next handler (Spec.Claims: mdx_hmac verify), whether the next handler
// of every request it passes on is one that decides them with its budget
// (Spec.DecidesClaims: mx_rate_limit), and on the same Redis client; if
// so, that handler becomes the directive's Naming.ClaimsTo, and a signed
// request that passes both costs one Redis round trip instead of two.
//
// "Next" is decided from the loaded routes, never guessed at run time: the
// two handlers are in one route, one right after the other; or the first
// ends its route, which is not terminal, and the second begins the next
// route of the same list, which has no matchers and no group (so that it
// runs for every request the first passes on). Anything else, a handler
// between them or a matcher on the second, and the directive records its
// claims itself, as it always did.
//
// In a Redis Cluster the pair is not made: a replay record and a budget
// have keys in different slots, which one script cannot touch. A hash tag
// to bring them together would have to tie each signature's key either to
// the budget's key (which may depend on the client's address or a header,
// so that a replay sent from elsewhere would get another key, and pass) or
// tie budgets to the replay cache (which budgets shared by several sites
// or replicas of other configurations do not share). So a Cluster keeps
// two round trips.
func (a *App) pair() {
	for _, e := range a.entries {
		if !e.spec.Claims || e.store.Client == nil || e.store.Cluster || e.place == nil {
			continue
		}
		for _, f := range a.entries {
			if f.spec.DecidesClaims && f.server == e.server && f.store.Client == e.store.Client && f.place != nil &&
				follows(e.place, e.handler, f.place, f.handler) {
				e.naming.ClaimsTo = f.handler
				e.logger.Debug("replay records decided together with the budget of the next handler, in one Redis call",
					zap.String("namespace", e.naming.Namespace), zap.String("budget_namespace", f.naming.Namespace))
				break
			}
		}
	}
}

// follows reports whether the handler b, at place pb, is the next handler
// of every request that the handler a, at place pa, passes on.
func follows(pa *place, a caddyhttp.MiddlewareHandler, pb *place, b caddyhttp.MiddlewareHandler) bool {
	n := len(pa.frames)
	if n == 0 || len(pb.frames) != n || !slices.Equal(pa.part, pb.part) {
		return false
	}
	for i := range n - 1 {
		if !sameFrame(pa.frames[i], pb.frames[i]) {
			return false
		}
	}
	fa, fb := pa.frames[n-1], pb.frames[n-1]
	if !sameList(fa.list, fb.list) {
		return false
	}
	ra := fa.route()
	ia := slices.IndexFunc(ra.Handlers, func(h caddyhttp.MiddlewareHandler) bool { return h == a })
	if ia < 0 {
		return false
	}
	if fa.index == fb.index {
		return ia+1 < len(ra.Handlers) && ra.Handlers[ia+1] == b
	}
	if fb.index != fa.index+1 || ia != len(ra.Handlers)-1 || ra.Terminal {
		return false
	}
	rb := fb.route()
	return len(rb.MatcherSets) == 0 && len(rb.MatcherSetsRaw) == 0 && rb.Group == "" && len(rb.Handlers) > 0 && rb.Handlers[0] == b
}

func sameFrame(x, y frame) bool { return x.index == y.index && sameList(x.list, y.list) }

// sameList reports whether x and y are the same list of routes (not equal
// ones: the same).
func sameList(x, y caddyhttp.RouteList) bool {
	return len(x) == len(y) && len(x) > 0 && &x[0] == &y[0]
}
