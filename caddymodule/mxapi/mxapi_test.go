package mxapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/jwe"
)

func TestAttachReplacesAuthorization(t *testing.T) {
	a := &AuthAttach{ClientID: "CLIENT-1234", APIKey: "API-KEY-4567"}
	handlertest.Provision(t, a)
	r := httptest.NewRequest("GET", "/users", nil)
	r.RemoteAddr = "127.0.0.1:50000" // the app beside the sidecar
	r.Header.Add("Authorization", "Bearer app")
	r.Header.Add("Authorization", "Basic b3RoZXI6b3RoZXI=")
	if err := a.ServeHTTP(httptest.NewRecorder(), r, &handlertest.Next{}); err != nil {
		t.Fatal(err)
	}
	// PROTOCOLS.md's example: CLIENT-1234:API-KEY-4567
	if v := r.Header.Values("Authorization"); len(v) != 1 || v[0] != "Basic Q0xJRU5ULTEyMzQ6QVBJLUtFWS00NTY3" {
		t.Fatalf("Authorization %q", v)
	}
	if r.Header.Get("Accept") != "application/vnd.mx.api.v1+json" || r.Header.Get("Accept-Version") != "" {
		t.Fatalf("Accept %q / %q", r.Header.Get("Accept"), r.Header.Get("Accept-Version"))
	}
}

func TestBackoff(t *testing.T) {
	rt := &Retry{}
	handlertest.Provision(t, rt)
	now := time.Unix(1_700_000_000, 0)
	for attempt := 1; attempt <= 8; attempt++ {
		ceiling := min(100*time.Millisecond<<(attempt-1), 2*time.Second)
		rt.jitter = func(n int64) int64 { return n - 1 } // the top of the range
		if d := rt.backoff(attempt, "", now); d != ceiling {
			t.Errorf("attempt %d: top of the range %v, want %v", attempt, d, ceiling)
		}
		rt.jitter = func(int64) int64 { return 0 } // full jitter reaches zero
		if d := rt.backoff(attempt, "", now); d != 0 {
			t.Errorf("attempt %d: bottom %v", attempt, d)
		}
	}
	for v, want := range map[string]time.Duration{
		"3": 3 * time.Second,
		"0": 0,
		now.Add(5 * time.Second).UTC().Format(http.TimeFormat):  5 * time.Second,
		now.Add(-5 * time.Second).UTC().Format(http.TimeFormat): 0,
	} {
		if d := rt.backoff(1, v, now); d != want {
			t.Errorf("Retry-After %q: %v, want %v", v, d, want)
		}
	}
	rt.jitter = func(n int64) int64 { return n - 1 }
	for _, bad := range []string{"-1", "soon", "1.5"} {
		if d := rt.backoff(1, bad, now); d != 100*time.Millisecond {
			t.Errorf("Retry-After %q was believed: %v", bad, d)
		}
	}
}

func TestClaimsEncrypted(t *testing.T) {
	k, _ := jwe.GenerateKey(jwe.P256)
	pub, _, _ := jwe.ParsePublicKeyHeader(k.PublicKeyHeader())
	compact, _ := jwe.Encrypt(pub, jwe.SuiteFor(jwe.A256GCM), []byte("{}"))
	for _, c := range []struct {
		ct, body string
		want     bool
	}{
		{"application/jose", "{}", true},
		{"application/jose+json", "{}", true},
		{"APPLICATION/JOSE+JSON; charset=utf-8", "", true},
		{"application/encrypted.a256gcm+json; charset=utf-8", "", true},
		{"", compact, true},
		{"application/json", compact, true},
		{"application/json", `{"error":{"message":"x"}}`, false},
		{"text/plain", "a.b.c.d.e f", false},
		{"", "", false},
	} {
		if got := claimsEncrypted(c.ct, []byte(c.body)); got != c.want {
			t.Errorf("claimsEncrypted(%q, %.20q) = %v", c.ct, c.body, got)
		}
	}
}

// BenchmarkAuthAttach is mx_auth attach's whole ServeHTTP.
func BenchmarkAuthAttach(b *testing.B) {
	a := &AuthAttach{ClientID: "CLIENT-1234", APIKey: "API-KEY-4567"}
	handlertest.Provision(b, a)
	r := httptest.NewRequest("GET", "/users", nil)
	r.RemoteAddr = "127.0.0.1:50000"
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		r.Header.Del("Accept")
		if err := a.ServeHTTP(w, r, &handlertest.Next{}); err != nil {
			b.Fatal(err)
		}
	}
}
