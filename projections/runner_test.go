package projections_test

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/migrate"
	"github.com/touchstream/touchstream/testkit"
)

var _ embed.FS // migrations of the test projection live in a MapFS below

// tally is a projection for testing the runtime: per customer, how many events it
// applied and the sequence of the last one; it refuses an event out of order and
// records every applied sequence so a test can check exactly-once event by event.
type tally struct {
	target  string
	poison  func(*projections.Envelope) bool
	failSeq uint64 // a batch holding this sequence fails with a plain (non-transient) error
}

var tallyMigrations = fstest.MapFS{
	"m/0001_tally.sql": {Data: []byte(`
CREATE TABLE tally (customer_id text PRIMARY KEY, n bigint NOT NULL, last_seq bigint NOT NULL);
CREATE TABLE applied (seq bigint NOT NULL, customer_id text NOT NULL);`)},
}

func (t *tally) Name() string   { return "tally" }
func (t *tally) Target() string { return t.target }
func (t *tally) Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "tally", t.target, tallyMigrations, "m")
}

func (t *tally) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	for _, e := range b.Events {
		if t.failSeq != 0 && e.Seq == t.failSeq {
			return errors.New("deliberate failure")
		}
	}
	order, by := b.ByCustomer()
	var custs []string
	var ns, lasts []int64
	var seqs []int64
	var seqCust []string
	for _, c := range order {
		var n, last int64
		for _, e := range by[c] {
			if t.poison != nil && t.poison(e) {
				return projections.Poison(e, fmt.Errorf("refused by test"))
			}
			if int64(e.Seq) <= last {
				return fmt.Errorf("out of order: %d after %d", e.Seq, last)
			}
			n++
			last = int64(e.Seq)
			seqs, seqCust = append(seqs, int64(e.Seq)), append(seqCust, c)
		}
		custs, ns, lasts = append(custs, c), append(ns, n), append(lasts, last)
	}
	q := pgx.Identifier{t.target}.Sanitize()
	if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.tally AS t (customer_id, n, last_seq)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
		ON CONFLICT (customer_id) DO UPDATE SET n = t.n + excluded.n, last_seq = excluded.last_seq
		WHERE t.last_seq < excluded.last_seq`, custs, ns, lasts); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+q+`.applied (seq, customer_id) SELECT * FROM unnest($1::bigint[], $2::text[])`, seqs, seqCust)
	return err
}

type env struct {
	pool   *pgxpool.Pool
	nats   *testkit.NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	layout events.Layout
	cat    *events.Catalog
	pub    *events.Publisher
}

func setup(t *testing.T, partitions int) *env {
	t.Helper()
	pool, _ := testkit.Pool(t)
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	def := streams.Default()
	def.Layout.Partitions = partitions
	def.Layout.Streams[0].Last = partitions - 1
	if _, err := streams.Apply(t.Context(), js, def); err != nil {
		t.Fatal(err)
	}
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := events.NewPublisher(t.Context(), nc, events.WithSource("urn:test:recharge"), events.WithLayout(def.Layout))
	if err != nil {
		t.Fatal(err)
	}
	return &env{pool: pool, nats: ns, nc: nc, js: js, layout: def.Layout, cat: cat, pub: pub}
}

// publish appends n recharge events spread over customers and returns how many each
// customer got.
func (e *env) publish(t *testing.T, n, customers int) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	var evs []*events.Event
	for i := 0; i < n; i++ {
		c := fmt.Sprintf("C%05d", i%customers)
		ev, err := events.NewEvent(c, time.Now(), events.RechargeCompleted{RechargeID: fmt.Sprintf("R%d", i), Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "cash"})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
		want[c]++
	}
	for start := 0; start < len(evs); start += 5000 {
		end := min(start+5000, len(evs))
		for i, r := range e.pub.PublishBatch(t.Context(), evs[start:end]) {
			if r.Err != nil {
				t.Fatalf("publish %d: %v", start+i, r.Err)
			}
		}
	}
	return want
}

func (e *env) runner(t *testing.T, cfg projections.Config, ps ...projections.Projection) *projections.Runner {
	t.Helper()
	r, err := projections.NewRunner(cfg, projections.Deps{Pool: e.pool, JS: e.js, Layout: e.layout, Catalog: e.cat, Log: testkit.Logger(t)}, ps...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tallies(t *testing.T, pool *pgxpool.Pool, target string) map[string]int64 {
	t.Helper()
	rows, err := pool.Query(t.Context(), "SELECT customer_id, n FROM "+pgx.Identifier{target}.Sanitize()+".tally")
	for attempt := 0; err != nil && attempt < 3; attempt++ { // a pooled connection killed by a test
		rows, err = pool.Query(t.Context(), "SELECT customer_id, n FROM "+pgx.Identifier{target}.Sanitize()+".tally")
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for rows.Next() {
		var c string
		var n int64
		if err := rows.Scan(&c, &n); err != nil {
			t.Fatal(err)
		}
		out[c] = n
	}
	return out
}

// exactlyOnce checks that every stream sequence was applied exactly once.
func exactlyOnce(t *testing.T, pool *pgxpool.Pool, target string, total int) {
	t.Helper()
	var n, distinct, maxSeq int64
	if err := pool.QueryRow(t.Context(), "SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) FROM "+
		pgx.Identifier{target}.Sanitize()+".applied").Scan(&n, &distinct, &maxSeq); err != nil {
		t.Fatal(err)
	}
	if n != int64(total) || distinct != int64(total) {
		t.Fatalf("%s: applied %d rows, %d distinct sequences, want %d each", target, n, distinct, total)
	}
	t.Logf("%s: %d events applied exactly once (max seq %d)", target, n, maxSeq)
}

func TestCatchUpAppliesEveryEventOnceInOrder(t *testing.T) {
	for _, batch := range []int{1, 7, 1000} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			e := setup(t, 8)
			want := e.publish(t, 2000, 50)
			p := &tally{target: "tally_v1"}
			r := e.runner(t, projections.Config{BatchSize: batch}, p)
			if err := r.CatchUp(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, tallies(t, e.pool, p.target)); diff != "" {
				t.Fatalf("tallies (-want +got):\n%s", diff)
			}
			exactlyOnce(t, e.pool, p.target, 2000)
			// Reading everything again (a redelivery) changes nothing.
			if err := r.Reread(t.Context(), 1); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, tallies(t, e.pool, p.target)); diff != "" {
				t.Fatalf("after re-read (-want +got):\n%s", diff)
			}
			exactlyOnce(t, e.pool, p.target, 2000)
		})
	}
}

func TestTwoRunnersShareThePartitions(t *testing.T) {
	e := setup(t, 16)
	p1, p2 := &tally{target: "tally_v1"}, &tally{target: "tally_v1"}
	cfg := projections.Config{LeaseTTL: 2 * time.Second, Heartbeat: 200 * time.Millisecond, LagInterval: 200 * time.Millisecond}
	cfg1, cfg2 := cfg, cfg
	cfg1.Instance, cfg2.Instance = "one", "two"
	r1, r2 := e.runner(t, cfg1, p1), e.runner(t, cfg2, p2)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 2)
	go func() { done <- r1.Run(ctx) }()
	go func() { done <- r2.Run(ctx) }()
	want := e.publish(t, 20000, 500)
	waitFor(t, 30*time.Second, func() bool { return sum(tallies(t, e.pool, "tally_v1")) == 20000 })
	waitFor(t, 10*time.Second, func() bool {
		var n int
		err := e.pool.QueryRow(t.Context(), "SELECT count(*) FROM projections.lag WHERE target = 'tally_v1' AND lag_events = 0").Scan(&n)
		return err == nil && n == 16
	})
	owners := leaseOwners(t, e.pool)
	if owners["one"] != 8 || owners["two"] != 8 {
		t.Errorf("lease owners %v, want 8 partitions each", owners)
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(want, tallies(t, e.pool, "tally_v1")); diff != "" {
		t.Fatalf("tallies (-want +got):\n%s", diff)
	}
	exactlyOnce(t, e.pool, "tally_v1", 20000)
}

func TestTakeoverWhenAnInstanceStops(t *testing.T) {
	e := setup(t, 8)
	cfg := projections.Config{LeaseTTL: time.Second, Heartbeat: 100 * time.Millisecond}
	a, b := cfg, cfg
	a.Instance, b.Instance = "a", "b"
	ra, rb := e.runner(t, a, &tally{target: "tally_v1"}), e.runner(t, b, &tally{target: "tally_v1"})
	if err := ra.Prepare(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctxA, stopA := context.WithCancel(t.Context())
	ctxB, stopB := context.WithCancel(t.Context())
	defer stopB()
	doneA := make(chan error, 1)
	go func() { doneA <- ra.Run(ctxA) }()
	go func() { _ = rb.Run(ctxB) }()
	waitFor(t, 10*time.Second, func() bool { o := leaseOwners(t, e.pool); return o["a"] == 4 && o["b"] == 4 })
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 10*time.Second, func() bool { return leaseOwners(t, e.pool)["b"] == 8 })
	t.Logf("b took over a's partitions in %s", time.Since(start).Round(time.Millisecond))
	want := e.publish(t, 3000, 100)
	waitFor(t, 20*time.Second, func() bool { return sum(tallies(t, e.pool, "tally_v1")) == 3000 })
	if diff := cmp.Diff(want, tallies(t, e.pool, "tally_v1")); diff != "" {
		t.Fatalf("tallies (-want +got):\n%s", diff)
	}
}

func TestFenceRefusesAStaleWriter(t *testing.T) {
	e := setup(t, 4)
	e.publish(t, 400, 20)
	// Two runners outside any lease (CatchUp) race over the same partitions: the fence
	// lets each event through exactly once.
	r1 := e.runner(t, projections.Config{BatchSize: 3}, &tally{target: "tally_v1"})
	r2 := e.runner(t, projections.Config{BatchSize: 5}, &tally{target: "tally_v1"})
	if err := r1.Prepare(t.Context()); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, r := range []*projections.Runner{r1, r2} {
		go func() {
			var err error
			for range 50 { // retry on fence conflicts until caught up
				if err = r.CatchUp(t.Context(), nil); err == nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	exactlyOnce(t, e.pool, "tally_v1", 400)
}

func TestPoisonEventsAreParkedAndThePartitionGoesOn(t *testing.T) {
	e := setup(t, 4)
	e.publish(t, 100, 10)
	// A message that is not a valid event at all, on a partition subject.
	if _, err := e.js.Publish(t.Context(), e.layout.Subject(1, "recharge.completed"), []byte(`{"specversion":"1.0","id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	e.publish(t, 100, 10)
	p := &tally{target: "tally_v1", failSeq: 60, // a batch that keeps failing: isolated event by event
		poison: func(env *projections.Envelope) bool { return env.Seq == 50 }}
	r := e.runner(t, projections.Config{BatchSize: 1000, MaxAttempts: 2, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}, p)
	if err := r.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, e.pool, "tally_v1", 198)
	parked, err := projections.DeadLetters(t.Context(), e.pool, "tally_v1", 10)
	if err != nil {
		t.Fatal(err)
	}
	bySeq := map[uint64]projections.Parked{}
	var seqs []uint64
	for _, p := range parked {
		seqs = append(seqs, p.Seq)
		bySeq[p.Seq] = p
	}
	slices.Sort(seqs)
	if diff := cmp.Diff([]uint64{50, 60, 101}, seqs); diff != "" {
		t.Fatalf("parked sequences (-want +got):\n%s\n%+v", diff, parked)
	}
	if d := bySeq[101]; d.Partition != 1 || d.EventID != "x" || !strings.Contains(d.Error, "/time") {
		t.Errorf("parked decode failure: %+v", d)
	}
	if d := bySeq[60]; d.Error != "deliberate failure" || d.Attempts < 2 {
		t.Errorf("parked failing event: %+v", d)
	}
}

func TestTransientDatabaseFailureResumesFromCheckpoint(t *testing.T) {
	e := setup(t, 4)
	want := e.publish(t, 3000, 30)
	p := &tally{target: "tally_v1"}
	r := e.runner(t, projections.Config{BatchSize: 50, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		LeaseTTL: time.Second, Heartbeat: 100 * time.Millisecond}, p)
	if err := r.Prepare(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// Kill the runner's database connections a few times while it works.
	for range 5 {
		time.Sleep(50 * time.Millisecond)
		if _, err := e.pool.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
			t.Logf("terminate: %v", err)
		}
	}
	waitFor(t, 30*time.Second, func() bool {
		var n int64
		err := e.pool.QueryRow(t.Context(), "SELECT coalesce(sum(n), 0) FROM tally_v1.tally").Scan(&n)
		return err == nil && n == 3000 // a query on a killed connection fails: ask again
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, tallies(t, e.pool, "tally_v1")); diff != "" {
		t.Fatalf("tallies (-want +got):\n%s", diff)
	}
	exactlyOnce(t, e.pool, "tally_v1", 3000)
}

func leaseOwners(t *testing.T, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(t.Context(), "SELECT owner, count(*) FROM projections.leases WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for rows.Next() {
		var o string
		var n int
		if err := rows.Scan(&o, &n); err != nil {
			t.Fatal(err)
		}
		out[o] = n
	}
	return out
}

func sum(m map[string]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slowToRecover fails every batch with a transient error until a moment has passed.
type slowToRecover struct {
	tally
	until time.Time
	fails atomic.Int64
}

func (s *slowToRecover) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	if time.Now().Before(s.until) {
		s.fails.Add(1)
		return projections.ErrIndexBehind // transient: retried
	}
	return s.tally.Apply(ctx, tx, b)
}

// TestRetriesOutlastTheDrainTimeout: a batch that keeps failing transiently for
// longer than DrainTimeout is still retried, each attempt with a fresh deadline, and
// commits once the cause has gone (a deadline shared by every attempt used to leave
// it failing forever).
func TestRetriesOutlastTheDrainTimeout(t *testing.T) {
	e := setup(t, 2)
	want := e.publish(t, 200, 10)
	p := &slowToRecover{tally: tally{target: "tally_v1"}, until: time.Now().Add(1500 * time.Millisecond)}
	r := e.runner(t, projections.Config{DrainTimeout: 300 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}, p)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.CatchUp(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if p.fails.Load() < 5 {
		t.Fatalf("only %d failed attempts: the test did not outlast the drain timeout", p.fails.Load())
	}
	if diff := cmp.Diff(want, tallies(t, e.pool, p.target)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}
