package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// A directive's state is named by what it protects, never by where the
// directive stands in a file: two directives that guard different things
// never share state, on any host using the same Redis, and replicas of one
// configuration always do.
//
//   - An ingress directive (mdx_hmac verify's replay cache, an
//     mx_rate_limit in front of an application) protects its site: the
//     ports (or Unix socket) its server listens on, the host names its
//     requests are matched on, and the path matchers on the way to it.
//     The address a server binds to is left out: it names the machine,
//     not the site, and replicas bind to their own.
//   - An egress mx_rate_limit (in a site that attaches MX credentials:
//     mx_auth attach, mxconnect_token) mirrors MX's per-client budget: it
//     protects the MX client id of those credentials, whichever host or
//     site sends them. A site that only signs MDX requests (mdx_hmac sign)
//     has no client id; its budget is its site's.
//
// The namespace is a hash of the directive, its role, the options that say
// what its state is about (mx_rate_limit's key; mdx_hmac's resource and
// base_path) and what it protects; never keys or limits, so that a key
// rotation or a change of limits keeps the state.

// Roles of a directive's state.
const (
	RoleIngress = "ingress"
	RoleEgress  = "egress"
)

// namingVersion is hashed first: a change to the naming rules changes it.
const namingVersion = "mxgate-state-2"

// Site is what an ingress directive protects.
type Site struct {
	// Listen are the site's listeners, without the address bound to: a
	// port ("port 8480", "ports 8000-8010") or a Unix socket
	// ("unix /run/x.sock"), sorted.
	Listen []string
	// Hosts are the host names the site's requests are matched on,
	// normalised and sorted; empty for a site matched on none.
	Hosts []string
	// Paths are the path matchers on the way to the directive, outermost
	// first, each sorted.
	Paths [][]string
	// Part names a part of the server other than its routes: "errors"
	// (handle_errors), "named route <name>", "handle_response".
	Part []string
}

// Client is what an egress directive protects: an MX client, by the kind
// of its credentials and a hash of its id.
type Client struct {
	Kind string // "MX Platform API" (mx_auth attach), "MX Connect" (mxconnect_token)
	Hash string // hex; the id itself is kept out of keys and logs
}

// HashClientID is the hash of an MX client id that names its state.
func HashClientID(kind, id string) string {
	s := sha256.Sum256([]byte("mxgate-client-id\x00" + kind + "\x00" + id))
	return hex.EncodeToString(s[:])
}

// Protected is what a directive's state protects: a site or an MX client.
type Protected struct {
	Site   *Site
	Client *Client
}

// tokens is p in the canonical form that is hashed.
func (p Protected) tokens() []string {
	if p.Client != nil {
		return []string{"client", p.Client.Kind, p.Client.Hash}
	}
	t := []string{"site"}
	if p.Site == nil {
		return t
	}
	s := p.Site
	t = append(t, "listen")
	t = append(t, s.Listen...)
	t = append(t, "hosts")
	t = append(t, s.Hosts...)
	for _, paths := range s.Paths {
		t = append(t, "paths")
		t = append(t, paths...)
	}
	for _, part := range s.Part {
		t = append(t, "part", part)
	}
	return t
}

// String describes p for logs and errors: host names, ports, paths, and a
// client id only by the start of its hash.
func (p Protected) String() string {
	if c := p.Client; c != nil {
		return c.Kind + " client id #" + c.Hash[:min(12, len(c.Hash))]
	}
	s := p.Site
	if s == nil {
		return "no site (outside an HTTP server)"
	}
	var b strings.Builder
	b.WriteString("site ")
	if len(s.Hosts) > 0 {
		b.WriteString(strings.Join(s.Hosts, ", "))
	} else {
		b.WriteString("without host names")
	}
	if len(s.Listen) > 0 {
		b.WriteString(" on ")
		b.WriteString(strings.Join(s.Listen, ", "))
	}
	for _, paths := range s.Paths {
		b.WriteString(", paths ")
		b.WriteString(strings.Join(paths, " "))
	}
	for _, part := range s.Part {
		b.WriteString(", ")
		b.WriteString(part)
	}
	return b.String()
}

// Identity is everything a default namespace is made of.
type Identity struct {
	Directive string   // mx_rate_limit, mdx_hmac
	Role      string   // RoleIngress or RoleEgress
	Options   []string // the identity options, name then value
	Protects  Protected
}

func (id Identity) tokens() []string {
	t := []string{namingVersion, id.Directive, id.Role, "options"}
	t = append(t, id.Options...)
	return append(t, id.Protects.tokens()...)
}

// Fingerprint is the hash of id, in hex: what a namespace records of the
// identity that made it.
func (id Identity) Fingerprint() string {
	s := sha256.New()
	var n [8]byte
	for _, t := range id.tokens() {
		binary.BigEndian.PutUint64(n[:], uint64(len(t)))
		s.Write(n[:])
		s.Write([]byte(t))
	}
	return hex.EncodeToString(s.Sum(nil))
}

// Namespace is the default namespace of id: the first 128 bits of its
// fingerprint.
func (id Identity) Namespace() string { return id.Fingerprint()[:32] }

// String describes id for logs and errors.
func (id Identity) String() string {
	s := id.Directive + " (" + id.Role + ", " + id.Protects.String()
	for i := 0; i+1 < len(id.Options); i += 2 {
		if id.Options[i+1] != "" {
			s += ", " + id.Options[i] + " " + id.Options[i+1]
		}
	}
	return s + ")"
}
