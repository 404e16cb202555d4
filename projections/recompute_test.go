package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/migrate"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/testkit"
)

// ledger is an order-sensitive test projection: per customer, the count of store
// visits, the sum of their durations and the list of their store ids in the order
// applied. It cannot apply a visit whose store id is in broken until fixed is set: the
// bug and its fix.
type ledger struct {
	target string
	broken map[string]bool
	fixed  *atomic.Bool
}

var ledgerMigrations = fstest.MapFS{
	"m/0001_ledger.sql": {Data: []byte(`
CREATE TABLE ledger (customer_id text PRIMARY KEY, n bigint NOT NULL, fen bigint NOT NULL, ids text[] NOT NULL, last_seq bigint NOT NULL);`)},
}

var _ projections.CustomerRecomputer = (*ledger)(nil)

func (l *ledger) Name() string   { return "ledger" }
func (l *ledger) Target() string { return l.target }
func (l *ledger) Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "ledger", l.target, ledgerMigrations, "m")
}

type ledgerRow struct {
	N, Fen  int64
	IDs     []string
	LastSeq int64
}

// fold adds one event to a row, or says why it cannot.
func (l *ledger) fold(r *ledgerRow, e *projections.Envelope) error {
	var v events.StoreVisited
	if err := events.DecodeData(&e.Event, &v); err != nil {
		return err
	}
	if l.broken[v.StoreID] && (l.fixed == nil || !l.fixed.Load()) {
		return fmt.Errorf("visit at %s: purpose %q not supported yet", v.StoreID, v.Purpose)
	}
	r.N++
	r.Fen += int64(v.DurationSeconds)
	r.IDs = append(r.IDs, v.StoreID)
	r.LastSeq = int64(e.Seq)
	return nil
}

func (l *ledger) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	order, by := b.ByCustomer()
	rows, err := l.load(ctx, tx, order)
	if err != nil {
		return err
	}
	for _, c := range order {
		r := rows[c]
		if r == nil {
			r = &ledgerRow{}
			rows[c] = r
		}
		for _, e := range by[c] {
			if err := l.fold(r, e); err != nil {
				return projections.Poison(e, err)
			}
		}
	}
	return l.store(ctx, tx, order, rows)
}

func (l *ledger) RecomputeCustomer(ctx context.Context, tx pgx.Tx, customer string, _ int, history []*projections.Envelope) error {
	if _, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{l.target, "ledger"}.Sanitize()+` WHERE customer_id = $1`, customer); err != nil {
		return err
	}
	if len(history) == 0 {
		return nil
	}
	r := &ledgerRow{}
	for _, e := range history {
		if err := l.fold(r, e); err != nil {
			return err
		}
	}
	return l.store(ctx, tx, []string{customer}, map[string]*ledgerRow{customer: r})
}

func (l *ledger) load(ctx context.Context, tx pgx.Tx, customers []string) (map[string]*ledgerRow, error) {
	rows, err := tx.Query(ctx, `SELECT customer_id, n, fen, ids, last_seq FROM `+pgx.Identifier{l.target, "ledger"}.Sanitize()+
		` WHERE customer_id = ANY($1)`, customers)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]*ledgerRow{}
	for rows.Next() {
		var c string
		var r ledgerRow
		if err := rows.Scan(&c, &r.N, &r.Fen, &r.IDs, &r.LastSeq); err != nil {
			return nil, err
		}
		out[c] = &r
	}
	return out, rows.Err()
}

func (l *ledger) store(ctx context.Context, tx pgx.Tx, order []string, rows map[string]*ledgerRow) error {
	var cs, ids []string
	var ns, fens, lasts []int64
	for _, c := range order {
		r := rows[c]
		if r.N == 0 {
			continue
		}
		cs, ns, fens, lasts = append(cs, c), append(ns, r.N), append(fens, r.Fen), append(lasts, r.LastSeq)
		ids = append(ids, strings.Join(r.IDs, ","))
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{l.target, "ledger"}.Sanitize()+` AS t (customer_id, n, fen, ids, last_seq)
		SELECT c, n, f, string_to_array(i, ','), s FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[]) AS u(c, n, f, i, s)
		ON CONFLICT (customer_id) DO UPDATE SET n = excluded.n, fen = excluded.fen, ids = excluded.ids, last_seq = excluded.last_seq`,
		cs, ns, fens, ids, lasts)
	return err
}

func ledgers(t *testing.T, pool *pgxpool.Pool, target string) map[string]ledgerRow {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT customer_id, n, fen, ids, last_seq FROM `+pgx.Identifier{target, "ledger"}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]ledgerRow{}
	for rows.Next() {
		var c string
		var r ledgerRow
		if err := rows.Scan(&c, &r.N, &r.Fen, &r.IDs, &r.LastSeq); err != nil {
			t.Fatal(err)
		}
		out[c] = r
	}
	return out
}

// visits appends n store visits spread over customers: visit i is at store S<i>, by
// customer C<i mod customers>, lasting i+1 seconds.
func (e *env) visits(t *testing.T, n, customers int) {
	t.Helper()
	var evs []*events.Event
	for i := 0; i < n; i++ {
		ev, err := events.NewEvent(fmt.Sprintf("C%05d", i%customers), time.Now(),
			events.StoreVisited{StoreID: fmt.Sprintf("S%d", i), Purpose: "inquiry", DurationSeconds: i + 1})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	for i, r := range e.pub.PublishBatch(t.Context(), evs) {
		if r.Err != nil {
			t.Fatalf("publish %d: %v", i, r.Err)
		}
	}
}

// recomputeEnv adds the timeline (the customer index) and a Recomputer to the runtime
// test environment.
func (e *env) recomputer() (*projections.Recomputer, projections.History) {
	h := &projections.LogHistory{Index: &timeline.Index{Target: "timeline_v1", Layout: e.layout}, JS: e.js, Decoder: projections.NewDecoder(e.layout, e.cat)}
	return &projections.Recomputer{Pool: e.pool, History: h, Layout: e.layout}, h
}

func (e *env) catchUp(t *testing.T, h projections.History, ps ...projections.Projection) {
	t.Helper()
	r, err := projections.NewRunner(projections.Config{BatchSize: 50}, projections.Deps{Pool: e.pool, JS: e.js, Layout: e.layout,
		Catalog: e.cat, History: h, Log: testkit.Logger(t)}, ps...)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestRedriveAppliesAParkedEventByRecomputingItsCustomer(t *testing.T) {
	e := setup(t, 4)
	e.visits(t, 200, 10) // visits at S0..S199 by C00000..C00009
	fixed := &atomic.Bool{}
	// S13 is a visit of C00003, whose later visits (S23, S33, ...) come after it.
	live := &ledger{target: "ledger_v1", broken: map[string]bool{"S13": true}, fixed: fixed}
	rc, h := e.recomputer()
	e.catchUp(t, h, timeline.New("timeline_v1"), live)

	parked, err := projections.ListDeadLetters(t.Context(), e.pool, projections.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	// Only the ledger parks it: the timeline (the customer index) applies it.
	if len(parked) != 1 || parked[0].Target != "ledger_v1" || parked[0].Customer != "C00003" || parked[0].Status != projections.StatusParked {
		t.Fatalf("dead letters %+v, want the one visit S13 of C00003, parked by ledger_v1 only", parked)
	}
	dl := parked[0]
	// The partition went on: C00003's later events were applied, without S13.
	got := ledgers(t, e.pool, "ledger_v1")["C00003"]
	if got.N != 19 || got.IDs[0] != "S3" || got.IDs[1] != "S23" {
		t.Fatalf("C00003 before the fix: %+v, want 19 visits, S3 then S23", got)
	}

	// Before the fix: the redrive fails, the event stays parked with one more attempt.
	_, err = rc.Redrive(t.Context(), dl.ID, live)
	if !errors.Is(err, projections.ErrStillFailing) || !strings.Contains(err.Error(), "not supported yet") {
		t.Fatalf("redrive before the fix: %v, want ErrStillFailing naming the cause", err)
	}
	after, err := projections.GetDeadLetter(t.Context(), e.pool, dl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != projections.StatusParked || after.Attempts != dl.Attempts+1 || !strings.Contains(after.Error, "redrive: ") {
		t.Fatalf("after a failed redrive: %+v, want parked, attempts %d, the new error", after, dl.Attempts+1)
	}
	if diff := cmp.Diff(got, ledgers(t, e.pool, "ledger_v1")["C00003"]); diff != "" {
		t.Fatalf("a failed redrive changed the read model (-before +after):\n%s", diff)
	}

	// After the fix: the redrive recomputes C00003; S13 takes its place in stream order.
	fixed.Store(true)
	res, err := rc.Redrive(t.Context(), dl.ID, live)
	if err != nil {
		t.Fatal(err)
	}
	if res.Customer != "C00003" || res.Events != 20 || len(res.Redriven) != 1 || res.Redriven[0] != dl.ID {
		t.Errorf("redrive result %+v", res)
	}
	if d, _ := projections.GetDeadLetter(t.Context(), e.pool, dl.ID); d.Status != projections.StatusRedriven || d.ResolvedAt == nil {
		t.Errorf("dead letter after redrive: %+v, want redriven with a resolution time", d)
	}
	if _, err := rc.Redrive(t.Context(), dl.ID, live); !errors.Is(err, projections.ErrNotParked) {
		t.Errorf("second redrive: %v, want ErrNotParked", err)
	}

	// The read model equals a clean run of the fixed projection.
	clean := &ledger{target: "ledger_v2"}
	e.catchUp(t, h, clean)
	if diff := cmp.Diff(ledgers(t, e.pool, "ledger_v2"), ledgers(t, e.pool, "ledger_v1")); diff != "" {
		t.Fatalf("after redrive (-clean +redriven):\n%s", diff)
	}
}

func TestRecomputeReplacesOneCustomerInOneTransaction(t *testing.T) {
	e := setup(t, 4)
	e.visits(t, 100, 5)
	rc, h := e.recomputer()
	tl := timeline.New("timeline_v1")
	l := &ledger{target: "ledger_v1"}
	e.catchUp(t, h, tl, l)
	want := ledgers(t, e.pool, "ledger_v1")

	// Damage two customers; recompute one.
	if _, err := e.pool.Exec(t.Context(), `UPDATE ledger_v1.ledger SET n = 0, fen = 0, ids = '{}' WHERE customer_id IN ('C00001', 'C00002')`); err != nil {
		t.Fatal(err)
	}
	res, err := rc.Recompute(t.Context(), "C00001", l)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := projections.LoadCheckpoints(t.Context(), e.pool, "ledger_v1", []int{e.layout.PartitionOf("C00001")})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]projections.Recomputed{{Target: "ledger_v1", Customer: "C00001", Partition: e.layout.PartitionOf("C00001"),
		UpTo: cp[e.layout.PartitionOf("C00001")].Seq, Events: 20}}, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	got := ledgers(t, e.pool, "ledger_v1")
	if diff := cmp.Diff(want["C00001"], got["C00001"]); diff != "" {
		t.Errorf("recomputed customer (-want +got):\n%s", diff)
	}
	if got["C00002"].N != 0 {
		t.Errorf("another customer changed: %+v", got["C00002"])
	}

	// One transaction: a target that cannot recompute fails the whole call.
	if _, err := e.pool.Exec(t.Context(), `UPDATE ledger_v1.ledger SET n = 0 WHERE customer_id = 'C00002'`); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Recompute(t.Context(), "C00002", l, tl); !errors.Is(err, projections.ErrNotRecomputable) {
		t.Fatalf("recompute with the timeline: %v, want ErrNotRecomputable", err)
	}
	if n := ledgers(t, e.pool, "ledger_v1")["C00002"].N; n != 0 {
		t.Errorf("a failed recompute left C00002 with n=%d, want the rollback to keep 0", n)
	}
	for _, bad := range []string{"", "a b", strings.Repeat("x", 65)} {
		if _, err := rc.Recompute(t.Context(), bad, l); err == nil || !strings.Contains(err.Error(), "customer id") {
			t.Errorf("recompute %q: %v, want an error naming the customer id", bad, err)
		}
	}
}

// TestRecomputeDuringLiveFoldingKeepsEveryEvent shows that a recompute and the live
// projector never interleave on a partition (the recompute holds the checkpoint row):
// with recomputes racing the runner, the result equals a clean run.
func TestRecomputeDuringLiveFoldingKeepsEveryEvent(t *testing.T) {
	e := setup(t, 2)
	e.visits(t, 200, 4)
	rc, h := e.recomputer()
	tl := timeline.New("timeline_v1")
	l := &ledger{target: "ledger_v1"}
	r, err := projections.NewRunner(projections.Config{BatchSize: 10, LeaseTTL: time.Second, Heartbeat: 100 * time.Millisecond},
		projections.Deps{Pool: e.pool, JS: e.js, Layout: e.layout, Catalog: e.cat, History: h, Log: testkit.Logger(t)}, tl, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Prepare(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	e.visits(t, 400, 4)
	recomputes := 0
	waitFor(t, 20*time.Second, func() bool {
		for _, c := range []string{"C00001", "C00002"} {
			if _, err := rc.Recompute(t.Context(), c, l); err != nil {
				t.Error(err)
			}
			recomputes++
		}
		var n int64
		err := e.pool.QueryRow(t.Context(), "SELECT coalesce(sum(n), 0) FROM ledger_v1.ledger").Scan(&n)
		return err == nil && n == 600
	})
	t.Logf("%d recomputes while the runner folded", recomputes)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	clean := &ledger{target: "ledger_v2"}
	e.catchUp(t, h, clean)
	if diff := cmp.Diff(ledgers(t, e.pool, "ledger_v2"), ledgers(t, e.pool, "ledger_v1")); diff != "" {
		t.Fatalf("(-clean +live with recomputes):\n%s", diff)
	}
}
