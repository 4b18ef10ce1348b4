package redisconf

import (
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want parsed
	}{
		{"redis://127.0.0.1:6379/0", parsed{Target: Target{Topology: Standalone, Addrs: []string{"127.0.0.1:6379"}}}},
		{"redis://localhost", parsed{Target: Target{Topology: Standalone, Addrs: []string{"localhost:6379"}}}},
		{"redis://redis.internal:7000/3", parsed{Target: Target{Topology: Standalone, Addrs: []string{"redis.internal:7000"}, DB: 3}}},
		{"REDIS://h/", parsed{Target: Target{Topology: Standalone, Addrs: []string{"h:6379"}}}},
		{"rediss://app:p%40ss%3Aw%2Frd@[::1]:6380/2", parsed{
			Target:   Target{Topology: Standalone, TLS: true, Addrs: []string{"[::1]:6380"}, DB: 2},
			username: "app", password: "p@ss:w/rd",
		}},
		{"redis://:only-password@h", parsed{Target: Target{Topology: Standalone, Addrs: []string{"h:6379"}}, password: "only-password"}},
		{"redis://[::1]", parsed{Target: Target{Topology: Standalone, Addrs: []string{"[::1]:6379"}}}},
		{"redis+sentinel://s1,s2:26380,10.0.0.3/mymaster", parsed{Target: Target{
			Topology: Sentinel, Addrs: []string{"s1:26379", "s2:26380", "10.0.0.3:26379"}, Master: "mymaster",
		}}},
		{"rediss+sentinel://app:pw@s1:26379,s2:26379/gw-master/4?sentinel_username=sen&sentinel_password=spw", parsed{
			Target:   Target{Topology: Sentinel, TLS: true, Addrs: []string{"s1:26379", "s2:26379"}, Master: "gw-master", DB: 4},
			username: "app", password: "pw", sentinelUsername: "sen", sentinelPassword: "spw",
		}},
		{"redis+sentinel://s1/m?sentinel_password=s%26p", parsed{
			Target:           Target{Topology: Sentinel, Addrs: []string{"s1:26379"}, Master: "m"},
			sentinelPassword: "s&p",
		}},
		{"redis+cluster://n1:7000,n2:7001,n3:7002", parsed{Target: Target{Topology: Cluster, Addrs: []string{"n1:7000", "n2:7001", "n3:7002"}}}},
		{"rediss+cluster://u:p@n1/", parsed{Target: Target{Topology: Cluster, TLS: true, Addrs: []string{"n1:6379"}}, username: "u", password: "p"}},
		{"redis+cluster://n1/0", parsed{Target: Target{Topology: Cluster, Addrs: []string{"n1:6379"}}}},
	} {
		got, err := parse(tc.url)
		if err != nil {
			t.Errorf("parse(%q): %v", tc.url, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parse(%q) =\n  %+v\nwant\n  %+v", tc.url, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"127.0.0.1:6379", "no scheme"},
		{"http://h", "unknown scheme"},
		{"redis://", "no host"},
		{"redis://a,b", "several hosts need"},
		{"redis://h/x", "database must be a number"},
		{"redis://h/-1", "database must be a number"},
		{"redis://h/1/2", "too many parts"},
		{"redis://h:0", "port must be"},
		{"redis://h:99999", "port must be"},
		{"redis://h:x", "port must be"},
		{"redis://::1", "must be in brackets"},
		{"redis://[10.0.0.1]:1", "not an IPv6 address"},
		{"redis://h_1", "not a host name"},
		{"redis://h?db=1", `unknown query parameter "db"`},
		{"redis://h?sentinel_password=x", "only for redis+sentinel"},
		{"redis://h#frag", "fragment"},
		{"redis+sentinel://s1,s2", "needs the master name"},
		{"redis+sentinel://s1/", "needs the master name"},
		{"redis+sentinel://s1/bad$name", "master name may hold"},
		{"redis+sentinel://s1,s1/m", "host 2 repeats"},
		{"redis+sentinel://s1/m?sentinel_password=a&sentinel_password=b", "more than once"},
		{"redis+cluster://n1/1", "only database 0"},
		{"redis+cluster://n1,,n2", "host 2: empty"},
		{"redis://user@h", "ACL user needs a password"},
		{"redis://us%zzer:pw@h", "malformed"},
		{"redis://h?a=%zz", "query is malformed"},
	} {
		_, err := parse(tc.url)
		if err == nil {
			t.Errorf("parse(%q): no error, want %q", tc.url, tc.want)
			continue
		}
		if !errors.Is(err, ErrInvalidURL) {
			t.Errorf("parse(%q): %v does not wrap ErrInvalidURL", tc.url, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse(%q) = %q, want it to say %q", tc.url, err, tc.want)
		}
	}
}

// Errors and descriptions never show the credentials, whatever part of the
// URL is wrong.
func TestNoSecretInErrorsOrDescriptions(t *testing.T) {
	const user, pass, spass = "gwuser-XYZ", "hunter2-secret", "sentinel-secret"
	for _, u := range []string{
		"redis://" + user + ":" + pass + "@h:bad",
		"redis://" + user + ":" + pass + "@h/notanumber",
		"redis://" + user + ":" + pass + "@a,b",
		"redis://" + user + ":" + pass + "@h?" + pass + "=1",
		"redis://" + user + ":" + pass + "@h?x=" + pass,
		"redis://" + user + ":" + pass + "@" + pass + "_host",
		"redis+sentinel://" + user + ":" + pass + "@s1/" + pass + "$",
		"redis+sentinel://" + user + ":" + pass + "@s1/m?sentinel_password=" + spass + "&x=1",
		"redis+cluster://" + user + ":" + pass + "@n1/5",
		"rediss://" + user + ":" + pass + "@h:1/0",
		"redis+sentinel://" + user + ":" + pass + "@s1/m/0?sentinel_password=" + spass,
		"redis+cluster://" + user + ":" + pass + "@n1,n2",
		"redis://" + pass + "@h",
		pass,
		"redis:/" + "/" + user + ":" + pass + "@h%zz",
	} {
		msgs := []string{Describe(u)}
		if _, err := parse(u); err != nil {
			msgs = append(msgs, err.Error())
		}
		if _, err := Parse(u, Options{TLS: TLSOptions{CAFile: "/nonexistent/ca.pem"}}); err != nil {
			msgs = append(msgs, err.Error())
		}
		for _, m := range msgs {
			for _, secret := range []string{user, pass, spass} {
				if strings.Contains(m, secret) {
					t.Errorf("%q shows a credential", m)
				}
			}
		}
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"redis://u:p@h:1/2", "redis h:1 db 2"},
		{"rediss://h", "redis h:6379 db 0 (TLS)"},
		{"redis+sentinel://u:p@a,b:1/m/3?sentinel_password=x", `sentinel master "m" via a:26379,b:1 db 3`},
		{"rediss+cluster://a,b,c", "cluster seeds a:6379,b:6379,c:6379 (TLS)"},
		{"nonsense", "an invalid Redis URL"},
	} {
		if got := Describe(tc.url); got != tc.want {
			t.Errorf("Describe(%q) = %q, want %q", tc.url, got, tc.want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	u, err := Parse("redis+sentinel://u:p@s1,s2/m/1?sentinel_username=su&sentinel_password=sp", Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if u.MasterName != "m" || u.DB != 1 || u.Username != "u" || u.Password != "p" ||
		u.SentinelUsername != "su" || u.SentinelPassword != "sp" || len(u.Addrs) != 2 || u.IsClusterMode {
		t.Errorf("sentinel options: %+v", u)
	}
	for name, d := range map[string]time.Duration{"dial": u.DialTimeout, "read": u.ReadTimeout, "write": u.WriteTimeout, "pool": u.PoolTimeout} {
		if d != 100*time.Millisecond {
			t.Errorf("%s timeout = %v", name, d)
		}
	}
	if u.MaxRetries != -1 || u.DialerRetries != 1 || !u.ContextTimeoutEnabled || u.TLSConfig != nil {
		t.Errorf("retries %d, dial retries %d, context timeouts %v, TLS %v", u.MaxRetries, u.DialerRetries, u.ContextTimeoutEnabled, u.TLSConfig)
	}

	u, err = Parse("redis+cluster://n1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !u.IsClusterMode || u.DialTimeout != DefaultTimeout {
		t.Errorf("cluster with one seed: cluster mode %v, timeout %v", u.IsClusterMode, u.DialTimeout)
	}

	if _, err := Parse("redis://h", Options{TLS: TLSOptions{ServerName: "h"}}); err == nil || !strings.Contains(err.Error(), "does not use TLS") {
		t.Errorf("TLS options on redis://: %v", err)
	}
	if _, err := Parse("redis://h", Options{Timeout: -time.Second}); err == nil {
		t.Error("a negative timeout was accepted")
	}
}

func TestTLSOptions(t *testing.T) {
	dir := t.TempDir()
	pki := redistest.NewPKI(t)

	u, err := Parse("rediss://h", Options{TLS: TLSOptions{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "redis.test"}})
	if err != nil {
		t.Fatal(err)
	}
	c := u.TLSConfig
	if c == nil || c.RootCAs == nil || len(c.Certificates) != 1 || c.ServerName != "redis.test" || c.MinVersion < 0x0303 {
		t.Errorf("TLS config: %+v", c)
	}
	if u, _ := Parse("rediss://h", Options{}); u.TLSConfig == nil || u.TLSConfig.RootCAs != nil {
		t.Error("rediss:// without options should verify against the system roots")
	}

	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tc := range []struct {
		opts TLSOptions
		want string
	}{
		{TLSOptions{CAFile: filepath.Join(dir, "missing.pem")}, "CA file"},
		{TLSOptions{CAFile: notPEM}, "holds no PEM certificate"},
		{TLSOptions{CertFile: pki.ClientCert}, "both its certificate file and its key file"},
		{TLSOptions{CertFile: pki.ClientCert, KeyFile: notPEM}, "client certificate"},
	} {
		if _, err := Parse("rediss://h", Options{TLS: tc.opts}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.opts, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"redis://u:p@h:1/2", "rediss+sentinel://a,b/m/1?sentinel_password=x", "redis+cluster://a,[::1]:7000",
		"redis://[::1", "redis://a@b@c", "redis+sentinel://s//", "redis://h?%", "redis://h:65536",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parse(s)
		if err != nil {
			// What the checks here pass, go-redis reads: its errors,
			// which may quote the URL, are never the answer.
			if errors.Is(err, errNotRead) {
				t.Fatalf("%q: go-redis refused what redisconf's checks passed", s)
			}
			return
		}
		if len(p.Addrs) == 0 {
			t.Fatalf("%q: no address", s)
		}
		if p.Topology == Sentinel && p.Master == "" {
			t.Fatalf("%q: sentinel without a master", s)
		}
		for _, a := range p.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				t.Fatalf("%q: address %q: %v", s, a, err)
			}
		}
	})
}

// FuzzParseErrorsHideThePassword checks that no error shows the password
// of a URL whose password is long enough to be told apart from the
// errors' own words.
func FuzzParseErrorsHideThePassword(f *testing.F) {
	f.Add("redis", "h:1/x?y=1", "Zq8-secret-Pw")
	f.Add("redis+sentinel", "a,b/", "Zq8-secret-Pw")
	f.Fuzz(func(t *testing.T, scheme, rest, pass string) {
		if len(pass) < 12 {
			return
		}
		raw := scheme + "://user:" + url.PathEscape(pass) + "@" + rest
		if _, err := parse(raw); err != nil && strings.Contains(err.Error(), pass) {
			t.Fatalf("%q: error %q shows the password", raw, err)
		}
		if d := Describe(raw); strings.Contains(d, pass) && !strings.Contains(rest, pass) {
			t.Fatalf("%q: description %q shows the password", raw, d)
		}
	})
}
