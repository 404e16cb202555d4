package events_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLightDependencies keeps the SDK light: a channel system importing events (or
// the stream definitions) must not pull in a database driver, watermill, the NATS
// server, or any other touchstream module but the schemas.
func TestLightDependencies(t *testing.T) {
	forbidden := []string{
		"github.com/jackc/pgx",
		"github.com/ThreeDotsLabs/watermill",
		"github.com/nats-io/nats-server",
		"github.com/touchstream/touchstream/projections",
		"github.com/touchstream/touchstream/services",
		"github.com/touchstream/touchstream/testkit",
		"github.com/prometheus",
	}
	for _, pkg := range []string{"github.com/touchstream/touchstream/events", "github.com/touchstream/touchstream/events/streams"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
