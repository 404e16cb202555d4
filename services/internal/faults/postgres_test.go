package faults_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/pgcluster"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
	"github.com/touchstream/touchstream/testkit"
)

// TestPostgresKilledUnderLoad crashes a private PostgreSQL cluster (SIGKILL of the
// postmaster: commits not yet flushed are lost, since the projector commits
// asynchronously) while a projector folds 100,000 events, and starts it again: the
// projector retries with backoff, resumes from the checkpoints that survived, and every
// event ends up applied exactly once in the timeline and the customer 360.
func TestPostgresKilledUnderLoad(t *testing.T) {
	ctx := t.Context()
	pg, err := pgcluster.Create(ctx, filepath.Join(t.TempDir(), "pg"), testkit.FreePort(t), map[string]string{"shared_buffers": "128MB"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Remove(context.Background()) })
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pool, err := pgsetup.Open(ctx, pg.URL("postgres"), 8, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	def := streams.Default()
	def.Layout.Partitions, def.Layout.Streams[0].Last = 16, 15
	if _, err := streams.Apply(ctx, js, def); err != nil {
		t.Fatal(err)
	}
	pub, err := events.NewPublisher(ctx, nc, events.WithLayout(def.Layout), events.WithSource("urn:test:recharge"), events.WithValidation(false))
	if err != nil {
		t.Fatal(err)
	}
	const total, customers = 100_000, 5_000
	perCustomer := map[string]int64{}
	evs := make([]*events.Event, 0, 5_000)
	for i := range total {
		c := fmt.Sprintf("C-PG-%05d", i%customers)
		ev, err := events.NewEvent(c, time.Now().Add(-time.Hour), events.StoreVisited{StoreID: "S1", Purpose: "inquiry", DurationSeconds: 30 + i%600})
		if err != nil {
			t.Fatal(err)
		}
		perCustomer[c]++
		if evs = append(evs, ev); len(evs) == cap(evs) || i == total-1 {
			for _, r := range pub.PublishBatch(ctx, evs) {
				if r.Err != nil {
					t.Fatal(r.Err)
				}
			}
			evs = evs[:0]
		}
	}

	cat, _ := events.DefaultCatalog()
	c360, err := customer360.New(customer360.Options{Target: "customer360_v1", Tiers: valuetier.Default()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := projections.NewRunner(projections.Config{Group: "pg-crash", BatchSize: 500, RetryMin: 50 * time.Millisecond, RetryMax: time.Second,
		LeaseTTL: 2 * time.Second}, projections.Deps{Pool: pool, JS: js, Layout: def.Layout, Catalog: cat, Log: slog.New(slog.DiscardHandler),
		History: &projections.LogHistory{Index: &timeline.Index{Target: "timeline_v1", Layout: def.Layout}, JS: js, Decoder: projections.NewDecoder(def.Layout, cat)}},
		timeline.New("timeline_v1"), c360)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	defer func() { stop(); <-done }()

	applied := func() (int64, error) {
		var n int64
		err := pool.QueryRow(ctx, `SELECT coalesce(sum(applied), 0) FROM projections.checkpoints WHERE target = 'timeline_v1'`).Scan(&n)
		return n, err
	}
	waitFor := func(d time.Duration, what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s not within %s", what, d)
			}
		}
	}
	waitFor(60*time.Second, "10,000 events applied", func() bool { n, _ := applied(); return n >= 10_000 })
	before, _ := applied()
	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL killed with %d events applied", before)
	time.Sleep(2 * time.Second) // the projector meets a dead database and backs off
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var last atomic.Int64
	waitFor(3*time.Minute, "every event applied after the restart", func() bool {
		n, err := applied()
		if err == nil {
			last.Store(n)
		}
		return err == nil && n == total
	})
	var rows, distinct, profiles, counted int64
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq) FROM timeline_v1.events`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(events_total), 0) FROM customer360_v1.profiles`).Scan(&profiles, &counted); err != nil {
		t.Fatal(err)
	}
	if rows != total || distinct != total || profiles != customers || counted != total {
		t.Fatalf("after the crash: timeline %d rows (%d distinct sequences), %d profiles counting %d events; want %d, %d, %d",
			rows, distinct, profiles, counted, total, customers, total)
	}
	got := map[string]int64{}
	rowsOf, err := pool.Query(ctx, `SELECT customer_id, events_total FROM customer360_v1.profiles`)
	if err != nil {
		t.Fatal(err)
	}
	for rowsOf.Next() {
		var c string
		var n int64
		if err := rowsOf.Scan(&c, &n); err != nil {
			t.Fatal(err)
		}
		got[c] = n
	}
	if err := rowsOf.Err(); err != nil {
		t.Fatal(err)
	}
	for c, n := range perCustomer {
		if got[c] != n {
			t.Fatalf("customer %s: %d events in the profile, %d in the log", c, got[c], n)
		}
	}
	var parked int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM projections.dead_letters`).Scan(&parked); err != nil || parked != 0 {
		t.Fatalf("%d events parked (%v)", parked, err)
	}
	t.Logf("every one of %d events applied exactly once after the crash", total)
}
