package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/services/internal/audit"
	"github.com/touchstream/touchstream/testkit"
)

// TestAuditAccess: `touchstream audit access` lists the records the query API wrote,
// filtered, as a table and as JSON.
func TestAuditAccess(t *testing.T) {
	c := newCLIEnv(t)
	if err := audit.Migrate(t.Context(), c.pool); err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(audit.Config{}, c.pool, nil, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "audit log", 5*time.Second, l.Run)
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	for _, r := range []audit.Record{
		{At: at, StaffID: "agent-7", Roles: []string{"agent"}, Customer: "C-1", Fields: []string{"name", "phone"}, Route: "search", RequestID: "r1"},
		{At: at.Add(time.Hour), StaffID: "sup-1", Roles: []string{"supervisor"}, Customer: "C-1", Fields: []string{"name", "phone", "id_number"}, Clear: true, Route: "customer", RequestID: "r2"},
		{At: at.Add(48 * time.Hour), StaffID: "agent-7", Roles: []string{"agent"}, Customer: "C-2", Fields: []string{"phone"}, Route: "customer", RequestID: "r3"},
	} {
		if err := l.Record(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.run(t, "audit", "access", "--customer", "C-1")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "AT") || !strings.Contains(lines[1], "sup-1") || !strings.Contains(lines[1], "full") ||
		!strings.Contains(lines[2], "agent-7") || !strings.Contains(lines[2], "masked") {
		t.Errorf("table:\n%s", out)
	}
	out, err = c.run(t, "audit", "access", "--staff", "agent-7", "--from", "2026-11-04", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got []audit.Entry
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].Customer != "C-2" || got[0].RequestID != "r3" {
		t.Errorf("JSON %s (%v)", out, err)
	}
	out, err = c.run(t, "audit", "access", "--to", "2026-11-03T10:30:00Z", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].RequestID != "r1" {
		t.Errorf("--to: %s (%v)", out, err)
	}
	for _, bad := range [][]string{{"audit"}, {"audit", "reads"}, {"audit", "access", "--customer", "a b"}, {"audit", "access", "--from", "yesterday"}, {"audit", "access", "--limit", "0"}} {
		if _, err := c.run(t, bad...); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
}
