package features

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPure: the features core is pure Go over the events contract. It must not
// itself reach a database, NATS, HTTP or the projection runtime, so the projection,
// training and evaluation tools can share it.
func TestPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"database/sql", "net/http", "os", "github.com/jackc/", "github.com/nats-io/",
		"github.com/ThreeDotsLabs/", "github.com/touchstream/touchstream/projections",
		"github.com/touchstream/touchstream/services",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("churn features imports %s", dep)
			}
		}
	}
}
