// Package ratelimit holds per-verb token-bucket budgets: one bucket per
// (key, class), where the class groups HTTP methods the way MX counts them:
// GET and HEAD, writes (POST, PUT, PATCH), DELETE, and everything else.
//
// Two stores implement [Store]. [Memory] keeps the buckets in this process,
// over golang.org/x/time/rate, with time as a parameter so that tests are
// deterministic, and the number of keys capped without ever dropping a
// bucket that is not full (a throttled key keeps its budget). [Redis]
// keeps one GCRA state per bucket in Redis and updates it atomically with
// a script, on the Redis server's clock, so that several replicas share
// one budget exactly; through a redisbatch.Batcher, the calls of
// concurrent requests share one run of the script, each decided in turn
// as if on its own.
//
// A key that is a client address should be given as [Grouping.Key]
// makes it: one key for every spelling of an address, and one for a
// whole prefix (by default an IPv6 /64), so that a client cannot multiply
// its budget by the addresses it holds.
//
// A request is either refused at once when no token is free (maxWait 0),
// or admitted with a delay of at most maxWait, during which it holds a
// reservation that [Result.Cancel] returns if the request is abandoned.
package ratelimit
