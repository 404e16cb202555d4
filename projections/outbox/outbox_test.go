package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/outbox"
	"github.com/touchstream/touchstream/testkit"
)

func signal(t testing.TB, i int) outbox.Signal {
	t.Helper()
	e := &projections.Envelope{Partition: i % 64, Seq: uint64(i + 1)}
	e.ID = fmt.Sprintf("evt-%d", i)
	e.Source = "recharge-platform"
	e.Subject = fmt.Sprintf("C%06d", i%977)
	e.Time = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	s, err := outbox.NewSignal("loyalty.tier_changed", e, "loyalty_v1", "gold", map[string]any{"from": "silver", "to": "gold", "reason": "upgrade"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type env struct {
	pool *pgxpool.Pool
	dsn  string
	js   jetstream.JetStream
}

func setup(t testing.TB) env {
	t.Helper()
	pool, dsn := testkit.Pool(t)
	_, js := testkit.StartNATS(t).JetStream(t)
	if _, err := streams.Apply(t.Context(), js, streams.Default()); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	return env{pool, dsn, js}
}

// emit writes sigs in one transaction and commits it, or rolls it back.
func emit(t testing.TB, pool *pgxpool.Pool, commit bool, sigs ...outbox.Signal) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := outbox.Emit(ctx, tx, sigs...); err != nil {
		t.Fatal(err)
	}
	if commit {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// forwarder starts a forwarder on its own pool (application_name names it, so a test
// can drop its connections); stop cancels it abruptly and waits for Run to return.
func (e env) forwarder(t testing.TB, name string, reg prometheus.Registerer) (stop func()) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = name
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- outbox.Forwarder{Pool: pool, JS: e.js, Registry: reg, Log: testkit.Logger(t)}.Run(ctx)
	}()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("forwarder %s: Run = %v, want nil on cancellation", name, err)
		}
		pool.Close()
	}
	t.Cleanup(stop)
	return stop
}

// waitStream waits until SIGNALS holds at least n messages.
func waitStream(t testing.TB, js jetstream.JetStream, n uint64) {
	t.Helper()
	waitStreamMid(t, js, n, 0)
}

// waitStreamMid waits until SIGNALS holds at least n messages and, when batch is not
// zero, a number that is not a multiple of batch: the forwarder is inside a batch whose
// position is not yet recorded in the outbox.
func waitStreamMid(t testing.TB, js jetstream.JetStream, n, batch uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := js.Stream(t.Context(), "SIGNALS")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().State.Msgs; got >= n && (batch == 0 || got%batch != 0) {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("SIGNALS holds %d messages after 20s, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitAcked waits until the forwarders' position in the outbox is its last row.
func waitAcked(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var behind bool
		if err := pool.QueryRow(t.Context(), `SELECT coalesce((SELECT max("offset") FROM outbox.signals), 0) >
			coalesce((SELECT offset_acked FROM outbox.signals_offsets WHERE consumer_group = $1), 0)`, outbox.DefaultGroup).Scan(&behind); err != nil {
			t.Fatal(err)
		}
		if !behind {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the outbox position never reached the last signal")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type stored struct {
	Subject string
	MsgID   string
	Signal  outbox.Signal
}

// readStream returns every message of SIGNALS in stream order.
func readStream(t *testing.T, js jetstream.JetStream) []stored {
	t.Helper()
	s, err := js.Stream(t.Context(), "SIGNALS")
	if err != nil {
		t.Fatal(err)
	}
	n := int(s.CachedInfo().State.Msgs)
	c, err := s.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for len(out) < n {
		batch, err := c.Fetch(min(1000, n-len(out)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var sig outbox.Signal
			if err := json.Unmarshal(m.Data(), &sig); err != nil {
				t.Fatalf("message %s: %v", m.Subject(), err)
			}
			out = append(out, stored{m.Subject(), m.Headers().Get(jetstream.MsgIDHeader), sig})
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), jetstream.ErrNoMessages) {
			t.Fatal(batch.Error())
		}
		if got == 0 {
			t.Fatalf("read %d of %d messages of SIGNALS", len(out), n)
		}
	}
	return out
}

// TestCommittedArriveOnceRolledBackNever: signals of committed transactions arrive in
// SIGNALS, once per id even when emitted twice, on signals.<type>, with
// Nats-Msg-Id = id and the signal intact; a rolled-back transaction's never do.
func TestCommittedArriveOnceRolledBackNever(t *testing.T) {
	e := setup(t)
	a, b, c, d := signal(t, 1), signal(t, 2), signal(t, 3), signal(t, 4)
	emit(t, e.pool, true, a, b)
	emit(t, e.pool, false, c) // rolled back
	emit(t, e.pool, true, a)  // the same fact again: same id
	emit(t, e.pool, true, d)  // committed after the rollback
	reg := prometheus.NewRegistry()
	e.forwarder(t, "fwd", reg)
	// The sentinel, committed last, arrives last: once it is there, everything before
	// it has been forwarded.
	sentinel := signal(t, 5)
	emit(t, e.pool, true, sentinel)
	waitStream(t, e.js, 4)
	got := readStream(t, e.js)
	var want []stored
	for _, s := range []outbox.Signal{a, b, d, sentinel} {
		want = append(want, stored{"signals.loyalty.tier_changed", s.ID, s})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SIGNALS (-want +got):\n%s", diff)
	}
	if got, want := forwarded(t, reg, "duplicate"), 1.0; got != want {
		t.Errorf("duplicates forwarded = %v, want %v (the repeated signal)", got, want)
	}
}

// forwarded reads touchstream_signals_forwarded_total{outcome}.
func forwarded(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "touchstream_signals_forwarded_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestKilledForwarderLosesNothing: 10,000 signals are pending; the first forwarder
// has its PostgreSQL connections dropped mid-stream (it recovers by itself), then is
// cancelled abruptly mid-batch; a second one finishes. Every signal arrives, none is
// lost, and repeats are only of the same id (the stream holds each id once).
func TestKilledForwarderLosesNothing(t *testing.T) {
	e := setup(t)
	const n, perTx = 10000, 500
	want := map[string]bool{}
	for i := 0; i < n; i += perTx {
		var sigs []outbox.Signal
		for j := i; j < i+perTx; j++ {
			s := signal(t, j)
			want[s.ID] = true
			sigs = append(sigs, s)
		}
		emit(t, e.pool, true, sigs...)
	}
	reg := prometheus.NewRegistry()
	stop := e.forwarder(t, "fwd_first", reg)
	waitStreamMid(t, e.js, 1500, 500)
	var dropped int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'fwd_first'`).Scan(&dropped); err != nil {
		t.Fatal(err)
	}
	waitStreamMid(t, e.js, 4000, 500)
	stop()
	s, err := e.js.Stream(t.Context(), "SIGNALS")
	if err != nil {
		t.Fatal(err)
	}
	atKill := s.CachedInfo().State.Msgs
	e.forwarder(t, "fwd_second", reg)
	waitStream(t, e.js, n)

	got := readStream(t, e.js)
	seen := map[string]int{}
	for _, m := range got {
		if m.MsgID != m.Signal.ID {
			t.Fatalf("message id %q carries signal %q", m.MsgID, m.Signal.ID)
		}
		seen[m.MsgID]++
	}
	if got, want := len(seen), len(want); got != want {
		t.Errorf("distinct ids in SIGNALS = %d, want %d", got, want)
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("signal %s stored %d times, want 1", id, seen[id])
		}
	}
	// The second forwarder acknowledges everything in the outbox.
	waitAcked(t, e.pool)
	dups := forwarded(t, reg, "duplicate")
	t.Logf("%d connections dropped; %d stored when the first forwarder was cancelled; %v repeats dropped as duplicates", dropped, atKill, dups)
}

// TestEmitRefusesInvalid: one invalid signal and nothing is written.
func TestEmitRefusesInvalid(t *testing.T) {
	e := setup(t)
	bad := signal(t, 2)
	bad.Customer = ""
	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context())
	err = outbox.Emit(t.Context(), tx, signal(t, 1), bad)
	if err == nil || !strings.Contains(err.Error(), "customer") {
		t.Fatalf("Emit = %v, want an error naming customer", err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := e.pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox.signals").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Errorf("outbox rows = %d, want 0", rows)
	}
}

// TestValidate: each missing or malformed field is refused, and named.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*outbox.Signal)
		field string
	}{
		{"empty id", func(s *outbox.Signal) { s.ID = "" }, "id: empty"},
		{"long id", func(s *outbox.Signal) { s.ID = strings.Repeat("x", 40) }, "id:"},
		{"empty type", func(s *outbox.Signal) { s.Type = "" }, "type: empty"},
		{"one-token type", func(s *outbox.Signal) { s.Type = "loyalty" }, "type"},
		{"type with a wildcard", func(s *outbox.Signal) { s.Type = "loyalty.*" }, "type"},
		{"empty customer", func(s *outbox.Signal) { s.Customer = "" }, "customer: empty"},
		{"customer not an id", func(s *outbox.Signal) { s.Customer = "Zhang San" }, "customer:"},
		{"no cause", func(s *outbox.Signal) { s.CausedBy = events.EventRef{} }, "caused_by"},
		{"no time", func(s *outbox.Signal) { s.Time = time.Time{} }, "time"},
		{"no target", func(s *outbox.Signal) { s.Target = "" }, "target"},
		{"bad data", func(s *outbox.Signal) { s.Data = json.RawMessage("{") }, "data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := signal(t, 1)
			tc.edit(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tc.field)
			}
			if strings.Contains(tc.name, "customer") && strings.Contains(err.Error(), "Zhang") {
				t.Errorf("the error repeats the refused customer value: %v", err)
			}
		})
	}
	if err := signal(t, 1).Validate(); err != nil {
		t.Errorf("a valid signal: %v", err)
	}
}

// TestNewID: the same fact has the same id; any part changes it; parts cannot be
// shifted into each other.
func TestNewID(t *testing.T) {
	cause := events.EventRef{Source: "store", ID: "1001"}
	id := outbox.NewID("loyalty.tier_changed", cause, "gold")
	if got := outbox.NewID("loyalty.tier_changed", cause, "gold"); got != id {
		t.Errorf("NewID not deterministic: %s, %s", id, got)
	}
	for name, other := range map[string]string{
		"type":          outbox.NewID("loyalty.overdraft", cause, "gold"),
		"source":        outbox.NewID("loyalty.tier_changed", events.EventRef{Source: "call-center", ID: "1001"}, "gold"),
		"event id":      outbox.NewID("loyalty.tier_changed", events.EventRef{Source: "store", ID: "1002"}, "gold"),
		"discriminator": outbox.NewID("loyalty.tier_changed", cause, "silver"),
		"shifted parts": outbox.NewID("loyalty.tier_changed", events.EventRef{Source: "store1", ID: "001"}, "gold"),
	} {
		if other == id {
			t.Errorf("changing the %s keeps the id %s", name, id)
		}
	}
	if len(id) != 36 {
		t.Errorf("id %q: %d characters, want a 36-character UUID", id, len(id))
	}
}

// TestStreamMissingThenCreated: while SIGNALS does not exist, publishing fails and is
// retried; once it is provisioned, every signal arrives, in order.
func TestStreamMissingThenCreated(t *testing.T) {
	pool, dsn := testkit.Pool(t)
	_, js := testkit.StartNATS(t).JetStream(t)
	if err := outbox.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	e := env{pool, dsn, js}
	a, b, c := signal(t, 1), signal(t, 2), signal(t, 3)
	emit(t, pool, true, a, b)
	emit(t, pool, true, c)
	reg := prometheus.NewRegistry()
	e.forwarder(t, "fwd", reg)
	deadline := time.Now().Add(10 * time.Second)
	for failures(t, reg) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no failed publish reported while SIGNALS is missing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := streams.Apply(t.Context(), js, streams.Default()); err != nil {
		t.Fatal(err)
	}
	waitStream(t, js, 3)
	var got []string
	for _, m := range readStream(t, js) {
		got = append(got, m.MsgID)
	}
	if diff := cmp.Diff([]string{a.ID, b.ID, c.ID}, got); diff != "" {
		t.Errorf("SIGNALS ids (-want +got):\n%s", diff)
	}
}

// failures reads touchstream_signals_forward_errors_total.
func failures(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "touchstream_signals_forward_errors_total" {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// TestTwoForwarders: two processes forward one outbox; each signal arrives, once.
func TestTwoForwarders(t *testing.T) {
	e := setup(t)
	const n, perTx = 3000, 300
	for i := 0; i < n; i += perTx {
		var sigs []outbox.Signal
		for j := i; j < i+perTx; j++ {
			sigs = append(sigs, signal(t, j))
		}
		emit(t, e.pool, true, sigs...)
	}
	e.forwarder(t, "fwd_a", nil)
	e.forwarder(t, "fwd_b", nil)
	waitStream(t, e.js, n)
	got := readStream(t, e.js)
	if len(got) != n {
		t.Errorf("SIGNALS holds %d, want %d", len(got), n)
	}
}

// TestPrune: forwarded rows are pruned; rows not yet forwarded never are.
func TestPrune(t *testing.T) {
	e := setup(t)
	emit(t, e.pool, true, signal(t, 1), signal(t, 2), signal(t, 3))
	stop := e.forwarder(t, "fwd", nil)
	waitStream(t, e.js, 3)
	waitAcked(t, e.pool)
	stop()
	emit(t, e.pool, true, signal(t, 4), signal(t, 5))
	n, err := outbox.Prune(t.Context(), e.pool, outbox.DefaultGroup, 0)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	rows, err := e.pool.Query(t.Context(), `SELECT uuid FROM outbox.signals ORDER BY "offset"`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("pruned %d rows, want 3", n)
	}
	if diff := cmp.Diff([]string{signal(t, 4).ID, signal(t, 5).ID}, left); diff != "" {
		t.Errorf("rows left (-want +got):\n%s", diff)
	}
	if n, err := outbox.Prune(t.Context(), e.pool, outbox.DefaultGroup, time.Hour); err != nil || n != 0 {
		t.Errorf("Prune(older than 1h) = %d, %v; want 0 rows", n, err)
	}
}
