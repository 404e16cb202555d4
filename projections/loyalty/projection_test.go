package loyalty_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/conformance"
	"github.com/touchstream/touchstream/projections/loyalty"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
)

const rulesFile = "../../deploy/loyalty.json"

func rules(t testing.TB) *ledger.RuleSet {
	t.Helper()
	rs, err := ledger.Load(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestConformance runs the runtime's suite on the loyalty projection, pinned to the
// first rule version (the workload activates none).
func TestConformance(t *testing.T) {
	rs := rules(t)
	conformance.Run(t, conformance.Subject{
		New: func(t *testing.T, target string, _ events.KeySource) projections.Projection {
			p, err := loyalty.New(loyalty.Options{Target: target, Rules: rs, Pin: "2026-01"})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		Snapshot:    snapshot,
		PerCustomer: conformance.EventsColumn("members"),
	})
}

// snapshot is every member's row and ledger, and the signals raised.
func snapshot(ctx context.Context, pool *pgxpool.Pool, target string) (any, error) {
	type member struct {
		Tier                         string
		Balance, Overdraft, Events   int64
		Entries                      int32
		Due                          *time.Time
		Doc                          string
		LedgerSum, LedgerRows, Kinds int64
	}
	s := pgx.Identifier{target}.Sanitize()
	rows, err := pool.Query(ctx, `SELECT m.customer_id, m.tier, m.balance, m.overdraft, m.events, m.entries_total, m.next_due, m.doc,
			coalesce(sum(e.points), 0), count(e.n), count(DISTINCT e.kind)
		FROM `+s+`.members m LEFT JOIN `+s+`.entries e USING (customer_id) GROUP BY m.customer_id`)
	if err != nil {
		return nil, err
	}
	out := map[string]member{}
	var c string
	var m member
	var doc []byte
	if _, err := pgx.ForEachRow(rows, []any{&c, &m.Tier, &m.Balance, &m.Overdraft, &m.Events, &m.Entries, &m.Due, &doc, &m.LedgerSum, &m.LedgerRows, &m.Kinds}, func() error {
		m.Doc = string(doc)
		out[c] = m
		return nil
	}); err != nil {
		return nil, err
	}
	var sigs []string
	rows, err = pool.Query(ctx, `SELECT id || ' ' || type || ' ' || customer_id || ' ' || data::text FROM `+s+`.signals ORDER BY id`)
	if err != nil {
		return nil, err
	}
	var sig string
	if _, err := pgx.ForEachRow(rows, []any{&sig}, func() error { sigs = append(sigs, sig); return nil }); err != nil {
		return nil, err
	}
	totals, err := loyalty.ClubTotals(ctx, pool, target, 1200)
	if err != nil {
		return nil, err
	}
	scanned, err := scanTotals(ctx, pool, target)
	if err != nil {
		return nil, err
	}
	if diff := cmp.Diff(scanned, totals); diff != "" {
		return nil, fmt.Errorf("the club totals kept by the triggers differ from a scan of %s (-scan +kept):\n%s", target, diff)
	}
	return map[string]any{"members": out, "signals": sigs, "totals": totals}, nil
}

// scanTotals is the oracle of the kept totals: the club's totals summed over every
// member and every ledger entry.
func scanTotals(ctx context.Context, pool *pgxpool.Pool, target string) (*loyalty.Totals, error) {
	t := &loyalty.Totals{Tiers: map[string]int64{}}
	s := pgx.Identifier{target}.Sanitize()
	rows, err := pool.Query(ctx, `SELECT tier, count(*), coalesce(sum(balance), 0), coalesce(sum(overdraft), 0) FROM `+s+`.members GROUP BY tier`)
	if err != nil {
		return nil, err
	}
	var tier string
	var n, bal, od int64
	if _, err := pgx.ForEachRow(rows, []any{&tier, &n, &bal, &od}, func() error {
		t.Tiers[tier], t.Members, t.Outstanding, t.Overdrawn = n, t.Members+n, t.Outstanding+bal, t.Overdrawn+od
		return nil
	}); err != nil {
		return nil, err
	}
	rows, err = pool.Query(ctx, `SELECT month,
			coalesce(sum(points) FILTER (WHERE kind = 'earn'), 0), coalesce(sum(points) FILTER (WHERE kind = 'bonus'), 0),
			coalesce(-sum(points) FILTER (WHERE kind IN ('redeem', 'overdraft') AND points < 0), 0),
			coalesce(-sum(points) FILTER (WHERE kind = 'expire'), 0), coalesce(-sum(points) FILTER (WHERE kind = 'reverse'), 0),
			coalesce(sum(points) FILTER (WHERE kind = 'adjust'), 0), coalesce(sum(points), 0)
		FROM `+s+`.entries GROUP BY month ORDER BY month`)
	if err != nil {
		return nil, err
	}
	var m int32
	var mt loyalty.MonthTotal
	_, err = pgx.ForEachRow(rows, []any{&m, &mt.Earned, &mt.Bonus, &mt.Redeemed, &mt.Expired, &mt.Reversed, &mt.Adjusted, &mt.Net}, func() error {
		mt.Month = fmt.Sprintf("%04d-%02d", m/12, m%12+1)
		t.Months = append(t.Months, mt)
		return nil
	})
	return t, err
}

type entryRow struct {
	Kind, Rules string
	Points      int64
}

func ledgerOf(t *testing.T, pool *pgxpool.Pool, target, customer string) []entryRow {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT kind, rules, points FROM `+pgx.Identifier{target, "entries"}.Sanitize()+
		` WHERE customer_id = $1 ORDER BY n`, customer)
	if err != nil {
		t.Fatal(err)
	}
	var out []entryRow
	var r entryRow
	if _, err := pgx.ForEachRow(rows, []any{&r.Kind, &r.Rules, &r.Points}, func() error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRulesActivatedInTheLog: a rule version applies from its activation in the log;
// a blue/green rebuild pinned to a version recomputes history under it; the club's
// queries answer from the ledger.
func TestRulesActivatedInTheLog(t *testing.T) {
	e := conformance.NewLog(t)
	rs := rules(t)
	cst := time.FixedZone("CST", 8*3600)
	const store = "urn:touchstream:channel:store"
	plan := events.Plan{ID: "4G-58", Name: "4G 58", Kind: "prepaid", MonthlyFee: events.CNY(5800)}
	recharge := func(id string, at time.Time, yuan int64) *events.Event {
		return conformance.Event(t, "C-LOY-1", "urn:touchstream:channel:recharge", at,
			events.RechargeCompleted{RechargeID: id, Amount: events.CNY(yuan * 100), Credited: events.CNY(yuan * 100), Method: "cash"})
	}
	// Before any activation the club is closed.
	e.Publish(t, recharge("R0", time.Date(2025, 12, 20, 10, 0, 0, 0, cst), 50))
	e.PartitionWide(t, "urn:touchstream:service:loyalty-admin", time.Date(2026, 1, 1, 0, 0, 0, 0, cst), events.LoyaltyRulesActivated{Version: "2026-01", EffectiveAt: time.Date(2026, 1, 1, 0, 0, 0, 0, cst)})
	e.Publish(t,
		conformance.Event(t, "C-LOY-1", store, time.Date(2026, 9, 20, 10, 0, 0, 0, cst), events.CustomerRegistered{
			Name: events.Clear("测试"), Phone: events.Clear("13800138000"), CustomerType: "individual", Region: "CN-GD-SZ", Plan: plan}),
		recharge("R1", time.Date(2026, 9, 25, 10, 0, 0, 0, cst), 100),
	)
	e.PartitionWide(t, "urn:touchstream:service:loyalty-admin", time.Date(2026, 10, 1, 0, 0, 0, 0, cst), events.LoyaltyRulesActivated{Version: "2026-10", EffectiveAt: time.Date(2026, 10, 1, 0, 0, 0, 0, cst)})
	e.Publish(t, recharge("R2", time.Date(2026, 10, 3, 10, 0, 0, 0, cst), 100)) // National Day: double
	const admin = "urn:touchstream:service:loyalty-admin"
	e.Publish(t,
		conformance.Event(t, "C-LOY-1", admin, time.Date(2026, 10, 5, 9, 0, 0, 0, cst), events.PointsAdjusted{AdjustmentID: "ADJ-1", Points: 50, Reason: "goodwill", Operator: "op-1"}),
		conformance.Event(t, "C-LOY-1", admin, time.Date(2026, 10, 6, 9, 0, 0, 0, cst), events.PointsAdjusted{AdjustmentID: "ADJ-2", Points: -20, Reason: "duplicate import", Operator: "op-1"}),
	)

	live, err := loyalty.New(loyalty.Options{Target: "loyalty_v1", Rules: rs})
	if err != nil {
		t.Fatal(err)
	}
	e.Fold(t, live, 0)
	got := ledgerOf(t, e.Pool, "loyalty_v1", "C-LOY-1")
	want := []entryRow{{"bonus", "2026-01", 200}, {"earn", "2026-01", 100}, {"earn", "2026-10", 200}, {"adjust", "2026-10", 50}, {"adjust", "2026-10", -20}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ledger under the activated versions: %v, want %v", got, want)
	}
	if n, err := loyalty.Available(t.Context(), e.Pool, "loyalty_v1", "C-LOY-1", time.Date(2026, 10, 7, 0, 0, 0, 0, cst)); err != nil || n != 530 {
		t.Fatalf("available: %d %v, want 530", n, err)
	}
	// As of a date before the October recharge, the ledger knew 300.
	if n, _ := loyalty.Available(t.Context(), e.Pool, "loyalty_v1", "C-LOY-1", time.Date(2026, 9, 30, 0, 0, 0, 0, cst)); n != 300 {
		t.Fatalf("available as of 30 September: %d, want 300", n)
	}
	// The points expire at the end of the twelfth month after earning.
	// The -20 consumed September's lots first (oldest expiry): October's 250 remain.
	if n, _ := loyalty.Available(t.Context(), e.Pool, "loyalty_v1", "C-LOY-1", time.Date(2027, 10, 1, 0, 0, 0, 0, cst)); n != 250 {
		t.Fatalf("available on 1 October 2027: %d, want 250 (September's lots expired)", n)
	}

	// A rebuild pinned to 2026-10: the whole history under it (joining bonus 300).
	res, err := projections.Rebuild(t.Context(), e.Deps, projections.RebuildSpec{Projection: loyalty.Name, Pin: "2026-10",
		New: func(target string) (projections.Projection, error) {
			return loyalty.New(loyalty.Options{Target: target, Rules: rs, Pin: "2026-10"})
		}})
	if err != nil {
		t.Fatal(err)
	}
	got = ledgerOf(t, e.Pool, res.Target, "C-LOY-1")
	want = []entryRow{{"earn", "2026-10", 50}, {"bonus", "2026-10", 300}, {"earn", "2026-10", 100}, {"earn", "2026-10", 200}, {"adjust", "2026-10", 50}, {"adjust", "2026-10", -20}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ledger of the rebuild pinned to 2026-10: %v, want %v", got, want)
	}
	if pin, _ := projections.TargetPin(t.Context(), e.Pool, res.Target); pin != "2026-10" {
		t.Fatalf("pin recorded: %q", pin)
	}

	totals, err := loyalty.ClubTotals(t.Context(), e.Pool, "loyalty_v1", 24)
	if err != nil {
		t.Fatal(err)
	}
	if totals.Members != 1 || totals.Outstanding != 530 || len(totals.Months) != 2 || totals.Months[0].Month != "2026-09" ||
		totals.Months[0].Earned != 100 || totals.Months[0].Bonus != 200 || totals.Months[1].Earned != 200 || totals.Months[1].Adjusted != 30 {
		t.Fatalf("club totals: %+v", totals)
	}
	acct, err := loyalty.AccountOf(t.Context(), e.Pool, "loyalty_v1", rs, "C-LOY-1", time.Time{}, 10)
	if err != nil || acct.Balance != 530 || len(acct.Lots) != 4 || acct.Progress.Next == "" || len(acct.Entries) != 5 {
		t.Fatalf("account: %+v %v", acct, err)
	}
}

// TestSignalsThroughTheOutbox: an upgrade and an overdraft (a redemption larger than
// the balance, as imported history can hold) become signals in the outbox, in the
// fold's transaction; a rebuild of the same log emits none.
func TestSignalsThroughTheOutbox(t *testing.T) {
	e := conformance.NewLog(t)
	rs := rules(t)
	cst := time.FixedZone("CST", 8*3600)
	e.PartitionWide(t, "urn:touchstream:service:loyalty-admin", time.Date(2026, 1, 1, 0, 0, 0, 0, cst), events.LoyaltyRulesActivated{Version: "2026-01", EffectiveAt: time.Date(2026, 1, 1, 0, 0, 0, 0, cst)})
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, cst)
	e.Publish(t,
		conformance.Event(t, "C-SIG-1", "urn:touchstream:channel:recharge", at,
			events.RechargeCompleted{RechargeID: "R-BIG", Amount: events.CNY(2000_00), Credited: events.CNY(2000_00), Method: "cash"}), // 2,000 points: silver
		conformance.Event(t, "C-SIG-2", "urn:touchstream:service:redemption", at,
			events.PointsRedeemed{RedemptionID: "IMP-1", Points: 300, Partner: "legacy", Item: "imported"}), // nothing to spend: overdraft
	)
	live, err := loyalty.New(loyalty.Options{Target: "loyalty_v1", Rules: rs, Outbox: true})
	if err != nil {
		t.Fatal(err)
	}
	e.Fold(t, live, 0)
	type sig struct{ Type, Customer string }
	read := func(q string) []sig {
		t.Helper()
		rows, err := e.Pool.Query(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		var out []sig
		var s sig
		if _, err := pgx.ForEachRow(rows, []any{&s.Type, &s.Customer}, func() error { out = append(out, s); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := fmt.Sprint([]sig{{loyalty.SignalOverdraft, "C-SIG-2"}, {loyalty.SignalTierChanged, "C-SIG-1"}})
	if got := read(`SELECT type, customer_id FROM loyalty_v1.signals ORDER BY type`); fmt.Sprint(got) != want {
		t.Fatalf("signals recorded: %v, want %v", got, want)
	}
	if got := read(`SELECT payload->>'type', payload->>'customer' FROM outbox.signals ORDER BY 1`); fmt.Sprint(got) != want {
		t.Fatalf("signals in the outbox: %v, want %v", got, want)
	}
	res, err := projections.Rebuild(t.Context(), e.Deps, projections.RebuildSpec{Projection: loyalty.Name,
		New: func(target string) (projections.Projection, error) {
			return loyalty.New(loyalty.Options{Target: target, Rules: rs, Outbox: true})
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(`SELECT type, customer_id FROM ` + res.Target + `.signals`); len(got) != 0 {
		t.Fatalf("the rebuild emitted %v", got)
	}
	if got := read(`SELECT payload->>'type', payload->>'customer' FROM outbox.signals`); len(got) != 2 {
		t.Fatalf("the outbox holds %d signals after the rebuild, want the live 2", len(got))
	}
}
