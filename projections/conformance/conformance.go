// Package conformance is the test suite every projection runs: against a real
// PostgreSQL and an embedded JetStream it shows that
//
//   - replay from zero equals live consumption, whatever the batch size and boundaries;
//   - reading events again (a redelivery) changes nothing: applying an event twice
//     equals applying it once;
//   - every customer's events are reflected exactly once;
//   - killing the database connections in the middle of folding (a crash before
//     commit) loses and doubles nothing: the runner resumes from its checkpoints.
//
// The workload covers every customer event type, personal fields, partition-wide clock
// ticks and retractions, so a projection's recomputation path runs too.
package conformance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/testkit"
)

// Subject is a projection under test.
type Subject struct {
	// New returns the projection writing the target schema.
	New func(t *testing.T, target string, keys events.KeySource) projections.Projection
	// Snapshot dumps the target's read model in a form that depends neither on the
	// target's name nor on when it was built.
	Snapshot func(ctx context.Context, pool *pgxpool.Pool, target string) (any, error)
	// PerCustomer returns how many events the read model reflects for each customer.
	PerCustomer func(ctx context.Context, pool *pgxpool.Pool, target string) (map[string]int64, error)
}

// indexTarget is the timeline that serves as the customer index for recomputation.
const indexTarget = "timeline_index"

// Env is the suite's shared setup: a stream holding the workload and the index.
type Env struct {
	Pool     *pgxpool.Pool
	JS       jetstream.JetStream
	Layout   events.Layout
	Catalog  *events.Catalog
	Keys     *testkit.Keys
	Workload *Workload
	History  projections.History

	dsn       string
	pub       *events.Publisher
	rounds    [][]*events.Event
	published bool
}

// Run runs the suite.
func Run(t *testing.T, s Subject) {
	t.Helper()
	e := setup(t, 8, 1500, 60)
	live := "live_v1"
	t.Run("live equals replay at every batch size", func(t *testing.T) {
		runLive(t, e, s, live, false)
		want := snapshot(t, e, s, live)
		for _, batch := range []int{1, 13, 1000} {
			target := fmt.Sprintf("replay_b%d", batch)
			r := e.runner(t, projections.Config{BatchSize: batch}, s.New(t, target, e.Keys))
			if err := r.CatchUp(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, snapshot(t, e, s, target)); diff != "" {
				t.Fatalf("replay with batch %d differs from live (-live +replay):\n%s", batch, diff)
			}
		}
		// Far behind the log, a reader gathers windows and folds them partition by
		// partition: one window of the whole log in batches of a whole partition, in
		// batches of 7, and windows of about 40 kB (several per partition's history).
		for _, g := range []struct {
			name  string
			batch int
			bytes int64
		}{{"whole", 100_000, 0}, {"b7", 7, 0}, {"w40k", 1000, 40_000}} {
			target := "replay_gather_" + g.name
			r := e.runner(t, projections.Config{BatchSize: 13, GatherFrom: 1, GatherBatch: g.batch, GatherBytes: g.bytes}, s.New(t, target, e.Keys))
			if err := r.CatchUp(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, snapshot(t, e, s, target)); diff != "" {
				t.Fatalf("replay gathering (%s) differs from live (-live +replay):\n%s", g.name, diff)
			}
		}
	})
	t.Run("reading again changes nothing", func(t *testing.T) {
		want := snapshot(t, e, s, live)
		r := e.runner(t, projections.Config{BatchSize: 97}, s.New(t, live, e.Keys))
		if err := r.Reread(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, snapshot(t, e, s, live)); diff != "" {
			t.Fatalf("after reading every event again (-before +after):\n%s", diff)
		}
	})
	t.Run("every customer's events reflected exactly once", func(t *testing.T) {
		got, err := s.PerCustomer(t.Context(), e.Pool, live)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(e.Workload.PerCustomer, got); diff != "" {
			t.Fatalf("events per customer (-workload +read model):\n%s", diff)
		}
	})
	t.Run("database connections killed mid-fold lose and double nothing", func(t *testing.T) {
		target := "crashy_v1"
		runLive(t, e, s, target, true)
		if diff := cmp.Diff(snapshot(t, e, s, live), snapshot(t, e, s, target)); diff != "" {
			t.Fatalf("after connection kills (-clean +crashy):\n%s", diff)
		}
		got, err := s.PerCustomer(t.Context(), e.Pool, target)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(e.Workload.PerCustomer, got); diff != "" {
			t.Fatalf("events per customer (-workload +read model):\n%s", diff)
		}
	})
}

func setup(t *testing.T, partitions, n, customers int) *Env {
	t.Helper()
	pool, dsn := testkit.Pool(t)
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	def := streams.Default()
	def.Layout.Partitions, def.Layout.Streams[0].Last = partitions, partitions-1
	if _, err := streams.Apply(t.Context(), js, def); err != nil {
		t.Fatal(err)
	}
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	keys := testkit.NewKeys()
	pub, err := events.NewPublisher(t.Context(), nc, events.WithLayout(def.Layout), events.WithKeys(keys),
		events.WithLimits(events.Limits{MaxSize: 64 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Pool: pool, JS: js, Layout: def.Layout, Catalog: cat, Keys: keys, dsn: dsn}
	e.Workload = NewWorkload(7, customers, n, partitions, time.Date(2026, 3, 1, 8, 0, 0, 0, time.FixedZone("CST", 8*3600)))
	e.History = &projections.LogHistory{Index: &timeline.Index{Target: indexTarget, Layout: def.Layout}, JS: js,
		Decoder: projections.NewDecoder(def.Layout, cat)}
	// Publish in three rounds so that live runners see the log grow.
	evs := e.Workload.Events
	third := len(evs) / 3
	e.rounds = [][]*events.Event{evs[:third], evs[third : 2*third], evs[2*third:]}
	e.pub = pub
	return e
}

// runLive folds the workload with a running runner (and the index timeline in the
// same group, applied first) while it is published in rounds. With crash set, the
// runner's database connections are killed repeatedly while it works.
func runLive(t *testing.T, e *Env, s Subject, target string, crash bool) {
	t.Helper()
	ps := []projections.Projection{timeline.New(indexTarget), s.New(t, target, e.Keys)}
	if p := ps[1]; p.Target() == indexTarget {
		ps = ps[1:]
	}
	cfg := projections.Config{Group: "live-" + target, BatchSize: 50, LeaseTTL: 2 * time.Second, Heartbeat: 200 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond}
	pool := e.Pool
	if crash {
		// The runner gets its own pool, whose connections the test kills.
		pc, err := pgxpool.ParseConfig(e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		pc.ConnConfig.RuntimeParams["application_name"] = "crashy"
		if pool, err = pgxpool.NewWithConfig(t.Context(), pc); err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
	}
	r, err := projections.NewRunner(cfg, projections.Deps{Pool: pool, JS: e.JS, Layout: e.Layout, Catalog: e.Catalog,
		History: e.History, Log: testkit.Logger(t)}, ps...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if !e.published {
		for _, round := range e.rounds {
			for i, res := range e.pub.PublishBatch(t.Context(), round) {
				if res.Err != nil {
					t.Fatalf("publish %s: %v", round[i].Type, res.Err)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		e.published = true
	}
	deadline := time.Now().Add(60 * time.Second)
	// Kills come every 30ms while the runner folds, but at most every 300ms while it
	// makes no progress, so that a projection whose start (migrations, loading) takes
	// longer than 30ms still gets to fold between kills.
	var lastKill time.Time
	var lastApplied int64 = -1
	for !caughtUp(t, e, target) {
		applied := appliedOf(t, e, target)
		if crash && (applied != lastApplied || time.Since(lastKill) > 300*time.Millisecond) {
			lastKill, lastApplied = time.Now(), applied
			if _, err := e.Pool.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND application_name = 'crashy'`); err != nil {
				t.Logf("terminate backends: %v", err)
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("%s did not catch up in 60s", target)
		}
		time.Sleep(30 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// appliedOf is how many events the target's checkpoints count (-1 before they exist).
func appliedOf(t *testing.T, e *Env, target string) int64 {
	t.Helper()
	var n int64
	if err := e.Pool.QueryRow(t.Context(), `SELECT coalesce(sum(applied), -1) FROM projections.checkpoints WHERE target = $1`, target).Scan(&n); err != nil {
		return -1
	}
	return n
}

// caughtUp reports whether the target's checkpoints cover the whole stream.
func caughtUp(t *testing.T, e *Env, target string) bool {
	t.Helper()
	s, err := e.JS.Stream(t.Context(), e.Layout.Streams[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var consumed int64
	err = e.Pool.QueryRow(t.Context(), `SELECT coalesce(sum(applied), 0) FROM projections.checkpoints WHERE target = $1`, target).Scan(&consumed)
	if err != nil {
		return false // tables not created yet
	}
	return uint64(consumed) == info.State.Msgs
}

func (e *Env) runner(t *testing.T, cfg projections.Config, ps ...projections.Projection) *projections.Runner {
	t.Helper()
	r, err := projections.NewRunner(cfg, projections.Deps{Pool: e.Pool, JS: e.JS, Layout: e.Layout, Catalog: e.Catalog,
		History: e.History, Log: testkit.Logger(t)}, ps...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func snapshot(t *testing.T, e *Env, s Subject, target string) any {
	t.Helper()
	v, err := s.Snapshot(t.Context(), e.Pool, target)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
