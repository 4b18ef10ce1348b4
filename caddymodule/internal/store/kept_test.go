package store

import (
	"strings"
	"testing"
)

// TestKeep: configurations that take the same key share one value; each
// one's settings apply when it takes it; when one lets go, the settings
// of the latest that still holds it apply again; the last to let go
// destroys the value.
func TestKeep(t *testing.T) {
	type value struct{ setting string }
	made, destroyed := 0, 0
	setting := ""
	mk := func() (*value, func(), error) { // made with the settings of the one that makes it
		made++
		return &value{setting: setting}, func() { destroyed++ }, nil
	}
	apply := func(v *value, s string) { v.setting = s }
	key := CredentialKey("test-keep", t.Name())
	setting = "running"
	running, releaseRunning, err := Keep(key, mk, apply, "running")
	if err != nil || running.setting != "running" {
		t.Fatal(err, running.setting)
	}
	// a reload that fails: its settings apply while it loads, then the
	// running configuration's again
	failed, releaseFailed, _ := Keep(key, mk, apply, "failed")
	if failed != running || running.setting != "failed" || made != 1 {
		t.Fatalf("a second configuration got its own value (%d made) or its settings did not apply (%q)", made, running.setting)
	}
	releaseFailed()
	releaseFailed() // twice is once
	if running.setting != "running" || destroyed != 0 {
		t.Fatalf("after the failed load: %q, %d destroyed", running.setting, destroyed)
	}
	// a reload that succeeds: the old configuration lets go after
	next, releaseNext, _ := Keep(key, mk, apply, "next")
	releaseRunning()
	if next != running || next.setting != "next" || destroyed != 0 {
		t.Fatalf("after the reload: %q, %d destroyed", next.setting, destroyed)
	}
	releaseNext()
	if destroyed != 1 {
		t.Fatalf("the last configuration let go: %d destroyed", destroyed)
	}
	setting = "again"
	again, releaseAgain, _ := Keep(key, mk, apply, "again")
	defer releaseAgain()
	if again == running || made != 2 || again.setting != "again" {
		t.Fatal("a value destroyed was handed out again")
	}
}

// TestCredentialKey: names differ with any part and hold none.
func TestCredentialKey(t *testing.T) {
	a := CredentialKey("mxconnect", "https://mx.example", "user", "s3cret-password")
	for _, other := range []string{
		CredentialKey("mxconnect", "https://mx.example", "user", "s3cret-passwore"),
		CredentialKey("mxconnect", "https://mx.example", "users3cret-password", ""),
		CredentialKey("jwks", "https://mx.example", "user", "s3cret-password"),
	} {
		if other == a {
			t.Fatal("two lists of parts share a name")
		}
	}
	if a != CredentialKey("mxconnect", "https://mx.example", "user", "s3cret-password") {
		t.Fatal("a name is not stable within the process")
	}
	if !strings.HasPrefix(a, "mxconnect:") || strings.Contains(a, "s3cret") || strings.Contains(a, "user") || strings.Contains(a, "mx.example") {
		t.Fatalf("the name %q holds a part", a)
	}
}
