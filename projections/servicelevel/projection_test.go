package servicelevel_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/conformance"
	"github.com/touchstream/touchstream/projections/servicelevel"
)

var cst = time.FixedZone("CST", 8*3600)

// TestConformance runs the runtime's suite on the service-level projection.
func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Subject{
		New: func(t *testing.T, target string, _ events.KeySource) projections.Projection {
			p, err := servicelevel.New(servicelevel.Options{Target: target})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		Snapshot:    snapshot,
		PerCustomer: conformance.EventsColumn("customers"),
	})
}

// snapshot is every table of the version as text rows, in key order.
func snapshot(ctx context.Context, pool *pgxpool.Pool, target string) (any, error) {
	s := pgx.Identifier{target}.Sanitize()
	out := map[string][]string{}
	for table, order := range map[string]string{
		"calls_hourly": "queue, hour", "calls": "event_source, event_id", "complaints": "customer_id, complaint_id",
		"customers": "customer_id", "signals": "id",
	} {
		rows, err := pool.Query(ctx, `SELECT t::text FROM `+s+`.`+table+` t ORDER BY `+order)
		if err != nil {
			return nil, err
		}
		var r string
		if _, err := pgx.ForEachRow(rows, []any{&r}, func() error { out[table] = append(out[table], r); return nil }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// logEnv is a log and a database for the tests, numbering the events it builds.
type logEnv struct {
	*conformance.Log
	n int
}

func newLogEnv(t *testing.T) *logEnv { return &logEnv{Log: conformance.NewLog(t)} }

const callCenter = "urn:touchstream:channel:callcenter"

// event builds an event with a readable id, so that tests can retract it.
func (e *logEnv) event(t *testing.T, customer string, at time.Time, p events.Payload) *events.Event {
	t.Helper()
	ev, err := events.NewEvent(customer, at, p)
	if err != nil {
		t.Fatal(err)
	}
	e.n++
	ev.Source, ev.ID = callCenter, fmt.Sprintf("EV-%04d", e.n)
	return ev
}

func (e *logEnv) tick(t *testing.T, at time.Time) {
	t.Helper()
	e.PartitionWide(t, "urn:touchstream:service:clock", at, events.ClockTicked{Period: "hour", Tick: at})
}

// fold catches the projection up with the log.
func (e *logEnv) fold(t *testing.T, p projections.Projection) {
	t.Helper()
	e.Fold(t, p, 0)
}

func newProjection(t *testing.T, target string, outbox bool) *servicelevel.Projection {
	t.Helper()
	p, err := servicelevel.New(servicelevel.Options{Target: target, Outbox: outbox})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAnswerRate: 20 inbound calls in one hour, 15 answered within 20 s, 2 answered
// after 30 s and 3 abandoned, plus an outbound call: answer rate 0.75, 3 abandoned;
// a retraction takes one call away exactly.
func TestAnswerRate(t *testing.T) {
	e := newLogEnv(t)
	hour := time.Date(2026, 11, 2, 9, 0, 0, 0, cst)
	var evs []*events.Event
	var waits, handling int
	for i := range 20 {
		c := events.CallCompleted{CallID: fmt.Sprintf("CALL-%02d", i), Direction: "inbound", Queue: "care", Outcome: "resolved"}
		switch {
		case i < 15:
			c.WaitSeconds, c.Answered, c.HandlingSeconds = 5+i, true, 100 // 5..19 s
		case i < 17:
			c.WaitSeconds, c.Answered, c.HandlingSeconds = 35, true, 200
		default:
			c.WaitSeconds, c.Outcome = 60, "abandoned"
		}
		waits += c.WaitSeconds
		handling += c.HandlingSeconds
		evs = append(evs, e.event(t, fmt.Sprintf("C-%02d", i%7), hour.Add(time.Duration(i)*time.Minute), c))
	}
	evs = append(evs, e.event(t, "C-00", hour.Add(30*time.Minute),
		events.CallCompleted{CallID: "OUT-1", Direction: "outbound", Queue: "care", WaitSeconds: 0, Answered: true, HandlingSeconds: 90, Outcome: "sale"}))
	// A call in another queue, the next hour.
	evs = append(evs, e.event(t, "C-01", hour.Add(70*time.Minute),
		events.CallCompleted{CallID: "CALL-B", Direction: "inbound", Queue: "billing", WaitSeconds: 10, Answered: true, HandlingSeconds: 60, Outcome: "resolved"}))
	e.Publish(t, evs...)
	p := newProjection(t, "servicelevel_v1", false)
	e.fold(t, p)

	got, err := servicelevel.AnswerRate(t.Context(), e.Pool, "servicelevel_v1", "care", hour.Add(-time.Hour), hour.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []servicelevel.HourRate{{Queue: "care", Hour: hour, Offered: 20, Answered: 17, Within20: 15, Abandoned: 3, Outbound: 1,
		AvgWaitSeconds: float64(waits) / 20, AvgHandlingSeconds: float64(handling) / 17, AnswerRate: 0.75, Target: 0.85}}
	if diff := cmp.Diff(want, got, cmp.Comparer(time.Time.Equal)); diff != "" {
		t.Fatalf("care answer rate (-want +got):\n%s", diff)
	}
	if want := float64(5+6+7+8+9+10+11+12+13+14+15+16+17+18+19+35+35+60+60+60) / 20; got[0].AvgWaitSeconds != want {
		t.Fatalf("average wait %v, want %v", got[0].AvgWaitSeconds, want)
	}
	all, err := servicelevel.AnswerRate(t.Context(), e.Pool, "servicelevel_v1", "", hour, hour.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[1].Offered != 1 || all[1].AnswerRate != 1 || !all[1].MeetsTarget || all[1].Hour.Unix() != hour.Add(time.Hour).Unix() {
		t.Fatalf("every queue: %+v", all)
	}

	// Retract an abandoned call (one of C-03's: call 17 is evs[17], customer C-03).
	e.Publish(t, e.event(t, evs[17].Subject, hour.Add(2*time.Hour), events.EventRetracted{Target: evs[17].Ref(), Reason: "test call"}))
	// A retraction of an unknown event, and a second retraction of the same call, change nothing.
	e.Publish(t, e.event(t, evs[17].Subject, hour.Add(2*time.Hour), events.EventRetracted{Target: events.EventRef{Source: callCenter, ID: "NOPE"}, Reason: "unknown"}))
	e.Publish(t, e.event(t, evs[17].Subject, hour.Add(2*time.Hour), events.EventRetracted{Target: evs[17].Ref(), Reason: "again"}))
	e.fold(t, p)
	got, err = servicelevel.AnswerRate(t.Context(), e.Pool, "servicelevel_v1", "care", hour, hour.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want[0].Offered, want[0].Abandoned = 19, 2
	want[0].AvgWaitSeconds, want[0].AnswerRate = float64(waits-60)/19, 15.0/19
	if diff := cmp.Diff(want, got, cmp.Comparer(time.Time.Equal)); diff != "" {
		t.Fatalf("care answer rate after a retraction (-want +got):\n%s", diff)
	}

	sum, err := servicelevel.SummaryOf(t.Context(), e.Pool, "servicelevel_v1", hour.Add(5*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Day != "2026-11-02" || len(sum.Queues) != 2 || sum.Total.Offered != 20 || sum.Total.Within20 != 16 || sum.Queues[1].Queue != "care" {
		t.Fatalf("summary: %+v", sum)
	}
}

// TestComplaintBreaches: a complaint still open when a clock tick passes its deadline
// is breached once, with one signal in the outbox (an enterprise SLA breach for an
// enterprise customer); one resolved late is breached by its resolution; one resolved in
// time, or whose resolution was folded before its opening, is not; a rebuild emits
// nothing.
func TestComplaintBreaches(t *testing.T) {
	e := newLogEnv(t)
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, cst)
	plan := events.Plan{ID: "G-1", Name: "Group", Kind: "postpaid", MonthlyFee: events.CNY(100000)}
	open := func(customer, id string, at, by time.Time) *events.Event {
		return e.event(t, customer, at, events.ComplaintOpened{ComplaintID: id, Category: "network", Severity: "high", PromisedBy: by,
			Description: events.Clear("信号差")})
	}
	resolve := func(customer, id string, at time.Time) *events.Event {
		return e.event(t, customer, at, events.ComplaintResolved{ComplaintID: id, Resolution: "resolved"})
	}
	e.Publish(t,
		e.event(t, "ENT-1", t0, events.CustomerRegistered{Name: events.Clear("某集团"), Phone: events.Clear("13800138000"),
			CustomerType: "enterprise", Region: "CN-GD-SZ", Plan: plan}),
		open("ENT-1", "CP-ENT", t0, t0.Add(4*time.Hour)),   // open past the tick: breached
		open("P-1", "CP-LATE", t0, t0.Add(time.Hour)),      // resolved late: breached
		open("P-2", "CP-OK", t0, t0.Add(4*time.Hour)),      // resolved in time
		resolve("P-3", "CP-OOO", t0.Add(30*time.Minute)),   // resolution before opening, in time
		resolve("P-4", "CP-OOO-LATE", t0.Add(5*time.Hour)), // resolution before opening, late
		open("P-5", "CP-FUTURE", t0, t0.Add(48*time.Hour)), // still open, not due
		resolve("P-2", "CP-OK", t0.Add(2*time.Hour)),       //
		resolve("P-1", "CP-LATE", t0.Add(3*time.Hour)),     //
		open("P-3", "CP-OOO", t0.Add(-time.Hour), t0.Add(time.Hour)),
		open("P-4", "CP-OOO-LATE", t0.Add(-time.Hour), t0.Add(time.Hour)),
	)
	e.tick(t, t0.Add(6*time.Hour))
	e.tick(t, t0.Add(7*time.Hour)) // a second tick breaches nothing again
	live := newProjection(t, "servicelevel_v1", true)
	e.fold(t, live)

	breaches, err := servicelevel.Breaches(t.Context(), e.Pool, "servicelevel_v1", t0, t0.Add(24*time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	type br struct {
		Customer, ID, Reason string
		Enterprise           bool
	}
	var got []br
	for _, b := range breaches {
		got = append(got, br{b.Customer, b.ComplaintID, b.Reason, b.Enterprise})
	}
	want := []br{
		{"ENT-1", "CP-ENT", servicelevel.ReasonDeadlinePassed, true},
		{"P-1", "CP-LATE", servicelevel.ReasonResolvedLate, false},
		{"P-4", "CP-OOO-LATE", servicelevel.ReasonResolvedLate, false},
	}
	slices.SortFunc(got, func(a, b br) int { return strings.Compare(a.ID, b.ID) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("breaches (-want +got):\n%s", diff)
	}
	type sig struct{ Type, Customer, Complaint, Enterprise string }
	read := func(q string) []sig {
		t.Helper()
		rows, err := e.Pool.Query(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		var out []sig
		var s sig
		if _, err := pgx.ForEachRow(rows, []any{&s.Type, &s.Customer, &s.Complaint, &s.Enterprise}, func() error { out = append(out, s); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	wantSigs := []sig{
		{servicelevel.SignalComplaintBreached, "ENT-1", "CP-ENT", "true"},
		{servicelevel.SignalComplaintBreached, "P-1", "CP-LATE", "false"},
		{servicelevel.SignalComplaintBreached, "P-4", "CP-OOO-LATE", "false"},
	}
	if diff := cmp.Diff(wantSigs, read(`SELECT payload::jsonb->>'type', payload::jsonb->>'customer', payload::jsonb->'data'->>'complaint_id',
		payload::jsonb->'data'->>'enterprise_sla' FROM outbox.signals ORDER BY 2`)); diff != "" {
		t.Fatalf("signals in the outbox (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSigs, read(`SELECT type, customer_id, data->>'complaint_id', data->>'enterprise_sla' FROM servicelevel_v1.signals ORDER BY 2`)); diff != "" {
		t.Fatalf("signals recorded (-want +got):\n%s", diff)
	}
	var personal int
	if err := e.Pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox.signals WHERE payload::text LIKE '%信号%' OR payload::text LIKE '%13800138000%'`).Scan(&personal); err != nil || personal != 0 {
		t.Fatalf("personal data in signals: %d %v", personal, err)
	}

	openC, err := servicelevel.OpenComplaints(t.Context(), e.Pool, "servicelevel_v1", "P-5")
	if err != nil || len(openC) != 1 || openC[0].Breached || !openC[0].PromisedBy.Equal(t0.Add(48*time.Hour)) {
		t.Fatalf("open complaints of P-5: %+v %v", openC, err)
	}
	ooo, err := servicelevel.OpenComplaints(t.Context(), e.Pool, "servicelevel_v1", "P-3")
	if err != nil || len(ooo) != 0 {
		t.Fatalf("the complaint resolved before its opening is open: %+v %v", ooo, err)
	}
	var oooBreached bool
	var oooOpened *time.Time
	if err := e.Pool.QueryRow(t.Context(), `SELECT breached, opened_at FROM servicelevel_v1.complaints WHERE complaint_id = 'CP-OOO'`).Scan(&oooBreached, &oooOpened); err != nil ||
		oooBreached || oooOpened == nil {
		t.Fatalf("CP-OOO: breached %v opened %v: %v", oooBreached, oooOpened, err)
	}
	sum, err := servicelevel.SummaryOf(t.Context(), e.Pool, "servicelevel_v1", t0.Add(50*time.Hour).In(cst))
	if err != nil || sum.OpenComplaints != 2 || sum.PastDeadline != 2 || sum.EnterprisePastDeadline != 1 {
		t.Fatalf("summary: %+v %v", sum, err)
	}

	// Retracting the enterprise complaint's opening withdraws its breach.
	e.Publish(t, e.event(t, "ENT-1", t0.Add(8*time.Hour), events.EventRetracted{Target: events.EventRef{Source: callCenter, ID: "EV-0002"}, Reason: "duplicate"}))
	e.fold(t, live)
	if got := read(`SELECT type, customer_id, data->>'complaint_id', data->>'enterprise_sla' FROM servicelevel_v1.signals WHERE type = '` +
		servicelevel.SignalBreachWithdrawn + `'`); len(got) != 1 || got[0].Complaint != "CP-ENT" {
		t.Fatalf("withdrawal: %v", got)
	}
	if c, _ := servicelevel.OpenComplaints(t.Context(), e.Pool, "servicelevel_v1", "ENT-1"); len(c) != 0 {
		t.Fatalf("retracted complaint still open: %+v", c)
	}

	// A rebuild folds the same log and emits nothing.
	res, err := projections.Rebuild(t.Context(), e.Deps, projections.RebuildSpec{Projection: servicelevel.Name,
		New: func(target string) (projections.Projection, error) {
			return servicelevel.New(servicelevel.Options{Target: target, Outbox: true})
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(`SELECT type, customer_id, '', '' FROM ` + res.Target + `.signals`); len(got) != 0 {
		t.Fatalf("the rebuild emitted %v", got)
	}
	var n int
	if err := e.Pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox.signals`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("the outbox holds %d signals after the rebuild, want the live 4: %v", n, err)
	}
	rebuilt, err := servicelevel.Breaches(t.Context(), e.Pool, res.Target, t0, t0.Add(24*time.Hour), 10)
	if err != nil || len(rebuilt) != 2 {
		t.Fatalf("rebuilt breaches: %+v %v", rebuilt, err)
	}

	// One event a batch (the resolutions before their openings committed apart) ends
	// the same as the rebuild.
	r, err := projections.NewRunner(projections.Config{Group: "one-by-one", BatchSize: 1, NoSignals: true}, e.Deps, newProjection(t, "servicelevel_b1", false))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	want1, err := snapshot(t.Context(), e.Pool, res.Target)
	if err != nil {
		t.Fatal(err)
	}
	got1, err := snapshot(t.Context(), e.Pool, "servicelevel_b1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want1, got1); diff != "" {
		t.Fatalf("one event a batch differs from the rebuild (-rebuild +one by one):\n%s", diff)
	}
}
