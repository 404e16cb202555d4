package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/migrate"
	"github.com/touchstream/touchstream/projections/outbox"
	"github.com/touchstream/touchstream/testkit"
)

// recharges emits a "test.recharged" signal for every recharge it may emit for, through
// the outbox, in its batch transaction.
type recharges struct{ target string }

func (r *recharges) Name() string   { return "recharges" }
func (r *recharges) Target() string { return r.target }
func (r *recharges) Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := outbox.Migrate(ctx, pool); err != nil {
		return err
	}
	return migrate.Apply(ctx, pool, "recharges", r.target, fstest.MapFS{
		"m/0001_folded.sql": {Data: []byte(`CREATE TABLE folded (seq bigint PRIMARY KEY);`)},
	}, "m")
}

func (r *recharges) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	var folded []int64
	var sigs []outbox.Signal
	for _, e := range b.Events {
		folded = append(folded, int64(e.Seq))
		ok, err := b.Emitting(ctx, e)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		s, err := outbox.NewSignal("test.recharged", e, r.target, "", map[string]any{"seq": e.Seq})
		if err != nil {
			return err
		}
		sigs = append(sigs, s)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{r.target}.Sanitize()+`.folded SELECT unnest($1::bigint[])`, folded); err != nil {
		return err
	}
	return outbox.Emit(ctx, tx, sigs...)
}

// TestRunnerEmitsThroughTheOutbox: a projection folded by the real runner emits one
// signal per event of the serving version, forwarded to SIGNALS, caused by that event;
// a rebuild into a new version folds the same log and emits nothing.
func TestRunnerEmitsThroughTheOutbox(t *testing.T) {
	pool, dsn := testkit.Pool(t)
	_, js := testkit.StartNATS(t).JetStream(t)
	nc := js.Conn()
	def := streams.Default()
	def.Layout.Partitions = 4
	def.Layout.Streams[0].Last = 3
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
	const n = 1000
	var evs []*events.Event
	for i := range n {
		ev, err := events.NewEvent(fmt.Sprintf("C%04d", i%37), time.Now(), events.RechargeCompleted{RechargeID: fmt.Sprintf("R%d", i), Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "cash"})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	for i, r := range pub.PublishBatch(t.Context(), evs) {
		if r.Err != nil {
			t.Fatalf("publish %d: %v", i, r.Err)
		}
	}
	if _, err := projections.EnsureServing(t.Context(), pool, map[string]string{"recharges": "recharges_v1"}); err != nil {
		t.Fatal(err)
	}
	deps := projections.Deps{Pool: pool, JS: js, Layout: def.Layout, Catalog: cat, Log: testkit.Logger(t)}
	runner, err := projections.NewRunner(projections.Config{Group: "live", BatchSize: 200, Linger: time.Millisecond}, deps, &recharges{target: "recharges_v1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e := env{pool, dsn, js}
	e.forwarder(t, "fwd", nil)
	waitStream(t, js, n)

	want := map[string]bool{}
	for _, ev := range evs {
		want[outbox.NewID("test.recharged", events.EventRef{Source: ev.Source, ID: ev.ID}, "")] = true
	}
	for _, m := range readStream(t, js) {
		if !want[m.MsgID] {
			t.Errorf("unexpected signal %s caused by %v", m.MsgID, m.Signal.CausedBy)
		}
		if m.Signal.Target != "recharges_v1" || m.Subject != "signals.test.recharged" {
			t.Errorf("signal %s: target %q subject %q", m.MsgID, m.Signal.Target, m.Subject)
		}
		delete(want, m.MsgID)
	}
	if len(want) != 0 {
		t.Errorf("%d signals never arrived", len(want))
	}

	// A rebuild folds the whole log again into recharges_v2 and emits nothing.
	res, err := projections.Rebuild(t.Context(), deps, projections.RebuildSpec{Projection: "recharges",
		New: func(target string) (projections.Projection, error) { return &recharges{target: target}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	var folded, rows int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{res.Target}.Sanitize()+".folded").Scan(&folded); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox.signals").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if folded != n || rows != n {
		t.Errorf("after the rebuild: %s folded %d events, the outbox holds %d signals; want %d and %d", res.Target, folded, rows, n, n)
	}
}
