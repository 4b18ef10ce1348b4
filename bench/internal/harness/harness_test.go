package harness

import (
	"os"
	"strings"
	"testing"
)

// TestToRoot: from within the bench module, ToRoot moves to the top of the
// checkout, where cmd/mxgate and the gateway's go.mod are.
func TestToRoot(t *testing.T) {
	t.Chdir(".") // restored when the test ends
	ToRoot()
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(mod), "\n"); first != "module github.com/mxgate/mxgate" {
		t.Errorf("ToRoot moved to a directory whose go.mod starts %q", first)
	}
	if _, err := os.Stat("cmd/mxgate/main.go"); err != nil {
		t.Error(err)
	}
}
