// Package cidr is an IP allow-list: a set of CIDR prefixes, IPv4 and IPv6,
// looked up in a path-compressed trie (github.com/yl2chen/cidranger) behind
// a net/netip API.
//
// It carries MX's published address ranges as presets: "mx", the eight
// ranges of all MX data centres (the Platform API document), and "mdx", the
// six ranges MDX On Demand requests come from. IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d) are matched as the IPv4 addresses they carry, and zones
// are ignored.
//
// The package knows nothing of HTTP servers; it is the library under the
// mx_ip_allow Caddy directive.
package cidr
