package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/testkit"
)

// Log is a private log and database for a projection's own tests, beside the suite:
// an embedded JetStream with the streams applied over 4 partitions, a test database, a
// publisher that seals personal fields, and the runner's dependencies with
// IndexTarget as the customer index (Fold runs it first).
type Log struct {
	Pool   *pgxpool.Pool
	JS     jetstream.JetStream
	Layout events.Layout
	Pub    *events.Publisher
	Deps   projections.Deps
}

// IndexTarget is the timeline version Log.Fold keeps as the customer index.
const IndexTarget = "timeline_v1"

// NewLog starts a Log; everything is released when the test ends.
func NewLog(t *testing.T) *Log {
	t.Helper()
	pool, _ := testkit.Pool(t)
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	def := streams.Default()
	def.Layout.Partitions, def.Layout.Streams[0].Last = 4, 3
	if _, err := streams.Apply(t.Context(), js, def); err != nil {
		t.Fatal(err)
	}
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := events.NewPublisher(t.Context(), nc, events.WithLayout(def.Layout), events.WithKeys(testkit.NewKeys()),
		events.WithLimits(events.Limits{MaxSize: 64 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	return &Log{Pool: pool, JS: js, Layout: def.Layout, Pub: pub,
		Deps: projections.Deps{Pool: pool, JS: js, Layout: def.Layout, Catalog: cat, Log: testkit.Logger(t),
			History: &projections.LogHistory{Index: &timeline.Index{Target: IndexTarget, Layout: def.Layout}, JS: js,
				Decoder: projections.NewDecoder(def.Layout, cat)}}}
}

// Publish stores events, failing the test on any refusal.
func (l *Log) Publish(t *testing.T, evs ...*events.Event) {
	t.Helper()
	for i, r := range l.Pub.PublishBatch(t.Context(), evs) {
		if r.Err != nil {
			t.Fatalf("publish %d (%s): %v", i, evs[i].Type, r.Err)
		}
	}
}

// PartitionWide publishes a partition-wide event (a tick, an activation) to every
// partition, from source.
func (l *Log) PartitionWide(t *testing.T, source string, at time.Time, p events.Payload) {
	t.Helper()
	evs, err := events.NewPartitionEvents(l.Layout.Partitions, at, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		ev.Source = source
	}
	l.Publish(t, evs...)
}

// Fold catches p up with the log in its own lease group, with the customer index
// before it, in batches of at most batch events (0: the runner's default).
func (l *Log) Fold(t *testing.T, p projections.Projection, batch int) {
	t.Helper()
	r, err := projections.NewRunner(projections.Config{Group: "fold-" + p.Target(), BatchSize: batch}, l.Deps, timeline.New(IndexTarget), p)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}

// Event builds an event of customer from source.
func Event(t *testing.T, customer, source string, at time.Time, p events.Payload) *events.Event {
	t.Helper()
	ev, err := events.NewEvent(customer, at, p)
	if err != nil {
		t.Fatal(err)
	}
	ev.Source = source
	return ev
}

// EventsColumn is a Subject.PerCustomer reading (customer_id, events) from a table of
// the target.
func EventsColumn(table string) func(ctx context.Context, pool *pgxpool.Pool, target string) (map[string]int64, error) {
	return func(ctx context.Context, pool *pgxpool.Pool, target string) (map[string]int64, error) {
		rows, err := pool.Query(ctx, `SELECT customer_id, events FROM `+pgx.Identifier{target, table}.Sanitize())
		if err != nil {
			return nil, err
		}
		out := map[string]int64{}
		var c string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&c, &n}, func() error { out[c] = n; return nil })
		return out, err
	}
}
