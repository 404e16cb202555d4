package main

import (
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/verify"
)

// TestVerifyCommand drives `touchstream verify` against a real log and database: clean
// (table and --json), then a corrupted profile makes it fail naming the customer.
func TestVerifyCommand(t *testing.T) {
	c := newCLIEnv(t)
	pool, def := c.pool, c.def
	pub := c.publisher(t, "urn:test:recharge")
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i, cust := range []string{"C-VER-1", "C-VER-2", "C-VER-1"} {
		e, err := events.NewEvent(cust, at.Add(time.Duration(i)*time.Minute),
			events.RechargeCompleted{RechargeID: "R" + cust, Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "cash"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	c.foldAll(t)
	run := func(args ...string) (string, error) {
		t.Helper()
		return c.run(t, append([]string{"verify", "--quiet"}, args...)...)
	}

	out, err := run()
	t.Logf("verify:\n%s", out)
	if err != nil || !strings.Contains(out, customer360Target+": 2 customers, 3 events checked") || !strings.Contains(out, ": OK") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	out, err = run("customer360", "--json")
	var rep verify.Report
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || rep.Customers != 2 || len(rep.Partitions) != def.Layout.Partitions {
		t.Fatalf("verify customer360 --json: %v\n%s", err, out)
	}

	if _, err := pool.Exec(t.Context(), `UPDATE customer360_v1.profiles SET recharge_total_fen = 1 WHERE customer_id = 'C-VER-2'`); err != nil {
		t.Fatal(err)
	}
	out, err = run()
	t.Logf("verify after corruption:\n%s", out)
	if !errors.Is(err, verify.ErrMismatch) || !strings.Contains(err.Error(), "C-VER-2") || !strings.Contains(out, "recharge_total_fen") {
		t.Fatalf("verify after corrupting a profile: %v, want a mismatch naming C-VER-2\n%s", err, out)
	}
	out, err = run("--json", customer360Target)
	if !errors.Is(err, verify.ErrMismatch) || json.Unmarshal([]byte(out), &rep) != nil || rep.OK || rep.Differing != 1 {
		t.Fatalf("verify --json after corruption: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		args []string
		want error
	}{
		{[]string{"--help"}, flag.ErrHelp},
		{[]string{"loyalty"}, errUsage},
		{[]string{"--target", "timeline_v1"}, errUsage},
		{[]string{"--partitions", "x"}, errUsage},
		{[]string{"--partitions", "64"}, errUsage},
	} {
		if _, err := run(tc.args...); !errors.Is(err, tc.want) {
			t.Errorf("verify %v: %v, want %v", tc.args, err, tc.want)
		}
	}
}
