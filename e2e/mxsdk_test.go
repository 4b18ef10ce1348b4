package e2e

// MX's official Node SDK for the Platform API (the npm package
// mx-platform-node, pinned in testdata/mxsdk's lock file) driven against
// the egress sidecar, in front of a stand-in for MX that is as strict as
// MX: Basic credentials, and 406 for an Accept that does not name the
// API version's type. The SDK runs in a Node.js process (testdata/mxsdk/
// sdk.mjs) configured as its README shows, or without the README's Accept
// line; what it resolved or rejected with is what these tests assert.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/jwe"
)

// mxV1 is the Accept MX's v20111101 API needs.
const mxV1 = "application/vnd.mx.api.v1+json"

// sdkResult is what one SDK call resolved or rejected with.
type sdkResult struct {
	Op         string          `json:"op"`
	Status     int             `json:"status"`
	Data       json.RawMessage `json:"data"`
	RetryAfter *string         `json:"retryAfter"`
	Error      string          `json:"error"`
}

// sdkPlan is what sdk.mjs runs: see the comment at its top.
type sdkPlan struct {
	BasePath string           `json:"basePath"`
	Accept   bool             `json:"accept"`
	Username *string          `json:"username,omitempty"`
	Password *string          `json:"password,omitempty"`
	Steps    []map[string]any `json:"steps"`
}

// mxSDK returns the node program, with MX's SDK installed beside
// sdk.mjs at the version package.json pins. Under CI a missing Node.js or
// package fails the test; elsewhere it is skipped with a note.
func mxSDK(t *testing.T) string {
	t.Helper()
	var pinned struct {
		Dependencies map[string]string
	}
	b, err := os.ReadFile("testdata/mxsdk/package.json")
	if err == nil {
		err = json.Unmarshal(b, &pinned)
	}
	if err != nil || pinned.Dependencies["mx-platform-node"] == "" {
		t.Fatalf("testdata/mxsdk/package.json pins no mx-platform-node: %v", err)
	}
	node, err := exec.LookPath("node")
	var installed struct{ Version string }
	if err == nil {
		if b, err = os.ReadFile("testdata/mxsdk/node_modules/mx-platform-node/package.json"); err == nil {
			err = json.Unmarshal(b, &installed)
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Node.js and testdata/mxsdk's npm packages are needed (make test installs them): %v", err)
		}
		t.Skip("Node.js or e2e/testdata/mxsdk/node_modules missing; `make test` installs them")
	}
	if want := pinned.Dependencies["mx-platform-node"]; installed.Version != want {
		t.Fatalf("mx-platform-node %s is installed, package.json pins %s: run npm ci --prefix e2e/testdata/mxsdk", installed.Version, want)
	}
	return node
}

// runSDK runs plan through MX's SDK and returns one raw result per step.
func runSDK(t *testing.T, node string, plan sdkPlan) []json.RawMessage {
	t.Helper()
	in, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, node, "sdk.mjs")
	c.Dir = "testdata/mxsdk"
	c.Stdin = bytes.NewReader(in)
	// axios would send loopback requests to a proxy named in the
	// environment
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !strings.HasSuffix(strings.ToLower(name), "_proxy") {
			c.Env = append(c.Env, kv)
		}
	}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("node sdk.mjs: %v\n%s", err, stderr.String())
	}
	var res struct{ Results []json.RawMessage }
	if err := json.Unmarshal(out, &res); err != nil || len(res.Results) != len(plan.Steps) {
		t.Fatalf("sdk.mjs said %q: %v", out, err)
	}
	return res.Results
}

// one reads a step's single result.
func one(t *testing.T, raw json.RawMessage) sdkResult {
	t.Helper()
	var r sdkResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("result %s: %v", raw, err)
	}
	return r
}

// many reads a parallel step's results.
func many(t *testing.T, raw json.RawMessage) []sdkResult {
	t.Helper()
	var rs []sdkResult
	if err := json.Unmarshal(raw, &rs); err != nil {
		t.Fatalf("results %s: %v", raw, err)
	}
	return rs
}

// mxUser is a user as MX's Platform API writes one.
type mxUser struct {
	GUID       string `json:"guid"`
	ID         string `json:"id,omitempty"`
	Email      string `json:"email,omitempty"`
	Metadata   string `json:"metadata,omitempty"`
	IsDisabled bool   `json:"is_disabled"`
}

// fakeMX stands in for MX's Platform API, v20111101: users, in memory,
// behind MX's checks. Scripted faults answer a request ("GET
// /users/USR-x") with the statuses queued for it, in turn, before the
// request is served.
type fakeMX struct {
	mu     sync.Mutex
	users  map[string]mxUser
	faults map[string][]int
}

func newFakeMX(users ...mxUser) *fakeMX {
	m := &fakeMX{users: map[string]mxUser{}, faults: map[string][]int{}}
	for _, u := range users {
		m.users[u.GUID] = u
	}
	return m
}

// fault queues statuses for the requests named by what ("GET /users").
func (m *fakeMX) fault(what string, statuses ...int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults[what] = append(m.faults[what], statuses...)
}

// mxStandIn serves fake on loopback, recording each request as
// newUpstream does (the body is then served again to fake).
func mxStandIn(t *testing.T, fake *fakeMX) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.requests = append(u.requests, recorded{r.Method, r.RequestURI, r.Header.Clone(), body})
		u.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// mxError is MX's error body.
func mxError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"message": msg}})
	w.Write(b)
}

// namesV1 reports whether the Accept field lines name MX's v1 type
// (read here without the gateway's parser).
func namesV1(fields []string) bool {
	for _, f := range fields {
		for _, el := range strings.Split(f, ",") {
			mt, _, _ := strings.Cut(el, ";")
			if strings.EqualFold(strings.TrimSpace(mt), mxV1) {
				return true
			}
		}
	}
	return false
}

func (m *fakeMX) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a := r.Header.Values("Authorization"); len(a) != 1 || a[0] != basicAuth() {
		mxError(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	if !namesV1(r.Header.Values("Accept")) {
		mxError(w, http.StatusNotAcceptable, "Not Acceptable: the Accept header must name the API version, application/vnd.mx.api.v1+json")
		return
	}
	what := r.Method + " " + r.URL.Path
	m.mu.Lock()
	var fault int
	if q := m.faults[what]; len(q) > 0 {
		fault, m.faults[what] = q[0], q[1:]
	}
	m.mu.Unlock()
	switch fault {
	case 0:
	case http.StatusTooManyRequests:
		mxError(w, fault, "Too many requests have been made in a given amount of time. Wait before retrying.")
		return
	default:
		mxError(w, fault, http.StatusText(fault))
		return
	}
	status, body := m.serve(r)
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	if status >= 300 {
		mxError(w, status, body.(string))
		return
	}
	plain, _ := json.Marshal(body)
	// MX encrypts what the request asks it to (the sidecar's mx_jwe does)
	if c, _, ok, err := jwe.CipherFromContentType(r.Header.Get("Content-Type")); ok && err == nil {
		pub, _, err := jwe.ParsePublicKeyHeader(r.Header.Get("X-Public-Key"))
		if err != nil {
			mxError(w, http.StatusPreconditionFailed, "Invalid public key")
			return
		}
		compact, _ := jwe.Encrypt(pub, jwe.SuiteFor(c), plain)
		w.Header().Set("Content-Type", "application/jose")
		w.WriteHeader(status)
		io.WriteString(w, compact)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.mx.api.v1+json")
	w.WriteHeader(status)
	w.Write(plain)
}

// serve answers the users resource: a status and a body to marshal, or
// an error message.
func (m *fakeMX) serve(r *http.Request) (int, any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	guid, item := strings.CutPrefix(r.URL.Path, "/users/")
	if item && strings.Contains(guid, "/") || !item && r.URL.Path != "/users" {
		return http.StatusNotFound, "Not Found"
	}
	var in struct {
		User *mxUser `json:"user"`
	}
	if r.Method == "POST" || r.Method == "PUT" {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil || in.User == nil || *in.User == (mxUser{}) {
			return http.StatusBadRequest, "The user must be present and not empty."
		}
	}
	switch {
	case !item && r.Method == "GET":
		list := []mxUser{}
		for _, u := range m.users {
			list = append(list, u)
		}
		return http.StatusOK, map[string]any{"users": list, "pagination": map[string]int{"current_page": 1, "per_page": 25, "total_entries": len(list), "total_pages": 1}}
	case !item && r.Method == "POST":
		u := *in.User
		u.GUID = "USR-" + u.ID
		if _, dup := m.users[u.GUID]; dup || u.ID == "" {
			return http.StatusConflict, "A user with this id already exists."
		}
		m.users[u.GUID] = u
		return http.StatusOK, map[string]mxUser{"user": u}
	}
	u, ok := m.users[guid]
	if !ok {
		return http.StatusNotFound, "We were unable to find the record you requested."
	}
	switch r.Method {
	case "GET":
		return http.StatusOK, map[string]mxUser{"user": u}
	case "PUT":
		if in.User.Metadata != "" {
			u.Metadata = in.User.Metadata
		}
		if in.User.Email != "" {
			u.Email = in.User.Email
		}
		m.users[guid] = u
		return http.StatusOK, map[string]mxUser{"user": u}
	case "DELETE":
		delete(m.users, guid)
		return http.StatusNoContent, nil
	}
	return http.StatusMethodNotAllowed, "Method Not Allowed"
}

// sdkSidecar starts the egress sidecar of examples/production, adapted to
// loopback, in front of mx: attach (v20111101), retry, paced rate limit,
// decrypt. limits is mx_rate_limit's budget lines. Its metrics are at
// g.metrics.
func sdkSidecar(t *testing.T, mx string, limits string) (string, *gateway) {
	t.Helper()
	port, mport := freePort(t), freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	auto_https off
	servers {
		protocols h1 h2
	}
	log {
		format mxgate_redact
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	mx_auth attach {
		client_id {env.E2E_MX_CLIENT_ID}
		api_key {env.E2E_MX_API_KEY}
		api_version v20111101
	}
	mx_retry {
		base_delay 20ms
		max_delay 100ms
		max_time 3s
		max_attempts 3
	}
	mx_rate_limit {
		%s
		mode wait
		max_wait 5s
		error_format json
	}
	mx_jwe decrypt {
		curve p384
		cipher a256gcm
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	metrics
}
`, port, limits, mx, mport), egressEnv...)
	g.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	return fmt.Sprintf("http://127.0.0.1:%d", port), g
}

// checkWire asserts that every request that reached MX carried the
// sidecar's credentials alone, the v1 Accept alone, and asked for an
// encrypted reply.
func checkWire(t *testing.T, reqs []recorded) {
	t.Helper()
	if len(reqs) == 0 {
		t.Fatal("nothing reached MX")
	}
	for _, r := range reqs {
		if a := r.Header.Values("Authorization"); len(a) != 1 || a[0] != basicAuth() {
			t.Errorf("%s %s reached MX with %d Authorization values, not the sidecar's one", r.Method, r.URI, len(a))
		}
		if a := r.Header.Values("Accept"); len(a) != 1 || a[0] != mxV1 {
			t.Errorf("%s %s reached MX with Accept %q", r.Method, r.URI, a)
		}
		if r.Header.Get("X-Public-Key") == "" {
			t.Errorf("%s %s reached MX without asking for an encrypted reply", r.Method, r.URI)
		}
	}
}

// count is how many of reqs were method path.
func count(reqs []recorded, method, path string) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method && r.URI == path {
			n++
		}
	}
	return n
}

func strp(s string) *string { return &s }

// TestMXSDKThroughSidecar: the SDK used as its README shows, as its
// README shows but without credentials (the sidecar holds them), and
// without the README's Accept line, makes users through the sidecar: each
// call gets MX's answer, with the sidecar's credentials and the v1 Accept
// on the wire. Without the sidecar, the SDK without the Accept line gets
// MX's 406: the stand-in is as strict as MX.
func TestMXSDKThroughSidecar(t *testing.T) {
	t.Parallel()
	node := mxSDK(t)

	// the stand-in's strictness, with the SDK alone
	direct := mxStandIn(t, newFakeMX())
	for _, c := range []struct {
		accept bool
		want   int
	}{{true, 200}, {false, 406}} {
		res := runSDK(t, node, sdkPlan{BasePath: direct.URL, Accept: c.accept, Username: strp(clientID), Password: strp(apiKey),
			Steps: []map[string]any{{"op": "listUsers"}}})
		if r := one(t, res[0]); r.Status != c.want {
			t.Fatalf("the SDK straight to the stand-in, Accept line %v: %d %s, want %d", c.accept, r.Status, r.Data, c.want)
		}
	}
	if a := direct.Requests()[1].Header.Get("Accept"); a != "application/json, text/plain, */*" {
		t.Fatalf("the SDK without its README's Accept line sent Accept %q: the test assumes axios's default", a)
	}

	mx := mxStandIn(t, newFakeMX(mxUser{GUID: "USR-seed", ID: "seed", Email: "seed@example.com"}))
	base, _ := sdkSidecar(t, mx.hostPort(), "")
	for _, c := range []struct {
		name               string
		accept             bool
		username, password *string
		deleteAccept       string // deleteUser's required accept argument
	}{
		{"readme", true, strp("app-holds-no-client-id"), strp("app-holds-no-api-key"), mxV1},
		{"readme without credentials", true, nil, nil, mxV1},
		{"without the Accept line", false, nil, nil, "application/json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := strings.ReplaceAll(c.name, " ", "-")
			guid := "USR-" + id
			before := len(mx.Requests())
			res := runSDK(t, node, sdkPlan{BasePath: base, Accept: c.accept, Username: c.username, Password: c.password,
				Steps: []map[string]any{
					{"op": "listUsers"},
					{"op": "createUser", "user": map[string]any{"id": id, "email": id + "@example.com", "metadata": "through the sidecar"}},
					{"op": "readUser", "guid": guid},
					{"op": "updateUser", "guid": guid, "user": map[string]any{"metadata": "updated"}},
					{"op": "deleteUser", "guid": guid, "accept": c.deleteAccept},
					{"op": "readUser", "guid": guid},
					{"op": "createUser", "user": map[string]any{}},
				}})
			want := []struct {
				status int
				data   string
			}{
				{200, ""},
				{200, `{"user":{"guid":"` + guid + `","id":"` + id + `","email":"` + id + `@example.com","metadata":"through the sidecar","is_disabled":false}}`},
				{200, `{"user":{"guid":"` + guid + `","id":"` + id + `","email":"` + id + `@example.com","metadata":"through the sidecar","is_disabled":false}}`},
				{200, `{"user":{"guid":"` + guid + `","id":"` + id + `","email":"` + id + `@example.com","metadata":"updated","is_disabled":false}}`},
				{204, "null"},
				{404, `{"error":{"message":"We were unable to find the record you requested."}}`},
				{400, `{"error":{"message":"The user must be present and not empty."}}`},
			}
			for i, w := range want {
				r := one(t, res[i])
				if r.Status != w.status || (w.data != "" && !jsonEqual(r.Data, w.data)) {
					t.Errorf("step %d (%s): the SDK got %d %s, want %d %s", i+1, r.Op, r.Status, r.Data, w.status, w.data)
				}
			}
			var list struct{ Users []mxUser }
			if err := json.Unmarshal(one(t, res[0]).Data, &list); err != nil || !reflect.DeepEqual(list.Users, []mxUser{{GUID: "USR-seed", ID: "seed", Email: "seed@example.com"}}) {
				t.Errorf("listUsers: the SDK got %s", one(t, res[0]).Data)
			}
			reqs := mx.Requests()[before:]
			if len(reqs) != len(want) {
				t.Errorf("%d requests reached MX for %d calls", len(reqs), len(want))
			}
			checkWire(t, reqs)
		})
	}
}

// jsonEqual reports whether the JSON texts a and b hold the same value.
func jsonEqual(a json.RawMessage, b string) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal([]byte(b), &y) == nil && reflect.DeepEqual(x, y)
}

// TestMXSDKRetries: MX's 429 and 503 on an idempotent call are retried by
// the sidecar, and the SDK sees the success; a POST is never retried, so
// the SDK sees MX's 429; an MX that stays unavailable past max_attempts
// gives the SDK MX's 503. The SDK runs without the README's Accept line.
func TestMXSDKRetries(t *testing.T) {
	t.Parallel()
	node := mxSDK(t)
	fake := newFakeMX(mxUser{GUID: "USR-flaky", ID: "flaky"}, mxUser{GUID: "USR-busy", ID: "busy"}, mxUser{GUID: "USR-down", ID: "down"})
	mx := mxStandIn(t, fake)
	base, g := sdkSidecar(t, mx.hostPort(), "")
	fake.fault("GET /users/USR-flaky", 429, 429)
	fake.fault("GET /users/USR-busy", 503)
	fake.fault("PUT /users/USR-busy", 429)
	fake.fault("DELETE /users/USR-flaky", 503)
	fake.fault("POST /users", 429)
	fake.fault("GET /users/USR-down", 503, 503, 503, 503)
	res := runSDK(t, node, sdkPlan{BasePath: base, Steps: []map[string]any{
		{"op": "readUser", "guid": "USR-flaky"},
		{"op": "readUser", "guid": "USR-busy"},
		{"op": "updateUser", "guid": "USR-busy", "user": map[string]any{"metadata": "after a 429"}},
		{"op": "deleteUser", "guid": "USR-flaky", "accept": "*/*"},
		{"op": "createUser", "user": map[string]any{"id": "new"}},
		{"op": "readUser", "guid": "USR-down"},
	}})
	for i, w := range []struct {
		status        int
		data          string
		method, path  string
		reachedMXWith int
	}{
		{200, `{"user":{"guid":"USR-flaky","id":"flaky","is_disabled":false}}`, "GET", "/users/USR-flaky", 3},
		{200, `{"user":{"guid":"USR-busy","id":"busy","is_disabled":false}}`, "GET", "/users/USR-busy", 2},
		{200, `{"user":{"guid":"USR-busy","id":"busy","metadata":"after a 429","is_disabled":false}}`, "PUT", "/users/USR-busy", 2},
		{204, "null", "DELETE", "/users/USR-flaky", 2},
		{429, `{"error":{"message":"Too many requests have been made in a given amount of time. Wait before retrying."}}`, "POST", "/users", 1},
		{503, `{"error":{"message":"Service Unavailable"}}`, "GET", "/users/USR-down", 3},
	} {
		r := one(t, res[i])
		if r.Status != w.status || !jsonEqual(r.Data, w.data) {
			t.Errorf("step %d (%s): the SDK got %d %s, want %d %s", i+1, r.Op, r.Status, r.Data, w.status, w.data)
		}
		if n := count(mx.Requests(), w.method, w.path); n != w.reachedMXWith {
			t.Errorf("step %d: %s %s reached MX %d times, want %d", i+1, w.method, w.path, n, w.reachedMXWith)
		}
	}
	checkWire(t, mx.Requests())
	m := metrics(t, g)
	if r429, r503 := m[`mxgate_retries_total{status="429"}`], m[`mxgate_retries_total{status="503"}`]; r429 != 3 || r503 != 4 {
		t.Errorf("retries counted: %v after 429, %v after 503; want 3 and 4", r429, r503)
	}
}

// TestMXSDKPacing: a burst from the SDK over the sidecar's budget is held
// and paced, not refused: every call succeeds, each reached MX once, and
// the limiter counted the wait. A call that would wait longer than
// max_wait gets the sidecar's own 429 with Retry-After, and never reaches
// MX.
//
// The GET budget is three at once and one more every 4 s: the fourth of
// four calls sent together waits (up to 4 s, within max_wait 5s) however
// slowly the machine delivers them, unless they reach the sidecar more
// than 4 s apart.
func TestMXSDKPacing(t *testing.T) {
	t.Parallel()
	node := mxSDK(t)
	fake := newFakeMX(mxUser{GUID: "USR-1", ID: "1"}, mxUser{GUID: "USR-2", ID: "2"})
	mx := mxStandIn(t, fake)
	base, g := sdkSidecar(t, mx.hostPort(), "get 15/m burst 3\n\t\tdelete 1/m burst 1")
	const burst = 4
	res := runSDK(t, node, sdkPlan{BasePath: base, Steps: []map[string]any{
		{"op": "listUsers", "parallel": burst},
		{"op": "deleteUser", "guid": "USR-1", "accept": "application/json"},
		{"op": "deleteUser", "guid": "USR-2", "accept": "application/json"},
	}})
	for i, r := range many(t, res[0]) {
		if r.Status != 200 {
			t.Errorf("call %d of the burst: the SDK got %d %s", i+1, r.Status, r.Data)
		}
	}
	if r := one(t, res[1]); r.Status != 204 {
		t.Errorf("the first DELETE: the SDK got %d %s", r.Status, r.Data)
	}
	r := one(t, res[2])
	if r.Status != 429 || !jsonEqual(r.Data, `{"error":{"message":"Too many requests"}}`) || r.RetryAfter == nil || *r.RetryAfter == "" || *r.RetryAfter == "0" {
		t.Errorf("the DELETE over max_wait: the SDK got %d %s, Retry-After %v; want the sidecar's 429", r.Status, r.Data, r.RetryAfter)
	}
	reqs := mx.Requests()
	if n, d1, d2 := count(reqs, "GET", "/users"), count(reqs, "DELETE", "/users/USR-1"), count(reqs, "DELETE", "/users/USR-2"); n != burst || d1 != 1 || d2 != 0 {
		t.Errorf("reached MX: %d of %d GETs, %d and %d DELETEs (want 1 and 0)", n, burst, d1, d2)
	}
	checkWire(t, reqs)
	m := metrics(t, g)
	admitted, refused := m[`mxgate_ratelimit_admitted_total{class="get"}`], m[`mxgate_ratelimit_rejected_total{class="get"}`]
	waited := m[`mxgate_ratelimit_wait_seconds_count{class="get"}`]
	// a budget of 3 at once: of 4, one waited
	if admitted != burst || refused != 0 || waited != 1 {
		t.Errorf("GET budget: %v admitted, %v refused, %v waited; want %d, 0, 1", admitted, refused, waited, burst)
	}
	if d := m[`mxgate_ratelimit_rejected_total{class="delete"}`]; d != 1 {
		t.Errorf("DELETE budget: %v refused, want 1", d)
	}
}

// TestMXSDKStoreDownRefusal: with the budgets' Redis unreachable and
// on_store_error deny, the SDK gets the sidecar's own 503 with
// Retry-After, and nothing reaches MX.
func TestMXSDKStoreDownRefusal(t *testing.T) {
	t.Parallel()
	node := mxSDK(t)
	mx := mxStandIn(t, newFakeMX())
	closed := freePort(t) // nothing listens there
	base, g := sdkSidecar(t, mx.hostPort(), fmt.Sprintf("store redis redis://127.0.0.1:%d\n\t\ton_store_error deny\n\t\tredis_timeout 200ms", closed))
	res := runSDK(t, node, sdkPlan{BasePath: base, Steps: []map[string]any{{"op": "listUsers"}, {"op": "createUser", "user": map[string]any{"id": "x"}}}})
	for i, step := range res {
		r := one(t, step)
		if r.Status != 503 || !jsonEqual(r.Data, `{"error":{"message":"Service unavailable: rate limit store unreachable"}}`) || r.RetryAfter == nil || *r.RetryAfter != "1" {
			t.Errorf("step %d (%s): the SDK got %d %s, Retry-After %v; want the sidecar's 503", i+1, r.Op, r.Status, r.Data, r.RetryAfter)
		}
	}
	if n := len(mx.Requests()); n != 0 {
		t.Errorf("%d requests reached MX while the budgets were unknown", n)
	}
	// the GET was retried by mx_retry (Retry-After 1 within max_time 3s,
	// max_attempts 3), the POST was not
	if n := metrics(t, g)[`mxgate_retries_total{status="503"}`]; n < 1 || n > 2 {
		t.Errorf("retries after the sidecar's 503: %v, want 1 or 2 (the GET's)", n)
	}
}
