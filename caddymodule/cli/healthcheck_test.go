package cli

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/no-content", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "store redis mdx_hmac: down\n\x1b[31m", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ready", http.StatusFound) })
	release := make(chan struct{})
	mux.HandleFunc("/slow", func(http.ResponseWriter, *http.Request) { <-release })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(release)

	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := "http://" + closed.Addr().String() + "/ready"
	closed.Close()

	for _, tc := range []struct {
		url     string
		timeout time.Duration
		wantErr string // "" for healthy
	}{
		{srv.URL + "/ready", time.Second, ""},
		{srv.URL + "/no-content", time.Second, ""},
		{srv.URL + "/down", time.Second, "503 Service Unavailable: store redis mdx_hmac: down"},
		{srv.URL + "/moved", time.Second, "302 Found"},
		{srv.URL + "/slow", 100 * time.Millisecond, "no answer within 100ms"},
		{closedURL, time.Second, "connection refused"},
		{"", time.Second, "no URL"},
		{"ftp://127.0.0.1/x", time.Second, "absolute http or https URL"},
		{"/ready", time.Second, "absolute http or https URL"},
	} {
		err := probe(context.Background(), tc.url, tc.timeout)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.url, err)
		case tc.wantErr != "" && err == nil:
			t.Errorf("%s: healthy, want %q", tc.url, tc.wantErr)
		case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
			t.Errorf("%s: error %q lacks %q", tc.url, err, tc.wantErr)
		case err != nil && strings.ContainsAny(err.Error(), "\n\x1b"):
			t.Errorf("%s: error is not one printable line: %q", tc.url, err)
		}
	}
}

func TestProbeHidesUserinfo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://user:s3cret-pass@", 1)
	err := probe(context.Background(), u, time.Second)
	if err == nil || strings.Contains(err.Error(), "s3cret-pass") {
		t.Errorf("error shows the password: %v", err)
	}
}
