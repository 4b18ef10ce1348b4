package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Each namespace a directive keeps in Redis is recorded there, beside its
// state, by the first gateway to use it: what directive and role it
// belongs to, a fingerprint of what it protects, whether the operator named
// it, and (for information) its limits. A gateway whose directive
// disagrees refuses to start, or, if it started while Redis was
// unreachable, logs an error naming both, as soon as it can tell:
//
//   - another directive or role: always (an ingress budget must never be
//     an egress one, however it was named);
//   - another identity: unless both the record and this directive were
//     given the namespace by the operator (sharing on purpose);
//   - other limits alone: a warning (a rolling deploy changes limits), and
//     the record takes the new ones.
//
// The record does not expire: it lives as long as the Redis does. A
// running gateway records its namespaces again every few seconds, and as
// soon as it connects to its store anew or sees it fail or answer again,
// so that a Redis that restarted
// empty (or lost the keys) holds them again; a disagreement found then is
// an error in the log each time, and readiness fails while it lasts. A
// namespace that is no longer used by what recorded it is freed by
// deleting its key, which the refusal names.

// registryKey is the key of the record of a namespace of a kind of state.
func registryKey(kind, namespace string) string { return "mxgate:ns:" + kind + ":" + namespace }

// registerScript sets the record if there is none, and returns the one
// that was there (empty if none).
var registerScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
	return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return {}
`)

// Record fields.
const (
	fieldDirective = "directive"
	fieldRole      = "role"
	fieldIdentity  = "identity"
	fieldProtects  = "protects"
	fieldNamed     = "named"
	fieldLimits    = "limits"
)

// Values of fieldNamed.
const (
	namedGiven   = "given"   // by the operator's namespace option
	namedDefault = "default" // from the identity
)

// conflictError is a disagreement with the shared store's record.
type conflictError struct{ msg string }

func (c *conflictError) Error() string { return c.msg }

func (e *entry) record() map[string]string {
	n := e.naming
	named := namedDefault
	if n.Explicit {
		named = namedGiven
	}
	return map[string]string{
		fieldDirective: n.Identity.Directive,
		fieldRole:      n.Identity.Role,
		fieldIdentity:  n.Identity.Fingerprint(),
		fieldProtects:  n.Identity.Protects.String(),
		fieldNamed:     named,
		fieldLimits:    e.spec.Limits,
	}
}

// registerNamespace records e's namespace in its Redis store, or checks e
// against the record there. A store error is returned as it is (and
// observed); a disagreement as a *conflictError. The first time (first),
// sharing on purpose is logged, and other limits are warned about and
// recorded; later, when the record is made again, they are not.
func (e *entry) registerNamespace(first bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), e.store.Timeout)
	defer cancel()
	key := registryKey(e.spec.Kind, e.naming.Namespace)
	mine := e.record()
	fields := make([]string, 0, len(mine))
	for f := range mine {
		fields = append(fields, f)
	}
	slices.Sort(fields)
	args := make([]any, 0, 2*len(fields))
	for _, f := range fields {
		args = append(args, f, mine[f])
	}
	res, err := registerScript.Run(ctx, e.store.Client, []string{key}, args...).StringSlice()
	if err != nil {
		e.store.Health.Failed(err)
		return err
	}
	e.store.Health.Succeeded()
	if len(res) == 0 {
		return nil
	}
	theirs := map[string]string{}
	for i := 0; i+1 < len(res); i += 2 {
		theirs[res[i]] = res[i+1]
	}
	if err := disagree(key, e, mine, theirs); err != nil {
		return err
	}
	if !first {
		return nil
	}
	if theirs[fieldIdentity] != mine[fieldIdentity] {
		e.logger.Info("state namespace shared on purpose with what another gateway recorded",
			zap.String("namespace", e.naming.Namespace), zap.String("here", e.naming.Identity.String()),
			zap.String("recorded", describeRecord(theirs)))
	}
	if theirs[fieldLimits] != mine[fieldLimits] {
		e.logger.Warn("state namespace is shared with other limits than those recorded in the shared store (a rolling change of limits?); recording these",
			zap.String("namespace", e.naming.Namespace), zap.String("here", mine[fieldLimits]), zap.String("recorded", theirs[fieldLimits]))
		if err := e.store.Client.HSet(ctx, key, fieldLimits, mine[fieldLimits]).Err(); err != nil {
			e.store.Health.Failed(err)
		}
	}
	return nil
}

// disagree says why e must not use the namespace recorded as theirs, or
// nil.
func disagree(key string, e *entry, mine, theirs map[string]string) error {
	ok := theirs[fieldDirective] == mine[fieldDirective] && theirs[fieldRole] == mine[fieldRole] &&
		(theirs[fieldIdentity] == mine[fieldIdentity] || theirs[fieldNamed] == namedGiven && mine[fieldNamed] == namedGiven)
	if ok {
		return nil
	}
	return &conflictError{fmt.Sprintf("state namespace %q is used by %s %s, and the shared store records it as the namespace of %s: "+
		"the two would share one state; give one of them its own `namespace` (if the other no longer runs anywhere, delete the Redis key %q)",
		e.naming.Namespace, e.naming.Identity, e.where(), describeRecord(theirs), key)}
}

// describeRecord describes a record for logs and errors.
func describeRecord(r map[string]string) string {
	s := r[fieldDirective] + " (" + r[fieldRole] + ", " + r[fieldProtects]
	if r[fieldNamed] == namedGiven {
		s += ", namespace given"
	}
	return s + ")"
}
