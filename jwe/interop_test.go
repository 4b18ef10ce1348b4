package jwe

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
)

// interop runs one command through the npm package jose, an independent
// JOSE implementation, in a Node.js process. Under CI a missing Node.js or
// package fails the test; elsewhere it is skipped with a note.
func interop(t *testing.T, cmd map[string]string) map[string]string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat("testdata/interop/node_modules/jose/package.json")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Node.js and testdata/interop's npm packages are needed (make test installs them): %v", err)
		}
		t.Skip("Node.js or testdata/interop/node_modules missing; `make test` installs them")
	}
	in, _ := json.Marshal(cmd)
	c := exec.Command(node, "interop.mjs")
	c.Dir = "testdata/interop"
	c.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var res map[string]string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node said %q: %v", out, err)
	}
	return res
}

// TestInteropJoseEncryptsGoDecrypts: what the independent implementation
// encrypts to our X-Public-Key, Decrypt opens, for both curves and ciphers.
func TestInteropJoseEncryptsGoDecrypts(t *testing.T) {
	for _, c := range curves {
		for _, ci := range ciphers {
			k := mustKey(t, c)
			s := SuiteFor(ci)
			res := interop(t, map[string]string{"op": "encrypt", "spki": k.PublicKeyHeader(), "alg": string(s.Key), "enc": string(s.Content), "plaintext": sample})
			got, err := Decrypt(res["jwe"], k, []Suite{s})
			if err != nil || string(got) != sample {
				t.Errorf("%s/%s: %q %v", c, ci, got, err)
			}
		}
	}
}

// TestInteropGoEncryptsJoseDecrypts: what Encrypt makes, the independent
// implementation opens with the same private key.
func TestInteropGoEncryptsJoseDecrypts(t *testing.T) {
	for _, c := range curves {
		for _, ci := range ciphers {
			k := mustKey(t, c)
			s := SuiteFor(ci)
			jwe, err := Encrypt(mustPub(t, k), s, []byte(sample))
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKCS8PrivateKey(k.priv)
			if err != nil {
				t.Fatal(err)
			}
			res := interop(t, map[string]string{"op": "decrypt", "pkcs8": base64.StdEncoding.EncodeToString(der), "jwe": jwe})
			if res["plaintext"] != sample || res["alg"] != string(s.Key) || res["enc"] != string(s.Content) {
				t.Errorf("%s/%s: %v", c, ci, res)
			}
		}
	}
}
