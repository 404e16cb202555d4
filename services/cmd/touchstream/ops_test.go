package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/customer360"
)

// TestOpsCommands drives status, history and dlq through the command line against a
// real log and database: human tables, --json, and the usage errors.
func TestOpsCommands(t *testing.T) {
	c := newCLIEnv(t)
	pool, def := c.pool, c.def
	pub := c.publisher(t, "urn:test:store")
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	var ids []string
	for i := range 3 {
		e, err := events.NewEvent("C-OPS", at.Add(time.Duration(i)*time.Minute), events.StoreVisited{StoreID: fmt.Sprintf("S%d", i), Purpose: "inquiry", DurationSeconds: 30})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	c.foldAll(t)
	// A dead letter for the second visit, as a runner would have parked it before a fix.
	part := def.Layout.PartitionOf("C-OPS")
	var dlID int64
	if err := pool.QueryRow(t.Context(), `INSERT INTO projections.dead_letters (target, partition, stream, seq, event_source, event_id,
		event_type, customer_id, error) VALUES ($1, $2, 'TOUCHPOINTS', 2, 'urn:test:store', $3, 'store.visited', 'C-OPS', 'deliberate') RETURNING id`,
		customer360Target, part, ids[1]).Scan(&dlID); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, error) {
		t.Helper()
		return c.run(t, args...)
	}

	out, err := run("status")
	t.Logf("status:\n%s", out)
	if err != nil || !strings.Contains(out, "TOUCHPOINTS") || !strings.Contains(out, customer360Target) || !strings.Contains(out, "parked") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	out, err = run("status", "--json")
	var st struct {
		Streams []struct{ Messages int }  `json:"streams"`
		Targets []struct{ Target string } `json:"targets"`
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || len(st.Streams) != 1 || st.Streams[0].Messages != 3 || len(st.Targets) != 6 { // timeline, customer 360, loyalty, churn, service levels, idempotency index
		t.Fatalf("status --json: %v\n%s", err, out)
	}

	out, err = run("history", "C-OPS", "--json", "--type", "store.visited")
	var h struct {
		Items []struct{ ID string } `json:"items"`
	}
	if err != nil || json.Unmarshal([]byte(out), &h) != nil || len(h.Items) != 3 || h.Items[0].ID != ids[0] || h.Items[2].ID != ids[2] {
		t.Fatalf("history --json: %v\n%s", err, out)
	}
	out, err = run("history", "C-OPS")
	t.Logf("history:\n%s", out)
	if err != nil || !strings.Contains(out, "3 events of customer C-OPS") {
		t.Fatalf("history: %v\n%s", err, out)
	}

	if out, err = run("dlq", "list", "--status", "parked"); err != nil || !strings.Contains(out, ids[1]) && !strings.Contains(out, "store.visited") {
		t.Fatalf("dlq list: %v\n%s", err, out)
	}
	out, err = run("dlq", "show", fmt.Sprint(dlID))
	t.Logf("dlq show:\n%s", out)
	if err != nil || !strings.Contains(out, ids[1]) || !strings.Contains(out, "deliberate") {
		t.Fatalf("dlq show: %v\n%s", err, out)
	}
	if out, err = run("dlq", "redrive", fmt.Sprint(dlID), "--json"); err != nil || !strings.Contains(out, `"redriven"`) {
		t.Fatalf("dlq redrive: %v\n%s", err, out)
	}
	p, err := customer360.Get(t.Context(), pool, customer360Target, "C-OPS")
	if err != nil || p.EventsTotal != 3 {
		t.Fatalf("profile after the redrive: %v %+v", err, p)
	}

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"dlq without command", []string{"dlq"}},
		{"dlq unknown command", []string{"dlq", "purge"}},
		{"show without id", []string{"dlq", "show"}},
		{"show bad id", []string{"dlq", "show", "x"}},
		{"discard without reason", []string{"dlq", "discard", "1", "--operator", "ops-1"}},
		{"discard without operator", []string{"dlq", "discard", "1", "--reason", "r"}},
		{"history without customer", []string{"history"}},
		{"history reveal without operator", []string{"history", "C-OPS", "--reveal"}},
		{"history bad time", []string{"history", "C-OPS", "--from", "yesterday"}},
		{"history bad customer", []string{"history", "C OPS"}},
		{"status extra argument", []string{"status", "now"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := run(tc.args...); !errors.Is(err, errUsage) {
				t.Errorf("%v: %v, want a usage error", tc.args, err)
			}
		})
	}
	for _, args := range [][]string{{"status", "--help"}, {"dlq", "--help"}, {"dlq", "list", "--help"}, {"dlq", "discard", "--help"}, {"history", "--help"}} {
		out, err := run(args...)
		if err != nil && !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "usage: touchstream") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}
