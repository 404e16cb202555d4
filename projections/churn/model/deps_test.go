package model

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPure: the model core is pure Go over the standard library. It must not
// reach a database, NATS, HTTP or the projection runtime, so training tools,
// the projection and evaluation share it.
func TestPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"database/sql", "net/http", "os", "time", "github.com/jackc/", "github.com/nats-io/",
		"github.com/ThreeDotsLabs/", "github.com/touchstream/touchstream/",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") || strings.HasPrefix(dep, f) && strings.HasSuffix(f, "/") {
				t.Errorf("churn model imports %s", dep)
			}
		}
	}
}
