package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
)

// TestRebuildCommandUnderLiveTraffic: while a projector serves customer360_v1 and
// events keep arriving, `touchstream rebuild customer360` builds customer360_v2,
// switches readers; the projector follows the switch and continues v2, and `verify`
// finds v2 clean against the log. Then the old version is dropped, one customer is
// recomputed in place, and a range is replayed into a version that does not serve.
func TestRebuildCommandUnderLiveTraffic(t *testing.T) {
	c := newCLIEnv(t)
	pool := c.pool
	pub := c.publisher(t, "urn:test:recharge")
	var sent atomic.Int64
	publish := func(ctx context.Context, n int) error {
		evs := make([]*events.Event, 0, n)
		for i := 0; i < n; i++ {
			k := sent.Add(1)
			e, err := events.NewEvent(fmt.Sprintf("C-RB-%03d", k%150), time.Now().Add(-time.Hour),
				events.RechargeCompleted{RechargeID: fmt.Sprintf("R%d", k), Amount: events.CNY(1000 + k), Credited: events.CNY(1000 + k), Method: "cash"})
			if err != nil {
				return err
			}
			evs = append(evs, e)
		}
		for _, r := range pub.PublishBatch(ctx, evs) {
			if r.Err != nil {
				return r.Err
			}
		}
		return nil
	}
	if err := publish(t.Context(), 5000); err != nil {
		t.Fatal(err)
	}

	// The live projector, following the serving versions.
	pdeps := c.projectorDeps(t)
	projCtx, stopProj := context.WithCancel(t.Context())
	projDone := make(chan error, 1)
	go func() {
		projDone <- followServing(projCtx, projectorFlags{batch: 500, linger: 5 * time.Millisecond, leaseTTL: 2 * time.Second, instance: "live"},
			pdeps, 100*time.Millisecond)
	}()
	defer func() { stopProj(); <-projDone }()

	// Traffic during the rebuild.
	trafficCtx, stopTraffic := context.WithCancel(t.Context())
	var traffic sync.WaitGroup
	var trafficErr atomic.Value
	traffic.Add(1)
	go func() {
		defer traffic.Done()
		for trafficCtx.Err() == nil {
			if err := publish(trafficCtx, 50); err != nil && trafficCtx.Err() == nil {
				trafficErr.Store(err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	run := func(args ...string) (string, error) {
		t.Helper()
		return c.run(t, args...)
	}
	out, err := run("rebuild", "customer360", "--quiet", "--batch", "300")
	t.Logf("rebuild:\n%s", out)
	if err != nil || !strings.Contains(out, "customer360_v2") || !strings.Contains(out, "readers switched from customer360_v1 to customer360_v2") ||
		!strings.Contains(out, "5 secondary indexes created after the fold") {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	// The version switched to has every index of the one it replaced.
	indexes := func(schema string) string {
		var defs string
		if err := pool.QueryRow(t.Context(), `SELECT string_agg(replace(indexdef, $1 || '.', ''), E'\n' ORDER BY indexname)
			FROM pg_indexes WHERE schemaname = $1`, schema).Scan(&defs); err != nil {
			t.Fatal(err)
		}
		return defs
	}
	if v1, v2 := indexes("customer360_v1"), indexes("customer360_v2"); v1 != v2 || strings.Count(v2, "\n") < 6 {
		t.Fatalf("indexes of customer360_v2:\n%s\nwant those of customer360_v1:\n%s", v2, v1)
	}
	serving, err := projections.ServingTargets(t.Context(), pool)
	if err != nil || serving[customer360.Name] != "customer360_v2" {
		t.Fatalf("serving after the rebuild: %v %v", serving, err)
	}
	stopTraffic()
	traffic.Wait()
	if err, _ := trafficErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	total := sent.Load()
	t.Logf("%d events in the log, %d of them sent during the rebuild", total, total-5000)

	// The projector follows the switch and folds what arrived after it into v2.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var applied int64
		if err := pool.QueryRow(t.Context(), `SELECT coalesce(sum(events_total), 0) FROM customer360_v2.profiles`).Scan(&applied); err != nil {
			t.Fatal(err)
		}
		if applied == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("customer360_v2 holds %d events, the log %d: the projector did not follow the switch", applied, total)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err = run("verify", "--quiet")
	t.Logf("verify:\n%s", out)
	if err != nil || !strings.Contains(out, "customer360_v2") || !strings.Contains(out, ": OK") {
		t.Fatalf("verify after the rebuild: %v\n%s", err, out)
	}

	out, err = run("rebuild", "list", "--json")
	var rbs []projections.RebuildStatus
	if err != nil || json.Unmarshal([]byte(out), &rbs) != nil || len(rbs) != 1 || rbs[0].Status != "switched" || rbs[0].Replaces != "customer360_v1" {
		t.Fatalf("rebuild list: %v\n%s", err, out)
	}
	if _, err := run("rebuild", "drop", "customer360_v2"); err == nil {
		t.Fatal("dropped the serving version")
	}
	if out, err := run("rebuild", "drop", "customer360_v1"); err != nil {
		t.Fatalf("drop the old version: %v\n%s", err, out)
	}

	// One customer recomputed in place: the same profile, from its own events.
	before, err := customer360.Get(t.Context(), pool, "customer360_v2", "C-RB-007")
	if err != nil {
		t.Fatal(err)
	}
	out, err = run("rebuild", "customer360", "--customer", "C-RB-007", "--json")
	var rec []projections.Recomputed
	if err != nil || json.Unmarshal([]byte(out), &rec) != nil || len(rec) != 1 || int64(rec[0].Events) != before.EventsTotal {
		t.Fatalf("rebuild --customer: %v\n%s (profile holds %d events)", err, out, before.EventsTotal)
	}
	after, err := customer360.Get(t.Context(), pool, "customer360_v2", "C-RB-007")
	if err != nil || after.EventsTotal != before.EventsTotal || after.SeqHash != before.SeqHash || after.LifetimeSpendFen != before.LifetimeSpendFen {
		t.Fatalf("after recompute: %+v (was %+v) %v", after, before, err)
	}

	// A range replayed into a version that does not serve.
	out, err = run("replay", "customer360", "--from-seq", "101", "--to-seq", "300", "--json", "--quiet")
	var res map[string]any
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res["target"] != "customer360_v3" || res["switched"] != false {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	var n int64
	if err := pool.QueryRow(t.Context(), `SELECT coalesce(sum(events_total), 0) FROM customer360_v3.profiles`).Scan(&n); err != nil || n != 200 {
		t.Fatalf("the replay of 101-300 holds %d events (%v), want 200", n, err)
	}
	if s, _ := projections.ServingTargets(t.Context(), pool); s[customer360.Name] != "customer360_v2" {
		t.Fatalf("a replay moved the serving version: %v", s)
	}

	for _, tc := range []struct {
		args []string
		want error
	}{
		{[]string{"rebuild", "--help"}, flag.ErrHelp},
		{[]string{"rebuild"}, errUsage},
		{[]string{"rebuild", "dedup"}, errUsage},
		{[]string{"rebuild", "customer360", "--pin", "2026-10"}, errUsage},
		{[]string{"rebuild", "loyalty", "--pin", "1999-01"}, errUsage},
		{[]string{"rebuild", "drop"}, errUsage},
		{[]string{"replay", "customer360"}, errUsage},
		{[]string{"replay", "customer360", "--from-seq", "5", "--customers", "C-1"}, errUsage},
		{[]string{"replay", "customer360", "--from-time", "yesterday"}, errUsage},
		{[]string{"replay", "customer360", "--from-seq", "9", "--to-seq", "3"}, errUsage},
	} {
		if _, err := run(tc.args...); !errors.Is(err, tc.want) {
			t.Errorf("%v: %v, want %v", tc.args, err, tc.want)
		}
	}
}
