package mxapi

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/secrethash"
)

// BenchmarkWrongCredential measures what one wrong secret costs mx_auth
// check, whole handler (the refusal written, its log line not), under
// each kind of stored secret: what a client sending bad credentials makes
// the gateway spend per request.
//
//	go test -run '^$' -bench WrongCredential -benchtime 20x ./caddymodule/mxapi
func BenchmarkWrongCredential(b *testing.B) {
	const secret = machineSecret
	keyed, err := secrethash.New([]byte(secret), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.Setenv("MXGATE_BENCH_SECRET", secret)
	kinds := []struct{ name, stored string }{
		{"hmac-sha256 (hash-secret)", keyed.String()},
		{"sha256 of a placeholder", "{env.MXGATE_BENCH_SECRET}"},
	}
	for _, cost := range []int{10, 12, 14} { // 14: hash-password's default
		h, err := bcrypt.GenerateFromPassword([]byte(secret), cost)
		if err != nil {
			b.Fatal(err)
		}
		kinds = append(kinds, struct{ name, stored string }{fmt.Sprintf("bcrypt cost %d", cost), string(h)})
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	// hash-password --algorithm argon2id's defaults: t=1, m=46 MiB, p=1
	key := argon2.IDKey([]byte(secret), salt, 1, 46*1024, 1, 32)
	kinds = append(kinds, struct{ name, stored string }{"argon2id t=1 m=46MiB",
		fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, 46*1024, 1, 1,
			base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))})

	// provisioned first, so that their start-up notes do not interleave
	// with the results
	checks := make([]*AuthCheck, len(kinds))
	for i, k := range kinds {
		checks[i] = &AuthCheck{Clients: []AuthClient{{ID: machineID, Secret: k.stored}}}
		handlertest.Provision(b, checks[i])
		checks[i].logger = zap.NewNop() // the refusal's log line is not the subject
	}
	for i, k := range kinds {
		a := checks[i]
		b.Run(k.name, func(b *testing.B) {
			wrong := basicHeader(machineID, "mxk_wrong_ZfV9rT4sLw8yBn3HdK6cJx1A")
			r := handlertest.Request(httptest.NewRequest("POST", "/webhooks", nil), "127.0.0.1")
			r.Header.Set("Authorization", wrong)
			next := &handlertest.Next{}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				_ = a.ServeHTTP(w, r, next)
				if w.Code != 401 {
					b.Fatalf("a wrong secret got %d", w.Code)
				}
			}
			if next.Calls != 0 {
				b.Fatal("a wrong secret reached the next handler")
			}
		})
	}
}
