package ledger

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPure: the ledger core is pure Go over the events contract (whose SDK brings
// nats.go along). It must not itself reach a database, NATS, HTTP or the projection
// runtime, so the projection, the redemption service and what-if tools can share it.
func TestPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"database/sql", "net/http",
		"github.com/jackc/", "github.com/nats-io/", "github.com/ThreeDotsLabs/",
		"github.com/touchstream/touchstream/projections/", "github.com/touchstream/touchstream/services",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("loyalty imports %s", dep)
			}
		}
	}
}
