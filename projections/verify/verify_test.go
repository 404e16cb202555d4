package verify_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/conformance"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/projections/verify"
	"github.com/touchstream/touchstream/schemas"
	"github.com/touchstream/touchstream/testkit"
)

const (
	target     = "customer360_v1"
	index      = "timeline_v1"
	partitions = 8
)

// env is a log holding the conformance workload plus a hand-made money story, folded
// into customer360 by the real runner.
type env struct {
	deps      projections.Deps
	pub       *events.Publisher
	workload  *conformance.Workload
	perCust   map[string]int64 // customer events published, per customer
	moneyCust string           // the customer of the money story
	at        time.Time
}

func setup(t *testing.T) *env {
	t.Helper()
	pool, _ := testkit.Pool(t)
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
	start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.FixedZone("CST", 8*3600))
	e := &env{
		deps: projections.Deps{Pool: pool, JS: js, Layout: def.Layout, Catalog: cat, Log: testkit.Logger(t),
			History: &projections.LogHistory{Index: &timeline.Index{Target: index, Layout: def.Layout}, JS: js,
				Decoder: projections.NewDecoder(def.Layout, cat)}},
		pub:      pub,
		workload: conformance.NewWorkload(11, 40, 1500, partitions, start),
		perCust:  map[string]int64{},
		at:       start.AddDate(0, 2, 0),
	}
	retractions := 0
	for _, ev := range e.workload.Events {
		if ev.Type == events.TypeEventRetracted {
			retractions++
		}
	}
	if retractions == 0 {
		t.Fatal("the workload has no retraction: pick another seed")
	}
	for c, n := range e.workload.PerCustomer {
		e.perCust[c] = n
	}
	e.publish(t, e.workload.Events...)
	e.moneyStory(t)
	e.fold(t)
	return e
}

// moneyStory: a recharge of 100 CNY, one of 50, a 20 CNY reversal of the first, then
// the second recharge and the reversal both retracted, then a recharge of 30 CNY of
// which 10 are reversed: 120 CNY remain.
func (e *env) moneyStory(t *testing.T) {
	t.Helper()
	c := "MONEY-1"
	e.moneyCust = c
	r1 := e.event(t, c, events.RechargeCompleted{RechargeID: "R1", Amount: events.CNY(10000), Credited: events.CNY(10000), Method: "cash"})
	r2 := e.event(t, c, events.RechargeCompleted{RechargeID: "R2", Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "cash"})
	rev := e.event(t, c, events.RechargeReversed{Recharge: r1.Ref(), Amount: events.CNY(2000), Reason: "duplicate"})
	e.publish(t, r1, r2, rev)
	e.publish(t, e.event(t, c, events.EventRetracted{Target: r2.Ref(), Reason: "entered in error"}),
		e.event(t, c, events.EventRetracted{Target: rev.Ref(), Reason: "entered in error"}))
	r3 := e.event(t, c, events.RechargeCompleted{RechargeID: "R3", Amount: events.CNY(3000), Credited: events.CNY(3000), Method: "cash"})
	e.publish(t, r3, e.event(t, c, events.RechargeReversed{Recharge: r3.Ref(), Amount: events.CNY(1000), Reason: "customer_request"}))
}

func (e *env) event(t *testing.T, customer string, p events.Payload) *events.Event {
	t.Helper()
	e.at = e.at.Add(time.Minute)
	ev, err := events.NewEvent(customer, e.at, p)
	if err != nil {
		t.Fatal(err)
	}
	ev.ID, ev.Source = fmt.Sprintf("money-%d", e.at.Unix()), conformance.Source
	e.perCust[customer]++
	return ev
}

func (e *env) publish(t *testing.T, evs ...*events.Event) {
	t.Helper()
	for i, r := range e.pub.PublishBatch(t.Context(), evs) {
		if r.Err != nil {
			t.Fatalf("publish %s: %v", evs[i].Type, r.Err)
		}
	}
}

func (e *env) fold(t *testing.T) {
	t.Helper()
	c360, err := customer360.New(customer360.Options{Target: target, Tiers: valuetier.Default()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := projections.NewRunner(projections.Config{BatchSize: 100}, e.deps, timeline.New(index), c360)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}

func (e *env) verify(t *testing.T, reg prometheus.Registerer, parts ...int) *verify.Report {
	t.Helper()
	var last verify.Progress
	v, err := verify.New(verify.Deps{Pool: e.deps.Pool, JS: e.deps.JS, Layout: e.deps.Layout, Registry: reg, Log: testkit.Logger(t)},
		verify.Options{Target: target, Partitions: parts, FetchBatch: 256, Progress: func(p verify.Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := v.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if last.Read == 0 || last.Read != rep.Read || last.Total < last.Read {
		t.Errorf("last progress %+v, report read %d: want the final progress to count every message read", last, rep.Read)
	}
	return rep
}

func TestVerify(t *testing.T) {
	e := setup(t)
	var total int64
	for _, n := range e.perCust {
		total += n
	}

	t.Run("clean after folding a workload with retractions and reversals", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		rep := e.verify(t, reg)
		if err := rep.Err(); err != nil {
			t.Fatal(err)
		}
		if rep.Customers != len(e.perCust) || rep.Events != total || len(rep.Partitions) != partitions {
			t.Fatalf("checked %d customers, %d events, %d partitions; want %d, %d, %d",
				rep.Customers, rep.Events, len(rep.Partitions), len(e.perCust), total, partitions)
		}
		// The money story's profile holds what the story says; the verifier, which
		// agreed with it, recomputed the same from the log.
		got := totalsOf(t, e, e.moneyCust)
		want := customer360.Totals{CustomerID: e.moneyCust, EventsTotal: 7, RechargeTotalFen: 12000, LifetimeSpendFen: 12000,
			SeqHash: got.SeqHash}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("money story profile (-want +got):\n%s", diff)
		}
		if v := gaugeValue(t, reg, "touchstream_verify_last_ok", map[string]string{"target": target}); v != 1 {
			t.Fatalf("touchstream_verify_last_ok = %v, want 1", v)
		}
	})

	victim := e.moneyCust
	part := e.deps.Layout.PartitionOf(victim)
	cases := []struct {
		name   string
		update string // SQL on the victim's row, restored after the case
		field  string
		reason string
	}{
		{"an event counted twice", `UPDATE %s SET events_total = events_total + 1 WHERE customer_id = $1`, "events_total", verify.ReasonValues},
		{"one applied event swapped for another", `UPDATE %s SET seq_hash = seq_hash + 12345 WHERE customer_id = $1`, "seq_hash", verify.ReasonValues},
		{"a recharge total off by one fen", `UPDATE %s SET recharge_total_fen = recharge_total_fen - 1 WHERE customer_id = $1`, "recharge_total_fen", verify.ReasonValues},
		{"a lifetime spend that kept a retracted recharge", `UPDATE %s SET lifetime_spend_fen = lifetime_spend_fen + 5000 WHERE customer_id = $1`, "lifetime_spend_fen", verify.ReasonValues},
		{"a profile lost", `DELETE FROM %s WHERE customer_id = $1`, "events_total", verify.ReasonNoProfile},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table := pgx.Identifier{target, "profiles"}.Sanitize()
			tx, err := e.deps.Pool.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			// Keep the row to restore it: the other cases start from a clean read model.
			if _, err := tx.Exec(t.Context(), `CREATE TABLE public.kept_row AS SELECT * FROM `+table+` WHERE customer_id = $1`, victim); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(t.Context(), fmt.Sprintf(tc.update, table), victim); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { restore(t, e, table, victim, tc.name) })

			reg := prometheus.NewRegistry()
			rep := e.verify(t, reg)
			err = rep.Err()
			if !errors.Is(err, verify.ErrMismatch) {
				t.Fatalf("verify after corrupting %s: %v, want ErrMismatch", tc.field, err)
			}
			if rep.OK || rep.Differing != 1 {
				t.Fatalf("report ok=%v differing=%d, want one differing customer", rep.OK, rep.Differing)
			}
			for _, pr := range rep.Partitions {
				if pr.Partition != part {
					if !pr.OK {
						t.Errorf("partition %d reported differing (first %+v); only %d was corrupted", pr.Partition, pr.First, part)
					}
					continue
				}
				if pr.OK || pr.First == nil || pr.First.CustomerID != victim || pr.First.Reason != tc.reason {
					t.Fatalf("partition %d: ok=%v first=%+v; want customer %s (%s)", part, pr.OK, pr.First, victim, tc.reason)
				}
				if !hasField(pr.First.Diffs, tc.field) {
					t.Fatalf("diffs %+v do not name %s", pr.First.Diffs, tc.field)
				}
			}
			labels := map[string]string{"target": target, "partition": strconv.Itoa(part)}
			if v := gaugeValue(t, reg, "touchstream_verify_mismatches_total", labels); v != 1 {
				t.Fatalf("touchstream_verify_mismatches_total%v = %v, want 1", labels, v)
			}
			if v := gaugeValue(t, reg, "touchstream_verify_last_ok", map[string]string{"target": target}); v != 0 {
				t.Fatalf("touchstream_verify_last_ok = %v, want 0", v)
			}
			// Verifying only the other partitions stays clean.
			var others []int
			for p := range partitions {
				if p != part {
					others = append(others, p)
				}
			}
			if err := e.verify(t, nil, others...).Err(); err != nil {
				t.Fatalf("partitions other than %d: %v", part, err)
			}
		})
	}

	t.Run("clean again once restored", func(t *testing.T) {
		if err := e.verify(t, nil).Err(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("scheduled verification runs until cancelled", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		v, err := verify.New(verify.Deps{Pool: e.deps.Pool, JS: e.deps.JS, Layout: e.deps.Layout, Registry: reg, Log: testkit.Logger(t)},
			verify.Options{Target: target})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- v.Every(ctx, 10*time.Millisecond) }()
		deadline := time.Now().Add(10 * time.Second)
		for !hasSample(t, reg, "touchstream_verify_last_ok") {
			if time.Now().After(deadline) {
				t.Fatal("no scheduled verification ran")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Every returned %v after cancellation, want nil", err)
		}
		if v := gaugeValue(t, reg, "touchstream_verify_last_ok", map[string]string{"target": target}); v != 1 {
			t.Fatalf("touchstream_verify_last_ok = %v, want 1", v)
		}
	})

	t.Run("an event the target parked is left out", func(t *testing.T) {
		// Well-formed enough to name a customer, but invalid: the runner parks it.
		bad := fmt.Sprintf(`{"specversion":"1.0","id":"bad-1","source":%q,"type":"recharge.completed","subject":%q,`+
			`"time":"2026-06-01T08:00:00+08:00","dataschema":%q,"data":{"recharge_id":"RX","amount":"lots","method":"cash"}}`,
			conformance.Source, victim, schemas.URI(events.TypeRechargeCompleted, 1))
		if _, err := e.deps.JS.Publish(t.Context(), e.deps.Layout.Subject(part, events.TypeRechargeCompleted), []byte(bad)); err != nil {
			t.Fatal(err)
		}
		e.fold(t)
		parked, err := projections.DeadLetters(t.Context(), e.deps.Pool, target, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(parked) != 1 || parked[0].EventID != "bad-1" {
			t.Fatalf("dead letters of %s: %+v, want the invalid event", target, parked)
		}
		rep := e.verify(t, nil)
		if err := rep.Err(); err != nil {
			t.Fatal(err)
		}
		if got := rep.Partitions[part].Parked; got != 1 {
			t.Fatalf("partition %d: %d parked events left out, want 1", part, got)
		}
		if rep.Events != total {
			t.Fatalf("%d events counted, want %d", rep.Events, total)
		}
	})
}

// TestVerifyWhileFolding verifies again and again while a runner folds more traffic:
// the checkpoints and the profiles come from one snapshot, so every verification is
// clean, and the last one, once the runner has caught up, counts every event.
func TestVerifyWhileFolding(t *testing.T) {
	e := setup(t)
	more := conformance.NewWorkload(12, 30, 1200, partitions, e.at.AddDate(0, 1, 0))
	for c, n := range more.PerCustomer {
		e.perCust[c] += n
	}
	var total int64
	for _, n := range e.perCust {
		total += n
	}
	c360, err := customer360.New(customer360.Options{Target: target, Tiers: valuetier.Default()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := projections.NewRunner(projections.Config{BatchSize: 37, LeaseTTL: 2 * time.Second, Heartbeat: 200 * time.Millisecond},
		e.deps, timeline.New(index), c360)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	for i := 0; i < len(more.Events); i += 200 {
		e.publish(t, more.Events[i:min(i+200, len(more.Events))]...)
		if err := e.verify(t, nil).Err(); err != nil {
			t.Fatalf("while folding, after publishing %d events: %v", i+200, err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		rep := e.verify(t, nil)
		if err := rep.Err(); err != nil {
			t.Fatal(err)
		}
		if rep.Events == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runner did not catch up: %d of %d events verified", rep.Events, total)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func restore(t *testing.T, e *env, table, victim, name string) {
	ctx := context.WithoutCancel(t.Context())
	tx, err := e.deps.Pool.Begin(ctx)
	if err != nil {
		t.Errorf("restore after %q: %v", name, err)
		return
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE customer_id = $1`, victim); err != nil {
		t.Errorf("restore: %v", err)
		return
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+table+` SELECT * FROM public.kept_row`); err != nil {
		t.Errorf("restore: %v", err)
		return
	}
	if _, err := tx.Exec(ctx, `DROP TABLE public.kept_row`); err != nil {
		t.Errorf("restore: %v", err)
		return
	}
	if err := tx.Commit(ctx); err != nil {
		t.Errorf("restore: %v", err)
	}
}

func totalsOf(t *testing.T, e *env, customer string) customer360.Totals {
	t.Helper()
	var out customer360.Totals
	found := false
	err := customer360.ScanTotals(t.Context(), e.deps.Pool, target, e.deps.Layout.PartitionOf(customer), func(tt customer360.Totals) error {
		if tt.CustomerID == customer {
			out, found = tt, true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("no profile for %s", customer)
	}
	return out
}

func hasField(ds []verify.Diff, field string) bool {
	for _, d := range ds {
		if d.Field == field {
			return true
		}
	}
	return false
}

func hasSample(t *testing.T, reg *prometheus.Registry, name string) bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return true
		}
	}
	return false
}

// gaugeValue reads one sample of a counter or gauge from the registry.
func gaugeValue(t *testing.T, reg prometheus.Registerer, name string, labels map[string]string) float64 {
	t.Helper()
	g, ok := reg.(prometheus.Gatherer)
	if !ok {
		t.Fatal("registry is not a gatherer")
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no sample of %s%v", name, labels)
	return 0
}

// TestSeqHash: the hash of a set of sequences ignores their order, equals the
// incremental form the fold uses, and, unlike XOR, does not cancel a sequence counted
// twice.
func TestSeqHash(t *testing.T) {
	var inc int64
	for _, s := range []uint64{3, 1, 2} {
		inc = customer360.AddSeq(inc, s)
	}
	cases := []struct {
		name      string
		got, want int64
		equal     bool
	}{
		{"order does not matter", customer360.SeqHash(1, 2, 3), customer360.SeqHash(3, 1, 2), true},
		{"incremental equals whole", inc, customer360.SeqHash(1, 2, 3), true},
		{"a sequence twice does not cancel", customer360.SeqHash(5, 5), customer360.SeqHash(), false},
		{"one swapped for another differs", customer360.SeqHash(1, 2, 4), customer360.SeqHash(1, 2, 3), false},
	}
	for _, tc := range cases {
		if (tc.got == tc.want) != tc.equal {
			t.Errorf("%s: %d vs %d", tc.name, tc.got, tc.want)
		}
	}
}
