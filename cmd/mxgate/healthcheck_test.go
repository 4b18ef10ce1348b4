package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mxgate/mxgate/caddymodule/cli"
)

func TestHealthcheckCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	if _, errOut, status := mxgate(t, nil, "healthcheck", "--url", srv.URL+"/ready"); status != 0 {
		t.Errorf("healthy: exit %d, stderr %s", status, errOut)
	}
	// From the environment, as the container image sets it.
	if _, errOut, status := mxgate(t, []string{cli.HealthURLEnv + "=" + srv.URL + "/ready"}, "healthcheck"); status != 0 {
		t.Errorf("healthy from $%s: exit %d, stderr %s", cli.HealthURLEnv, status, errOut)
	}
	_, errOut, status := mxgate(t, nil, "healthcheck", "--url", srv.URL+"/other")
	if status != 1 {
		t.Errorf("unhealthy: exit %d, want 1", status)
	}
	if want := "mxgate healthcheck: " + srv.URL + "/other: 503 Service Unavailable: not ready\n"; errOut != want {
		t.Errorf("unhealthy: stderr %q, want %q", errOut, want)
	}
}
