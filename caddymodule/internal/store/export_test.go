package store

// Taken counts what this process holds for the configurations it has
// provisioned: pooled Redis clients, and state kept across reloads
// (replay caches, buckets, what is fetched with a credential).
func Taken() (clients, kept int) {
	redisClients.Range(func(any, any) bool { clients++; return true })
	states.Range(func(any, any) bool { kept++; return true })
	return clients, kept
}
