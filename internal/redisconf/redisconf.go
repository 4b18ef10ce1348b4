// Package redisconf turns the Redis URL an operator writes into options
// for go-redis's universal client: one Redis, a Sentinel group or a Cluster,
// over TCP or TLS, with ACL users and passwords.
//
// The URL forms are:
//
//	redis://[user[:password]@]host[:port][/db]
//	rediss://[user[:password]@]host[:port][/db]
//	redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/master[/db][?sentinel_username=u&sentinel_password=p]
//	rediss+sentinel://…  (the same, over TLS to the sentinels and the data nodes)
//	redis+cluster://[user[:password]@]host[:port][,host[:port]...]
//	rediss+cluster://…   (the same, over TLS)
//
// The default port is 6379 for a Redis or a Cluster node and 26379 for a
// sentinel; db defaults to 0 (a Cluster has only db 0). The user and
// password are those of the data nodes (Redis AUTH, an ACL user when user
// is given); a sentinel's own credentials, if it has any, go in the query.
// Characters of the user or password outside [A-Za-z0-9-._~] must be
// percent-encoded. An IPv6 address is written in brackets: [::1]:6379.
//
// go-redis's own URL parsers (redis.ParseURL, redis.ParseClusterURL,
// redis.ParseFailoverURL) read each URL, rewritten into their forms (a
// host list becomes addr parameters, the master name master_name, and a
// sentinel URL's credentials move to where go-redis takes them). Their
// query options (timeouts, retries, pool sizes, skip_verify) are not
// accepted: Options sets what mxgate lets an operator choose.
//
// Errors never contain the URL, a user name or a password: they name the
// part of the URL that is wrong. Describe gives a form of the URL that is
// safe to log.
package redisconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds every dial, read, write and pool wait when Options
// gives none.
const DefaultTimeout = 250 * time.Millisecond

// Default ports.
const (
	DefaultPort         = 6379
	DefaultSentinelPort = 26379
)

// Topology is the kind of Redis deployment a URL names.
type Topology int

const (
	Standalone Topology = iota // one Redis (redis://, rediss://)
	Sentinel                   // a master found through sentinels (redis+sentinel://)
	Cluster                    // a Redis Cluster (redis+cluster://)
)

func (t Topology) String() string {
	switch t {
	case Standalone:
		return "standalone"
	case Sentinel:
		return "sentinel"
	case Cluster:
		return "cluster"
	}
	return "Topology(" + strconv.Itoa(int(t)) + ")"
}

// TLSOptions configures TLS for rediss:// URLs (and their +sentinel and
// +cluster forms). The zero value verifies the server against the system's
// roots and presents no client certificate. Setting any field for a URL
// without TLS is an error, so that a forgotten "s" does not silently send
// credentials in the clear.
type TLSOptions struct {
	// CAFile is a PEM file of the certificates that sign the servers'.
	// Default: the system's roots.
	CAFile string
	// CertFile and KeyFile are the client's PEM certificate and key, for
	// servers that demand one (tls-auth-clients yes). Both or neither.
	CertFile, KeyFile string
	// ServerName is the name the servers' certificates must carry.
	// Default: the host each connection dials.
	ServerName string
}

func (o TLSOptions) isZero() bool { return o == TLSOptions{} }

// Options is what a client needs besides its URL.
type Options struct {
	TLS TLSOptions
	// Timeout bounds every dial, read, write and wait for a pooled
	// connection. Commands are not retried and dials not repeated: the
	// caller's breaker handles outages. Default: DefaultTimeout.
	Timeout time.Duration
}

// Target is a parsed URL without its credentials.
type Target struct {
	Topology Topology
	TLS      bool
	Addrs    []string // host:port of the Redis, the sentinels or the Cluster seeds
	Master   string   // the sentinel master name; Sentinel only
	DB       int
}

// String describes t for logs: topology, addresses, master, db and TLS,
// never a user name or password.
func (t Target) String() string {
	var b strings.Builder
	switch t.Topology {
	case Sentinel:
		fmt.Fprintf(&b, "sentinel master %q via %s db %d", t.Master, strings.Join(t.Addrs, ","), t.DB)
	case Cluster:
		fmt.Fprintf(&b, "cluster seeds %s", strings.Join(t.Addrs, ","))
	default:
		fmt.Fprintf(&b, "redis %s db %d", strings.Join(t.Addrs, ","), t.DB)
	}
	if t.TLS {
		b.WriteString(" (TLS)")
	}
	return b.String()
}

// ErrInvalidURL is wrapped by every error about the URL's form.
var ErrInvalidURL = errors.New("redisconf: invalid Redis URL")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidURL}, args...)...)
}

const urlForms = "want redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"

// parsed is a URL with its credentials.
type parsed struct {
	Target
	username, password                 string
	sentinelUsername, sentinelPassword string
}

// Describe returns the log-safe description of rawURL (see Target.String),
// or a fixed text when rawURL is not a valid Redis URL.
func Describe(rawURL string) string {
	p, err := parse(rawURL)
	if err != nil {
		return "an invalid Redis URL"
	}
	return p.String()
}

// ParseTarget parses rawURL and returns it without its credentials.
func ParseTarget(rawURL string) (Target, error) {
	p, err := parse(rawURL)
	if err != nil {
		return Target{}, err
	}
	return p.Target, nil
}

// Parse returns the options for redis.NewUniversalClient that rawURL and
// opts describe. NewUniversalClient then makes a failover client for a
// Sentinel URL, a cluster client for a Cluster URL (even with one seed),
// and a plain client otherwise.
func Parse(rawURL string, opts Options) (*redis.UniversalOptions, error) {
	p, err := parse(rawURL)
	if err != nil {
		return nil, err
	}
	if !p.TLS && !opts.TLS.isZero() {
		return nil, errors.New("redisconf: TLS options are set but the URL does not use TLS (rediss://, rediss+sentinel:// or rediss+cluster://)")
	}
	if opts.Timeout < 0 {
		return nil, errors.New("redisconf: the timeout must be positive")
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	u := &redis.UniversalOptions{
		Addrs:            p.Addrs,
		DB:               p.DB,
		Username:         p.username,
		Password:         p.password,
		SentinelUsername: p.sentinelUsername,
		SentinelPassword: p.sentinelPassword,
		MasterName:       p.Master,
		IsClusterMode:    p.Topology == Cluster,

		DialTimeout:  timeout,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		PoolTimeout:  timeout,
		// A retry, or a second dial, doubles the worst case; the callers'
		// breakers handle outages.
		MaxRetries:            -1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
	}
	if p.TLS {
		if u.TLSConfig, err = opts.TLS.config(); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// NewClient returns a client for rawURL: Parse, then
// redis.NewUniversalClient. The caller closes it.
func NewClient(rawURL string, opts Options) (redis.UniversalClient, error) {
	u, err := Parse(rawURL, opts)
	if err != nil {
		return nil, err
	}
	return redis.NewUniversalClient(u), nil
}

func (o TLSOptions) config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redisconf: TLS CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redisconf: TLS CA file %s holds no PEM certificate", o.CAFile)
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("redisconf: a TLS client certificate needs both its certificate file and its key file")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			// LoadX509KeyPair's errors name files and PEM problems, never key bytes.
			return nil, fmt.Errorf("redisconf: TLS client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

var schemes = map[string]struct {
	topology Topology
	tls      bool
}{
	"redis":           {Standalone, false},
	"rediss":          {Standalone, true},
	"redis+sentinel":  {Sentinel, false},
	"rediss+sentinel": {Sentinel, true},
	"redis+cluster":   {Cluster, false},
	"rediss+cluster":  {Cluster, true},
}

// A master name as Sentinel accepts it in practice; kept strict so that a
// misplaced password cannot end up in Describe's output.
var masterNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// parse reads rawURL. The forms operators write (a list of hosts; a
// sentinel master in the path; credentials of the data nodes in the user
// part, a sentinel's in the query) are rewritten into go-redis's own URL
// forms, which go-redis's parsers (ParseURL, ParseClusterURL,
// ParseFailoverURL) read. What is checked here keeps a misplaced password
// out of errors and of Describe: the hosts, the master name, the path and
// the query's names, each before go-redis sees it; no error of go-redis's,
// which may quote the URL, is passed on.
func parse(rawURL string) (parsed, error) {
	var p parsed
	rawURL = strings.TrimSpace(rawURL)
	if rawURL == "" {
		return p, invalid("the URL is empty (an unset environment variable?)")
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return p, invalid("no scheme; %s", urlForms)
	}
	kind, ok := schemes[strings.ToLower(scheme)]
	if !ok {
		return p, invalid("unknown scheme; %s", urlForms)
	}
	p.Topology, p.TLS = kind.topology, kind.tls

	// The authority runs to the first '/', '?' or '#'. Its host list may
	// hold commas, which no URL parser takes in a host, so it is split off
	// here; net/url reads the rest with a stand-in host.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, hosts = authority[:at+1], authority[at+1:]
	}
	u, err := url.Parse("redis://" + userinfo + "host" + tail)
	if err != nil {
		// url.Error would repeat the URL: say only what part is wrong.
		return p, invalid("the user, password, path or query is malformed (percent-encode special characters)")
	}
	if u.Fragment != "" || strings.Contains(tail, "#") {
		return p, invalid("a fragment (#…) is not allowed")
	}
	defPort := DefaultPort
	if p.Topology == Sentinel {
		defPort = DefaultSentinelPort
	}
	addrs, err := splitHosts(hosts, defPort)
	if err != nil {
		return p, err
	}
	if p.Topology == Standalone && len(addrs) > 1 {
		return p, invalid("several hosts need redis+sentinel:// or redis+cluster://")
	}

	// The path: the database, after the master name of a sentinel URL.
	segs := pathSegments(u.Path)
	native := url.URL{Scheme: "redis", Host: addrs[0], User: u.User}
	if p.TLS {
		native.Scheme = "rediss"
	}
	nativeQuery := url.Values{}
	for _, a := range addrs[1:] {
		nativeQuery.Add("addr", a)
	}
	switch p.Topology {
	case Sentinel:
		if len(segs) == 0 || segs[0] == "" {
			return p, invalid("a sentinel URL needs the master name as its path: redis+sentinel://host:26379,host:26379/mymaster")
		}
		if !masterNameRE.MatchString(segs[0]) {
			return p, invalid("the master name may hold only letters, digits, '.', '_' and '-'")
		}
		nativeQuery.Set("master_name", segs[0])
		segs = segs[1:]
		fallthrough
	case Standalone:
		switch len(segs) {
		case 0:
		case 1:
			if db, err := strconv.Atoi(segs[0]); err != nil || db < 0 || db > 1<<16 {
				return p, invalid("the database must be a number from 0")
			}
			native.Path = "/" + segs[0]
		default:
			return p, invalid("the path has too many parts")
		}
	case Cluster:
		if len(segs) > 1 || (len(segs) == 1 && segs[0] != "0") {
			return p, invalid("a Cluster has only database 0; give no path")
		}
	}

	// The query: a sentinel's own credentials, nothing else.
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return p, invalid("the query is malformed (percent-encode special characters)")
	}
	for name, vals := range query {
		if len(vals) != 1 {
			return p, invalid("query parameter %s is given more than once", safeName(name))
		}
		switch name {
		case "sentinel_username", "sentinel_password":
			if p.Topology != Sentinel {
				return p, invalid("query parameter %s is only for redis+sentinel://", name)
			}
		default:
			return p, invalid("unknown query parameter %s (only sentinel_username and sentinel_password are accepted)", safeName(name))
		}
	}
	if u.User != nil {
		if _, set := u.User.Password(); !set && u.User.Username() != "" {
			return p, invalid("an ACL user needs a password: user:password@ (a password alone is :password@)")
		}
	}

	// go-redis reads its own form. A sentinel's credentials are its URL's
	// user part, and the data nodes' are in its query.
	switch p.Topology {
	case Standalone:
		native.RawQuery = nativeQuery.Encode()
		o, err := redis.ParseURL(native.String())
		if err != nil {
			return p, notRead()
		}
		p.Addrs, p.DB, p.username, p.password = []string{o.Addr}, o.DB, o.Username, o.Password
	case Cluster:
		native.RawQuery = nativeQuery.Encode()
		o, err := redis.ParseClusterURL(native.String())
		if err != nil {
			return p, notRead()
		}
		p.Addrs, p.username, p.password = o.Addrs, o.Username, o.Password
	case Sentinel:
		if u.User != nil {
			nativeQuery.Set("username", u.User.Username())
			pw, _ := u.User.Password()
			nativeQuery.Set("password", pw)
		}
		native.User = nil
		if su, sp := query.Get("sentinel_username"), query.Get("sentinel_password"); su != "" || sp != "" {
			native.User = url.UserPassword(su, sp)
		}
		native.RawQuery = nativeQuery.Encode()
		o, err := redis.ParseFailoverURL(native.String())
		if err != nil {
			return p, notRead()
		}
		p.Addrs, p.Master, p.DB = o.SentinelAddrs, o.MasterName, o.DB
		p.username, p.password = o.Username, o.Password
		p.sentinelUsername, p.sentinelPassword = o.SentinelUsername, o.SentinelPassword
	}
	return p, nil
}

// errNotRead is wrapped when go-redis does not read a URL that passed the
// checks here; go-redis's own error is not shown, as it may quote the URL.
var errNotRead = errors.New("go-redis does not read it (percent-encode special characters in the user and password)")

func notRead() error { return fmt.Errorf("%w: %w", ErrInvalidURL, errNotRead) }

func pathSegments(path string) []string {
	path = strings.TrimPrefix(path, "/")
	path = strings.TrimSuffix(path, "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}

// splitHosts parses "host[:port],host[:port]…" into host:port addresses.
func splitHosts(hosts string, defPort int) ([]string, error) {
	if hosts == "" {
		return nil, invalid("no host")
	}
	var addrs []string
	seen := map[string]bool{}
	for i, h := range strings.Split(hosts, ",") {
		addr, err := hostPort(h, defPort)
		if err != nil {
			return nil, invalid("host %d: %v", i+1, err)
		}
		if seen[addr] {
			return nil, invalid("host %d repeats an earlier one", i+1)
		}
		seen[addr] = true
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

func hostPort(h string, defPort int) (string, error) {
	if h == "" {
		return "", errors.New("empty")
	}
	host, port := h, strconv.Itoa(defPort)
	switch {
	case strings.HasPrefix(h, "["):
		if strings.HasSuffix(h, "]") {
			host = h[1 : len(h)-1]
		} else {
			var err error
			if host, port, err = net.SplitHostPort(h); err != nil {
				return "", errors.New("malformed IPv6 address or port")
			}
		}
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
			return "", errors.New("not an IPv6 address in brackets")
		}
	case strings.Count(h, ":") == 1:
		host, port, _ = strings.Cut(h, ":")
		if !hostRE.MatchString(host) {
			return "", errors.New("not a host name or IPv4 address")
		}
	case strings.Contains(h, ":"):
		return "", errors.New("an IPv6 address must be in brackets")
	default:
		if !hostRE.MatchString(host) {
			return "", errors.New("not a host name or IPv4 address")
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", errors.New("the port must be a number from 1 to 65535")
	}
	return net.JoinHostPort(host, port), nil
}

var nameRE = regexp.MustCompile(`^[a-z_]{1,32}$`)

// safeName returns a query parameter's name for an error, unless it could
// be something else pasted in the wrong place.
func safeName(name string) string {
	if nameRE.MatchString(name) {
		return strconv.Quote(name)
	}
	return "(name not shown)"
}
