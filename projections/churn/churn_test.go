package churn_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/churn/model"
	"github.com/touchstream/touchstream/projections/conformance"
)

func rules(t testing.TB) *features.Scorer {
	t.Helper()
	b, err := os.ReadFile("../../deploy/churn-rules.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := features.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newProjection(t testing.TB, opts churn.Options) *churn.Projection {
	t.Helper()
	if opts.Rules == nil {
		opts.Rules = rules(t)
	}
	p, err := churn.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConformance runs the runtime's suite on the churn projection.
func TestConformance(t *testing.T) {
	rs := rules(t)
	conformance.Run(t, conformance.Subject{
		New: func(t *testing.T, target string, _ events.KeySource) projections.Projection {
			return newProjection(t, churn.Options{Target: target, Rules: rs})
		},
		Snapshot:    snapshot,
		PerCustomer: conformance.EventsColumn("customers"),
	})
}

// snapshot is every table of a version, as text, independent of the target's name.
func snapshot(ctx context.Context, pool *pgxpool.Pool, target string) (any, error) {
	s := pgx.Identifier{target}.Sanitize()
	out := map[string][]string{}
	for name, q := range map[string]string{
		"customers": `SELECT concat_ws(' ', customer_id, partition, events, now_at, region, tier, value_fen, score, model, scored_at, alert_id, terminated_at, convert_from(doc, 'UTF8')) FROM ` + s + `.customers ORDER BY 1`,
		"scores":    `SELECT concat_ws(' ', customer_id, at, seq, score, model) FROM ` + s + `.scores ORDER BY 1`,
		"snapshots": `SELECT concat_ws(' ', customer_id, month, as_of, vals) FROM ` + s + `.snapshots ORDER BY 1`,
		"alerts":    `SELECT concat_ws(' ', alert_id, customer_id, state, outcome, score, priority, doc) FROM ` + s + `.alerts ORDER BY 1`,
		"signals":   `SELECT concat_ws(' ', id, type, customer_id, data) FROM ` + s + `.signals ORDER BY 1`,
	} {
		rows, err := pool.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		var line string
		if _, err := pgx.ForEachRow(rows, []any{&line}, func() error { out[name] = append(out[name], line); return nil }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

var cst = time.FixedZone("CST", 8*3600)

const (
	store     = "urn:touchstream:channel:store"
	recharge  = "urn:touchstream:channel:recharge"
	callc     = "urn:touchstream:channel:callcenter"
	numbering = "urn:touchstream:channel:numbering"
	console   = "urn:touchstream:service:console"
)

// drifting publishes a customer who recharges every week from 1 June, then from
// September stops recharging, calls the retention queue and asks to port out.
func drifting(t *testing.T, e *conformance.Log, c string) {
	t.Helper()
	evs := []*events.Event{conformance.Event(t, c, store, time.Date(2026, 6, 1, 10, 0, 0, 0, cst), events.CustomerRegistered{
		Name: events.Clear("测试"), Phone: events.Clear("13800138000"), CustomerType: "individual", Segment: "youth", Region: "CN-GD-SZ",
		Plan: events.Plan{ID: "PRE-59", Name: "59元畅享卡", Kind: "prepaid", MonthlyFee: events.CNY(5900)}})}
	for d := 0; d < 90; d += 7 {
		at := time.Date(2026, 6, 2, 12, 0, 0, 0, cst).AddDate(0, 0, d)
		evs = append(evs, conformance.Event(t, c, recharge, at, events.RechargeCompleted{RechargeID: fmt.Sprintf("%s-R%d", c, d),
			Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "wechat_pay"}))
	}
	evs = append(evs,
		conformance.Event(t, c, callc, time.Date(2026, 9, 10, 9, 0, 0, 0, cst), events.CallCompleted{CallID: c + "-CALL1", Direction: "inbound",
			Queue: "retention", WaitSeconds: 12, HandlingSeconds: 300, Answered: true, Outcome: "resolved"}),
		conformance.Event(t, c, numbering, time.Date(2026, 9, 12, 9, 0, 0, 0, cst), events.PortOutRequested{RequestID: c + "-PO1", TargetOperator: "unicom", Reason: "price"}),
	)
	e.Publish(t, evs...)
}

type alertRow struct {
	ID, Customer, State, Outcome string
}

func alertsOf(t *testing.T, pool *pgxpool.Pool, target string) []alertRow {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT alert_id, customer_id, state, outcome FROM `+pgx.Identifier{target, "alerts"}.Sanitize()+` ORDER BY raised_at, alert_id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []alertRow
	var a alertRow
	if _, err := pgx.ForEachRow(rows, []any{&a.ID, &a.Customer, &a.State, &a.Outcome}, func() error { out = append(out, a); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func signalTypes(t *testing.T, pool *pgxpool.Pool, q string) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var s string
	if _, err := pgx.ForEachRow(rows, []any{&s}, func() error { out = append(out, s); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAlertLifecycle: a drifting customer's alert is raised with its reasons, taken in
// hand, actioned and closed by the desk's events, each transition a signal in the
// outbox exactly once; a second drifting customer's alert closes as churned at its
// termination; a rebuild with another batch size gives the same alerts and emits
// nothing.
func TestAlertLifecycle(t *testing.T) {
	e := conformance.NewLog(t)
	drifting(t, e, "C-CH-1")
	drifting(t, e, "C-CH-2")
	live := newProjection(t, churn.Options{Target: "churn_v1", Outbox: true})
	e.Fold(t, live, 1000)
	got := alertsOf(t, e.Pool, "churn_v1")
	if len(got) != 2 || got[0].State != churn.StateOpen || got[1].State != churn.StateOpen {
		t.Fatalf("alerts after drifting: %+v, want two open", got)
	}
	a1 := got[0].ID
	if got[0].Customer != "C-CH-1" {
		a1 = got[1].ID
	}
	detail, err := churn.Customer(t.Context(), e.Pool, "churn_v1", "C-CH-1")
	if err != nil {
		t.Fatal(err)
	}
	if detail.Group != "warning" || detail.Score == nil || detail.Score.Probability < rules(t).Threshold() || len(detail.Score.Reasons) == 0 ||
		detail.Score.Reasons[0].Feature != features.PortOutRequested || len(detail.Score.Reasons[0].Events) != 1 {
		t.Fatalf("customer detail: %+v", detail)
	}

	at := time.Date(2026, 9, 13, 10, 0, 0, 0, cst)
	e.Publish(t,
		conformance.Event(t, "C-CH-1", console, at, events.AlertAcknowledged{AlertID: a1, StaffID: "ret-wang01"}),
		conformance.Event(t, "C-CH-1", console, at.Add(time.Hour), events.OfferPresented{OfferID: "OF-1", Kind: "retention_bundle", AlertID: a1, StaffID: "ret-wang01"}),
		conformance.Event(t, "C-CH-1", console, at.Add(2*time.Hour), events.OfferAccepted{OfferID: "OF-1", AlertID: a1}),
		conformance.Event(t, "C-CH-1", console, at.Add(3*time.Hour), events.AlertClosed{AlertID: a1, Outcome: events.OutcomeRetained, StaffID: "ret-wang01"}),
		conformance.Event(t, "C-CH-1", console, at.Add(4*time.Hour), events.AlertAcknowledged{AlertID: a1, StaffID: "ret-li02"}), // closed: no effect
		conformance.Event(t, "C-CH-2", numbering, at, events.SubscriptionTerminated{Reason: "port_out", EffectiveAt: at}),
	)
	e.Fold(t, live, 1000)
	got = alertsOf(t, e.Pool, "churn_v1")
	want := map[string]alertRow{
		"C-CH-1": {a1, "C-CH-1", churn.StateClosed, events.OutcomeRetained},
		"C-CH-2": {got[1].ID, "C-CH-2", churn.StateClosed, events.OutcomeChurned},
	}
	for _, a := range got {
		w := want[a.Customer]
		w.ID = a.ID
		if a.Customer == "C-CH-1" {
			w.ID = a1
		}
		if a != w {
			t.Errorf("alert %+v, want %+v", a, w)
		}
	}
	wantSignals := []string{
		"C-CH-1 " + churn.SignalAlertAcknowledged, "C-CH-1 " + churn.SignalAlertActioned, "C-CH-1 " + churn.SignalAlertActioned,
		"C-CH-1 " + churn.SignalAlertClosed, "C-CH-1 " + churn.SignalAlertRaised,
		"C-CH-2 " + churn.SignalAlertClosed, "C-CH-2 " + churn.SignalAlertRaised,
	}
	if diff := cmp.Diff(wantSignals, signalTypes(t, e.Pool, `SELECT payload->>'customer' || ' ' || (payload->>'type') FROM outbox.signals ORDER BY 1`)); diff != "" {
		t.Errorf("signals in the outbox (-want +got):\n%s", diff)
	}
	if detail, _ := churn.Customer(t.Context(), e.Pool, "churn_v1", "C-CH-2"); detail.Group != "churned" {
		t.Errorf("C-CH-2's group: %q, want churned", detail.Group)
	}

	// A rebuild folding one event per batch: same alerts, no signal.
	res, err := projections.Rebuild(t.Context(), e.Deps, projections.RebuildSpec{Projection: churn.Name, Config: projections.Config{BatchSize: 1},
		New: func(target string) (projections.Projection, error) {
			return churn.New(churn.Options{Target: target, Rules: rules(t), Outbox: true})
		}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, alertsOf(t, e.Pool, res.Target)); diff != "" {
		t.Errorf("rebuilt alerts differ (-live +rebuilt):\n%s", diff)
	}
	if n := signalTypes(t, e.Pool, `SELECT id FROM `+res.Target+`.signals`); len(n) != 0 {
		t.Errorf("the rebuild emitted %v", n)
	}
	if n := signalTypes(t, e.Pool, `SELECT payload->>'id' FROM outbox.signals`); len(n) != len(wantSignals) {
		t.Errorf("the outbox holds %d signals after the rebuild, want %d", len(n), len(wantSignals))
	}
	liveSnap, err := snapshot(t.Context(), e.Pool, "churn_v1")
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, err := snapshot(t.Context(), e.Pool, res.Target)
	if err != nil {
		t.Fatal(err)
	}
	delete(liveSnap.(map[string][]string), "signals")
	delete(rebuilt.(map[string][]string), "signals")
	if diff := cmp.Diff(liveSnap, rebuilt); diff != "" {
		t.Errorf("a rebuild one event per batch differs from live (-live +rebuilt):\n%s", diff)
	}
}

// TestSnapshotsAndSilence: monthly snapshots hold the features as of each month's
// end; clock ticks make a silent customer's days since its last recharge grow.
func TestSnapshotsAndSilence(t *testing.T) {
	e := conformance.NewLog(t)
	e.Publish(t,
		conformance.Event(t, "C-SN-1", store, time.Date(2026, 1, 10, 10, 0, 0, 0, cst), events.CustomerRegistered{
			Name: events.Clear("测试"), Phone: events.Clear("13800138001"), CustomerType: "individual", Region: "CN-GD-GZ",
			Plan: events.Plan{ID: "PRE-19", Name: "19元流量卡", Kind: "prepaid", MonthlyFee: events.CNY(1900)}}),
		conformance.Event(t, "C-SN-1", recharge, time.Date(2026, 1, 20, 10, 0, 0, 0, cst), events.RechargeCompleted{RechargeID: "SN-R1",
			Amount: events.CNY(3000), Credited: events.CNY(3000), Method: "cash"}),
	)
	for d := time.Date(2026, 1, 21, 0, 0, 0, 0, cst); d.Before(time.Date(2026, 4, 2, 0, 0, 0, 0, cst)); d = d.AddDate(0, 0, 1) {
		e.PartitionWide(t, "urn:touchstream:service:clock", d, events.ClockTicked{Period: "day", Tick: d})
	}
	p := newProjection(t, churn.Options{Target: "churn_v1"})
	e.Fold(t, p, 200)
	rows, err := e.Pool.Query(t.Context(), `SELECT month, as_of, vals FROM churn_v1.snapshots WHERE customer_id = 'C-SN-1' ORDER BY month`)
	if err != nil {
		t.Fatal(err)
	}
	type snap struct {
		month int32
		asOf  time.Time
		vals  []float64
	}
	var snaps []snap
	var s snap
	if _, err := pgx.ForEachRow(rows, []any{&s.month, &s.asOf, &s.vals}, func() error { snaps = append(snaps, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 3 {
		t.Fatalf("%d snapshots, want January, February and March", len(snaps))
	}
	idx := 0
	for i, n := range features.Names() {
		if n == features.DaysSinceRecharge {
			idx = i
		}
	}
	for i, wantDays := range []float64{11, 39, 70} { // since 20 January, as of 31 Jan, 28 Feb, 31 Mar
		if got := snaps[i].vals[idx]; got != wantDays {
			t.Errorf("snapshot %d (%v): days since recharge %v, want %v", i, snaps[i].asOf.In(cst), got, wantDays)
		}
		wantAsOf := time.Date(2026, time.Month(i+2), 1, 0, 0, 0, 0, cst).Add(-time.Nanosecond)
		if !snaps[i].asOf.Equal(wantAsOf.Truncate(time.Microsecond)) {
			t.Errorf("snapshot %d as of %v, want %v", i, snaps[i].asOf.In(cst), wantAsOf)
		}
	}
	d, err := churn.Customer(t.Context(), e.Pool, "churn_v1", "C-SN-1")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := d.Features.Value(features.DaysSinceRecharge); v != 71 {
		t.Errorf("days since recharge after the 1 April tick: %v, want 71", v)
	}
}

// TestModelActivatedInTheLog: a trained model scores the events stored after its
// activation and stamped at or after its effective time; before, the rules score; an
// activation of a model the store does not hold is parked, and scoring goes on with
// what was in force.
func TestModelActivatedInTheLog(t *testing.T) {
	e := conformance.NewLog(t)
	// A small logistic model on synthetic rows: churners asked to port out.
	names := features.Names()
	rng := rand.New(rand.NewPCG(3, 4))
	d := model.Dataset{Names: names}
	for i := range 400 {
		x := make([]float64, len(names))
		for j := range x {
			x[j] = rng.Float64() * 10
		}
		y := float64(i % 5 / 4) // one in five
		if y == 1 {
			x[slices.Index(names, features.PortOutRequested)] = 1
		} else {
			x[slices.Index(names, features.PortOutRequested)] = 0
		}
		d.X, d.Y = append(d.X, x), append(d.Y, y)
	}
	m, err := model.TrainLogistic(d, model.LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := churn.MigrateModels(t.Context(), e.Pool); err != nil {
		t.Fatal(err)
	}
	if _, err := churn.SaveModel(t.Context(), e.Pool, m, map[string]string{"test": "synthetic"}); err != nil {
		t.Fatal(err)
	}
	const admin = "urn:touchstream:service:churn-admin"
	reg := func(c string, at time.Time) *events.Event {
		return conformance.Event(t, c, store, at, events.CustomerRegistered{Name: events.Clear("测试"), Phone: events.Clear("13800138000"),
			CustomerType: "individual", Region: "CN-GD-SZ", Plan: events.Plan{ID: "PRE-19", Name: "19元流量卡", Kind: "prepaid", MonthlyFee: events.CNY(1900)}})
	}
	effective := time.Date(2026, 5, 1, 0, 0, 0, 0, cst)
	e.Publish(t, reg("C-M-1", time.Date(2026, 4, 1, 10, 0, 0, 0, cst)))
	e.PartitionWide(t, admin, effective, events.ChurnModelActivated{Model: m.Version, EffectiveAt: effective})
	missing := "sha256:" + strings.Repeat("0", 64)
	e.PartitionWide(t, admin, effective, events.ChurnModelActivated{Model: missing, EffectiveAt: effective})
	e.Publish(t,
		reg("C-M-2", time.Date(2026, 4, 20, 10, 0, 0, 0, cst)), // stamped before the effective time: the rules
		reg("C-M-3", time.Date(2026, 5, 2, 10, 0, 0, 0, cst)),  // after: the model
	)
	e.Fold(t, newProjection(t, churn.Options{Target: "churn_v1"}), 0)
	for c, want := range map[string]string{"C-M-1": churn.RulesName(rules(t).Version()), "C-M-2": churn.RulesName(rules(t).Version()), "C-M-3": m.Version} {
		var got string
		if err := e.Pool.QueryRow(t.Context(), `SELECT model FROM churn_v1.customers WHERE customer_id = $1`, c).Scan(&got); err != nil || got != want {
			t.Errorf("%s scored by %q (%v), want %q", c, got, err, want)
		}
	}
	var parked int
	var msg string
	if err := e.Pool.QueryRow(t.Context(), `SELECT count(*), min(error) FROM projections.dead_letters WHERE target = 'churn_v1' AND event_type = $1`,
		events.TypeChurnModelActivated).Scan(&parked, &msg); err != nil {
		t.Fatal(err)
	}
	if parked != e.Layout.Partitions || !strings.Contains(msg, missing) || !strings.Contains(msg, "not in the model store") {
		t.Errorf("parked activations: %d (%q), want one per partition (%d) naming the missing model", parked, msg, e.Layout.Partitions)
	}
}
