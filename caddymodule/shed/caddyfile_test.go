package shed

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// wantError checks err against want, "Testfile:<line> <message>": the
// error says the message and names the file and line.
func wantError(t *testing.T, input string, err error, want string) {
	t.Helper()
	where, msg, _ := strings.Cut(want, " ")
	if err == nil || !strings.Contains(err.Error(), msg) || !strings.HasSuffix(err.Error(), "at "+where) {
		t.Errorf("%q: %v, want %q at %s", input, err, msg, where)
	}
}

func TestShedCaddyfile(t *testing.T) {
	for input, want := range map[string]Shed{
		"mx_shed 64":                           {MaxInFlight: 64},
		"mx_shed {\n\tmax_in_flight 8\n}":      {MaxInFlight: 8},
		"mx_shed 8 {\n\tmax_in_flight 16\n}":   {MaxInFlight: 16},
		"mx_shed 8 {\n\tretry_after 1500ms\n}": {MaxInFlight: 8, RetryAfter: caddy.Duration(1500 * time.Millisecond)},
		"mx_shed 8 {\n\terror_format json\n}":  {MaxInFlight: 8, ErrorFormat: "json"},
	} {
		var s Shed
		if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
			t.Errorf("%q: %v", input, err)
			continue
		}
		if s != want {
			t.Errorf("%q: %+v, want %+v", input, s, want)
		}
	}
	for input, msg := range map[string]string{
		"mx_shed":                                 "Testfile:1 mx_shed needs max_in_flight",
		"mx_shed {\n}":                            "Testfile:2 mx_shed needs max_in_flight",
		"mx_shed 0":                               "Testfile:1 mx_shed: invalid number '0'",
		"mx_shed -1":                              "Testfile:1 mx_shed: invalid number '-1'",
		"mx_shed abc":                             "Testfile:1 mx_shed: invalid number 'abc'",
		"mx_shed 4 8":                             "Testfile:1 too many arguments: '8'",
		"mx_shed {\n\tmax_in_flight 0\n}":         "Testfile:2 max_in_flight: invalid number '0'",
		"mx_shed {\n\tmax_in_flight\n}":           "Testfile:2 wrong argument count",
		"mx_shed {\n\tmax_in_flight 4 5\n}":       "Testfile:2 too many arguments: '5'",
		"mx_shed 4 {\n\tretry_after 0s\n}":        "Testfile:2 retry_after: invalid duration '0s'",
		"mx_shed 4 {\n\tretry_after soon\n}":      "Testfile:2 retry_after: invalid duration 'soon'",
		"mx_shed 4 {\n\terror_format html\n}":     `Testfile:2 unknown error_format "html"`,
		"mx_shed 4 {\n\tmax 8\n}":                 "Testfile:2 unrecognized mx_shed option 'max'",
		"mx_shed 4 {\n\tmax_connections 8\n}":     "Testfile:2 unrecognized mx_shed option 'max_connections'",
		"mx_shed 4 {\n\tretry_after 1s 2s\n}":     "Testfile:2 too many arguments: '2s'",
		"mx_shed 4 {\n\terror_format json xml\n}": "Testfile:2 too many arguments: 'xml'",
	} {
		var s Shed
		wantError(t, input, s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)), msg)
	}
}

func TestConnLimitCaddyfile(t *testing.T) {
	for input, want := range map[string]ConnLimit{
		"mx_conn_limit":                             {},
		"mx_conn_limit 8":                           {Max: 8},
		"mx_conn_limit {\n\tmax 8\n}":               {Max: 8},
		"mx_conn_limit 8 {\n\tmax_shedding 2\n}":    {Max: 8, MaxShedding: 2},
		"mx_conn_limit {\n\tanswer close\n}":        {Answer: "close"},
		"mx_conn_limit {\n\tanswer 503\n\tmax 9\n}": {Max: 9, Answer: "503"},
		"mx_conn_limit {\n\tacceptors 8\n}":         {Acceptors: 8},
	} {
		var cl ConnLimit
		if err := cl.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
			t.Errorf("%q: %v", input, err)
			continue
		}
		if cl.Max != want.Max || cl.MaxShedding != want.MaxShedding || cl.Answer != want.Answer || cl.Acceptors != want.Acceptors {
			t.Errorf("%q: %+v, want %+v", input, cl, want)
		}
	}
	for input, msg := range map[string]string{
		"mx_conn_limit 0":                        "Testfile:1 mx_conn_limit: invalid number '0'",
		"mx_conn_limit -1":                       "Testfile:1 mx_conn_limit: invalid number '-1'",
		"mx_conn_limit abc":                      "Testfile:1 mx_conn_limit: invalid number 'abc'",
		"mx_conn_limit 8 9":                      "Testfile:1 too many arguments: '9'",
		"mx_conn_limit {\n\tmax 0\n}":            "Testfile:2 max: invalid number '0'",
		"mx_conn_limit {\n\tmax -1\n}":           "Testfile:2 max: invalid number '-1'",
		"mx_conn_limit {\n\tmax abc\n}":          "Testfile:2 max: invalid number 'abc'",
		"mx_conn_limit {\n\tmax\n}":              "Testfile:2 wrong argument count",
		"mx_conn_limit {\n\tmax 8 9\n}":          "Testfile:2 too many arguments: '9'",
		"mx_conn_limit {\n\tmax_shedding 0\n}":   "Testfile:2 max_shedding: invalid number '0'",
		"mx_conn_limit {\n\tanswer reset\n}":     "Testfile:2 answer must be 503 or close, not 'reset'",
		"mx_conn_limit {\n\tacceptors 0\n}":      "Testfile:2 acceptors: invalid number '0'",
		"mx_conn_limit {\n\tmax_in_flight 8\n}":  "Testfile:2 unrecognized mx_conn_limit listener wrapper option 'max_in_flight'",
		"mx_conn_limit {\n\tmax 8\n\tburst 2\n}": "Testfile:3 unrecognized mx_conn_limit listener wrapper option 'burst'",
	} {
		var cl ConnLimit
		wantError(t, input, cl.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)), msg)
	}
}

// TestShedDirective: the registered parse function reads the directive
// into a handler that sheds what the Caddyfile says.
func TestShedDirective(t *testing.T) {
	h, err := caddyfileopt.UnmarshalHandler[Shed](httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser("mx_shed 1 {\n\terror_format text\n}")})
	if err != nil {
		t.Fatal(err)
	}
	s := h.(*Shed)
	handlertest.Provision(t, s)
	s.inFlight.Add(1) // one request already in flight
	w, err := handlertest.Serve(t, s, handlertest.Request(httptest.NewRequest("GET", "/", nil), "192.0.2.1"), &handlertest.Next{})
	if err != nil || w.Code != 503 || w.Body.String() != "Service unavailable: the gateway is at capacity; retry later\n" {
		t.Errorf("%d %v %q", w.Code, err, w.Body)
	}
}
