package mxapi

import (
	"crypto/rand"
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/secrethash"
)

const (
	machineID     = "CLIENT-1234"
	machineSecret = "mxk_7Qp2ZfV9rT4sLw8yBn3HdK6cJx1A"
	bcryptID      = "other-client"
	bcryptSecret  = "bcrypt-secret"
	bcryptHashB   = "$2a$04$.3d55kpi.0vM7LgTsQuZ.erBtTRG6mxOvom8ELajDXVNDQI6AnUGa" // cost 4: tests only
)

func basicHeader(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

func newMachineCheck(t testing.TB, a *AuthCheck) *AuthCheck {
	t.Helper()
	h, err := secrethash.New([]byte(machineSecret), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a.Clients = []AuthClient{{ID: machineID, Secret: h.String()}, {ID: bcryptID, Secret: bcryptHashB}}
	handlertest.Provision(t, a)
	return a
}

// serveAuth sends one request with the given Authorization values.
func serveAuth(t *testing.T, a *AuthCheck, auth ...string) (int, *handlertest.Next, string) {
	t.Helper()
	r := handlertest.Request(httptest.NewRequest("POST", "/webhooks", strings.NewReader("{}")), "127.0.0.1")
	for _, v := range auth {
		r.Header.Add("Authorization", v)
	}
	next := &handlertest.Next{}
	w, err := handlertest.Serve(t, a, r, next)
	if err != nil {
		t.Fatal(err)
	}
	return w.Code, next, w.Body.String()
}

// TestCheckRefusesDuplicateAuthorization: two Authorization headers are
// refused whatever they hold and in whichever order, before any secret is
// compared, and nothing reaches the next handler.
func TestCheckRefusesDuplicateAuthorization(t *testing.T) {
	for _, failure := range []int{401, 404} {
		a := newMachineCheck(t, &AuthCheck{Failure: failure})
		good, bad := basicHeader(machineID, machineSecret), basicHeader(machineID, "wrong")
		for name, auth := range map[string][]string{
			"good then bad":    {good, bad},
			"bad then good":    {bad, good},
			"good twice":       {good, good},
			"good then empty":  {good, ""},
			"good then bearer": {good, "Bearer x"},
			"three":            {good, bad, good},
		} {
			status, next, _ := serveAuth(t, a, auth...)
			if status != failure || next.Calls != 0 {
				t.Errorf("failure %d, %s: %d, reached next %d times", failure, name, status, next.Calls)
			}
		}
		if status, next, _ := serveAuth(t, a, good); status != 200 || next.Calls != 1 {
			t.Fatalf("failure %d: the good credential alone: %d", failure, status)
		}
	}
}

// TestCheckStripsCredential: the checked Authorization header never goes
// on, unless keep_credentials; other headers do.
func TestCheckStripsCredential(t *testing.T) {
	for _, keep := range []bool{false, true} {
		a := newMachineCheck(t, &AuthCheck{KeepCredentials: keep})
		for _, c := range [][2]string{{machineID, machineSecret}, {bcryptID, bcryptSecret}} {
			status, next, _ := serveAuth(t, a, basicHeader(c[0], c[1]))
			if status != 200 {
				t.Fatalf("%s: %d", c[0], status)
			}
			got := next.Received.Values("Authorization")
			if keep && (len(got) != 1 || got[0] != basicHeader(c[0], c[1])) {
				t.Errorf("keep_credentials: %s: the credential was not kept", c[0])
			}
			if !keep && len(got) != 0 {
				t.Errorf("%s: the checked credential went on to the next handler", c[0])
			}
		}
	}
}

// TestCheckHashKinds: each kind of stored secret admits its secret and
// nothing else; an unknown id and a secret of another client are refused.
func TestCheckHashKinds(t *testing.T) {
	t.Setenv("MXGATE_TEST_PLAIN_SECRET", "env-secret-4c1f")
	a := newMachineCheck(t, &AuthCheck{})
	a.Clients = append(a.Clients, AuthClient{ID: "env-client", Secret: "{env.MXGATE_TEST_PLAIN_SECRET}"})
	handlertest.Provision(t, a)
	for _, c := range []struct {
		id, secret string
		want       int
	}{
		{machineID, machineSecret, 200},
		{machineID, machineSecret + "x", 401},
		{machineID, strings.ToLower(machineSecret), 401},
		{machineID, "", 401},
		{bcryptID, bcryptSecret, 200},
		{bcryptID, "wrong", 401},
		{"env-client", "env-secret-4c1f", 200},
		{"env-client", "env-secret", 401},
		{"nobody", machineSecret, 401},
		{bcryptID, machineSecret, 401},
		{machineID, bcryptSecret, 401},
	} {
		if status, _, _ := serveAuth(t, a, basicHeader(c.id, c.secret)); status != c.want {
			t.Errorf("%s: %d, want %d", c.id, status, c.want)
		}
	}
}

// TestCheckProvisionErrors: a malformed hash of any kind, and a plain
// secret, are refused at start, without echoing the value.
func TestCheckProvisionErrors(t *testing.T) {
	for name, secret := range map[string]string{
		"plain":             "hunter2-plain-secret",
		"hmac, short mac":   secrethash.Prefix + "AAAAAAAAAAAAAAAAAAAAAA$AAAA",
		"hmac, padded":      secrethash.Prefix + "AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"hmac, extra field": secrethash.Prefix + "AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$",
		"argon2id, mangled": "$argon2id$v=19$m=47104,t=1,p=1$bad",
		"unset placeholder": "{env.MXGATE_TEST_UNSET_4b1e}",
	} {
		err := handlertest.TryProvision(t, &AuthCheck{Clients: []AuthClient{{ID: "c", Secret: secret}}})
		if err == nil {
			t.Errorf("%s: provisioned", name)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error echoes the configured value", name)
		}
	}
}

// countingComparer stands in for a slow hash and counts comparisons.
type countingComparer struct {
	mu       sync.Mutex
	compared []string
}

func (c *countingComparer) Compare(hashed, plaintext []byte) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.compared = append(c.compared, string(hashed))
	return string(hashed) == "hash-of-"+string(plaintext), nil
}

func (c *countingComparer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.compared)
}

// TestUnknownClientCostsAWrongKey: an unknown client id is compared with a
// configured client's hash, exactly the work a wrong key causes.
func TestUnknownClientCostsAWrongKey(t *testing.T) {
	cc := &countingComparer{}
	known := &clientCred{id: "known", kind: kindBcrypt, hashed: []byte("hash-of-right"), slow: cc}
	a := &AuthCheck{clients: map[string]*clientCred{"known": known}, decoy: known, slots: make(chan struct{}, 64), cacheKey: []byte("0123456789abcdef0123456789abcdef")}
	if authOK(a, "nobody", "right") {
		t.Fatal("an unknown client with the decoy's secret was admitted")
	}
	if authOK(a, "known", "wrong") {
		t.Fatal("a wrong secret was admitted")
	}
	if len(cc.compared) != 2 || cc.compared[0] != cc.compared[1] {
		t.Fatalf("comparisons %q: the unknown client did not cost a comparison", cc.compared)
	}
	for range 2 { // the second time from the cache
		if !authOK(a, "known", "right") {
			t.Fatal("the right secret was refused")
		}
	}
	if cc.count() != 3 {
		t.Fatalf("%d comparisons: a verified credential is not cached", cc.count())
	}
}

// TestCacheSurvivesAFloodOfWrongSecrets: wrong secrets, however many and
// however concurrent, neither evict a verified secret nor enter the cache;
// each costs a full comparison; the good client stays on the cached path.
func TestCacheSurvivesAFloodOfWrongSecrets(t *testing.T) {
	cc := &countingComparer{}
	known := &clientCred{id: "known", kind: kindBcrypt, hashed: []byte("hash-of-right"), slow: cc}
	a := &AuthCheck{clients: map[string]*clientCred{"known": known}, decoy: known, slots: make(chan struct{}, 64), cacheKey: []byte("0123456789abcdef0123456789abcdef")}
	if !authOK(a, "known", "right") {
		t.Fatal("the right secret was refused")
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 200 {
				secret := "wrong-" + string(rune('a'+w)) + "-" + string(rune('a'+i%26))
				if authOK(a, "known", secret) || authOK(a, "nobody-"+secret, secret) {
					t.Error("a wrong secret was admitted")
					return
				}
			}
		})
	}
	for range 100 {
		if !authOK(a, "known", "right") {
			t.Fatal("the good client was refused during the flood")
		}
	}
	wg.Wait()
	// one comparison for the first good request, one for each wrong one,
	// none for the good client's hundred during the flood
	if got := cc.count(); got != 1+16*200*2 {
		t.Fatalf("%d comparisons, want %d", got, 1+16*200*2)
	}
	if !authOK(a, "known", "right") || cc.count() != 1+16*200*2 {
		t.Fatal("the flood evicted the verified secret")
	}
}

// TestCacheHoldsNoSecret: what the cache keeps is a keyed tag, not the
// secret nor its plain digest.
func TestCacheHoldsNoSecret(t *testing.T) {
	a := newMachineCheck(t, &AuthCheck{})
	if status, _, _ := serveAuth(t, a, basicHeader(bcryptID, bcryptSecret)); status != 200 {
		t.Fatal(status)
	}
	tag := a.clients[bcryptID].verified.Load()
	if tag == nil {
		t.Fatal("nothing cached")
	}
	if strings.Contains(string(tag[:]), bcryptSecret) {
		t.Fatal("the cache holds the secret")
	}
	other := newMachineCheck(t, &AuthCheck{})
	if other.tag(bcryptSecret) == *tag {
		t.Fatal("two checks tag a secret alike: the cache key is not random")
	}
	if a.clients[machineID].verified.Load() != nil {
		t.Fatal("a fast hash was cached")
	}
}

// authOK is a.authenticate for tests whose slow-hash slots never run out.
func authOK(a *AuthCheck, id, secret string) bool {
	ok, busy := a.authenticate(id, secret)
	if busy {
		panic("every slow-hash slot busy")
	}
	return ok
}
