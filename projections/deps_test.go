package projections_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoUpwardImports: the read side never imports the services, nor the NATS server.
// The conformance package is test support (it starts servers through testkit) and is
// left out.
func TestNoUpwardImports(t *testing.T) {
	list, err := exec.Command("go", "list", "github.com/touchstream/touchstream/projections/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, list)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(list)) {
		if !strings.HasSuffix(p, "/conformance") {
			pkgs = append(pkgs, p)
		}
	}
	out, err := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range []string{"github.com/touchstream/touchstream/services", "github.com/nats-io/nats-server"} {
			if strings.HasPrefix(dep, f) {
				t.Errorf("projections depend on %s", dep)
			}
		}
	}
}
