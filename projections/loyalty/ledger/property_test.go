package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/touchstream/touchstream/events"
)

// Property tests fold random event streams, from fixed seeds, under the deployed
// rules and under random rule sets (short expiries, small caps, frequent reviews, so
// that every path is taken).

const propertyCases = 1500

// invariants are what must hold after every event.
func invariants(m *Member) error {
	var errs []error
	if got, want := sumEntries(m), m.Balance(m.Now); got != want {
		errs = append(errs, fmt.Errorf("sum of entries %d != Balance(Now) %d", got, want))
	}
	var lots int64
	for i, l := range m.Lots {
		if !l.ExpiresAt.After(m.Now) {
			errs = append(errs, fmt.Errorf("lot %d expired at %s still held at %s", l.ID, l.ExpiresAt, m.Now))
		}
		if l.Remaining <= 0 || l.Remaining > l.Points {
			errs = append(errs, fmt.Errorf("lot %d remaining %d of %d", l.ID, l.Remaining, l.Points))
		}
		if i > 0 && (l.ExpiresAt.Before(m.Lots[i-1].ExpiresAt) || l.ExpiresAt.Equal(m.Lots[i-1].ExpiresAt) && l.ID < m.Lots[i-1].ID) {
			errs = append(errs, fmt.Errorf("lot %d out of expiry order", l.ID))
		}
		lots += l.Remaining
	}
	if m.Overdraft < 0 || (m.Overdraft > 0 && len(m.Lots) > 0) {
		errs = append(errs, fmt.Errorf("overdraft %d with %d lots", m.Overdraft, len(m.Lots)))
	}
	// The recorded balance goes below zero only through explicit overdraft entries:
	// what is owed is exactly the overdraft entries less what new points repaid.
	var owed int64
	for _, e := range m.Entries {
		switch e.Kind {
		case KindOverdraft:
			owed -= e.Points
			if e.Points >= 0 {
				errs = append(errs, fmt.Errorf("overdraft entry of %d", e.Points))
			}
		case KindRedeem, KindReverse, KindExpire:
			var used int64
			for _, u := range e.Lots {
				used += u.Points
			}
			if e.Points > 0 || used != -e.Points {
				errs = append(errs, fmt.Errorf("%s entry of %d used %d from lots", e.Kind, e.Points, used))
			}
		case KindEarn, KindBonus:
			if e.Points < 0 || e.Repaid > e.Points {
				errs = append(errs, fmt.Errorf("%s entry of %d repaid %d", e.Kind, e.Points, e.Repaid))
			}
		case KindRetract:
			if e.Points != 0 {
				errs = append(errs, fmt.Errorf("retract entry of %d", e.Points))
			}
		}
		owed -= e.Repaid
	}
	if owed != m.Overdraft {
		errs = append(errs, fmt.Errorf("overdraft %d, overdraft entries less repayments %d", m.Overdraft, owed))
	}
	if b := m.Balance(m.Now); b != lots-m.Overdraft || (b < 0 && owed == 0) {
		errs = append(errs, fmt.Errorf("balance %d, lots %d, overdraft %d", b, lots, m.Overdraft))
	}
	return errors.Join(errs...)
}

var sources = []string{srcStore, srcOnline, srcRecharge, "urn:touchstream:channel:crm-import"}

// randomRules builds a valid two-version rule set and a schedule that switches
// between them somewhere in [from, from+2y).
func randomRules(rng *rand.Rand, from time.Time) (Rulebook, error) {
	version := func(id string) Rules {
		rate := func() Rate {
			r := Rate{DefaultPointsPerYuan: rng.Int64N(4)}
			if rng.IntN(2) == 0 {
				r.Rates = append(r.Rates, RateMatch{Source: srcOnline, PointsPerYuan: rng.Int64N(6)})
			}
			if rng.IntN(2) == 0 {
				r.Rates = append(r.Rates, RateMatch{PlanKind: PlanPostpaid, PointsPerYuan: rng.Int64N(6)})
			}
			return r
		}
		r := Rules{ID: id, Earning: Earning{Recharge: rate(), BillPayment: rate()},
			JoiningBonusPoints: rng.Int64N(3) * 100,
			Expiry:             Expiry{Months: 1 + rng.IntN(6), Align: []string{"end_of_month", "exact"}[rng.IntN(2)]},
			Tiers: Tiers{WindowMonths: 1 + rng.IntN(12), ReviewEveryMonths: []int{1, 2, 3, 6, 12}[rng.IntN(5)],
				Levels: []Level{{Name: "member", MultiplierPercent: 100, AnniversaryBonusPoints: rng.Int64N(200)}}},
		}
		minPts := int64(0)
		for _, name := range []string{"silver", "gold", "platinum"}[:rng.IntN(4)] {
			minPts += 100 + rng.Int64N(2000)
			r.Tiers.Levels = append(r.Tiers.Levels, Level{Name: name, MinQualifyingPoints: minPts,
				MultiplierPercent: 100 + rng.Int64N(150), AnniversaryBonusPoints: rng.Int64N(1000)})
		}
		for i := range rng.IntN(4) {
			start := from.AddDate(0, 0, rng.IntN(800))
			c := Campaign{ID: fmt.Sprintf("c%d", i), Start: start.Format("2006-01-02T15:04"),
				End:               start.Add(time.Duration(1+rng.IntN(30*24)) * time.Hour).Format("2006-01-02T15:04"),
				MultiplierPercent: 100 + rng.Int64N(300)}
			if rng.IntN(2) == 0 {
				c.EventTypes = []string{events.TypeRechargeCompleted}
			}
			r.Campaigns = append(r.Campaigns, c)
		}
		if rng.IntN(2) == 0 {
			r.Caps = append(r.Caps, Cap{Period: "month", Points: 200 + rng.Int64N(3000)})
		}
		if rng.IntN(3) == 0 {
			r.Caps = append(r.Caps, Cap{Period: "year", Points: 2000 + rng.Int64N(20000)})
		}
		return r
	}
	rs := &RuleSet{TimeZone: "Asia/Shanghai", Versions: []Rules{version("a"), version("b")}}
	if err := rs.Validate(); err != nil {
		return nil, err
	}
	return rs.Schedule(Activation{Version: "a"}, Activation{Version: "b", Effective: from.Add(time.Duration(rng.Int64N(int64(2 * 365 * 24 * time.Hour))))})
}

// randomStream makes a member's events: mostly moving forward in time, some late,
// some silent stretches, with reversals, redemptions beyond the balance, plan changes,
// retractions of any earlier event and events the ledger ignores.
func randomStream(rng *rand.Rand, from time.Time) []Event {
	n := 5 + rng.IntN(80)
	cur := from
	var evs []Event
	var recharges []events.EventRef
	for i := range n {
		switch d := rng.IntN(100); {
		case d < 5 && len(evs) > 0: // late: before the latest time
			cur = cur.Add(-time.Duration(rng.Int64N(int64(15 * 24 * time.Hour))))
		case d < 12: // a silent stretch
			cur = cur.Add(time.Duration(rng.Int64N(int64(300 * 24 * time.Hour))))
		default:
			cur = cur.Add(time.Duration(rng.Int64N(int64(20 * 24 * time.Hour))))
		}
		at := cur
		if len(evs) > 0 {
			if last := evs[len(evs)-1].Time; rng.IntN(20) == 0 {
				at = last // same instant as the previous event
			}
		}
		ref := events.EventRef{Source: sources[rng.IntN(len(sources))], ID: fmt.Sprintf("e%d", i)}
		kind := func() string { return []string{PlanPrepaid, PlanPostpaid}[rng.IntN(2)] }
		var data any
		switch k := rng.IntN(100); {
		case k < 6:
			data = events.CustomerRegistered{CustomerType: "individual", Region: "GZ", Plan: events.Plan{ID: "p", Kind: kind()}}
		case k < 36:
			fen := []int64{3000, 5000, 10000, 20000, 50000}[rng.IntN(5)]
			if rng.IntN(4) == 0 {
				fen = 1 + rng.Int64N(300000)
			}
			data = events.RechargeCompleted{RechargeID: ref.ID, Amount: events.CNY(fen), Credited: events.CNY(fen), Method: "alipay"}
			if rng.IntN(2) == 0 {
				data = &events.RechargeCompleted{RechargeID: ref.ID, Amount: events.CNY(fen), Method: "alipay"}
			}
			recharges = append(recharges, ref)
		case k < 50:
			data = events.BillPaid{BillID: ref.ID, Amount: events.CNY(1 + rng.Int64N(200000)), Method: "bank_card"}
		case k < 58:
			target := events.EventRef{Source: srcRecharge, ID: "unknown"}
			if len(recharges) > 0 && rng.IntN(8) > 0 {
				target = recharges[rng.IntN(len(recharges))]
			}
			data = events.RechargeReversed{Recharge: target, Amount: events.CNY(1 + rng.Int64N(60000)), Reason: "refund"}
		case k < 74:
			pts := 1 + rng.Int64N(1500)
			if rng.IntN(6) == 0 {
				pts = 1 + rng.Int64N(20000)
			}
			data = &events.PointsRedeemed{RedemptionID: ref.ID, Points: pts, Partner: "jd", Item: "voucher"}
		case k < 78:
			data = events.PlanChanged{To: events.Plan{ID: "q", Kind: kind()}, Direction: "lateral"}
		case k < 82:
			p := rng.Int64N(1000) - 500
			if p == 0 {
				p = 1
			}
			data = Adjustment{Points: p, Reason: "goodwill"}
		case k < 87 && len(evs) > 0:
			target := evs[rng.IntN(len(evs))].Ref
			data = events.EventRetracted{Target: target, Reason: "entered in error"}
		case k < 94:
			data = events.ClockTicked{Period: "day", Tick: at}
		default:
			data = events.StoreVisited{StoreID: "s", Purpose: "inquiry", DurationSeconds: 60}
		}
		evs = append(evs, Event{Ref: ref, Time: at, Data: data})
	}
	return evs
}

// propertyCase sets up one seeded case: rules (the deployed ones or random) and a stream.
func propertyCase(t *testing.T, deploy Rulebook, seed uint64) (Rulebook, []Event, *rand.Rand) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x10a1))
	from := local(2025, 6, 1, 0, 0).Add(time.Duration(rng.Int64N(int64(500 * 24 * time.Hour))))
	book := deploy
	if seed%2 == 1 {
		var err error
		if book, err = randomRules(rng, from); err != nil {
			t.Fatalf("seed %d: random rules: %v", seed, err)
		}
	}
	return book, randomStream(rng, from), rng
}

// foldLive applies events one at a time as the projection does, recomputing the
// member from the prefix when a retraction asks for it, with a JSON round trip of
// the state after each index in cuts (a batch boundary).
func foldLive(book Rulebook, evs []Event, cuts map[int]bool, each func(i int, m *Member) error) (*Member, error) {
	m := &Member{}
	for i, ev := range evs {
		out, err := m.Apply(book, ev)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		if out.Recompute {
			if m, err = Recompute(book, evs[:i+1]); err != nil {
				return nil, err
			}
		}
		if each != nil {
			if err := each(i, m); err != nil {
				return nil, fmt.Errorf("after event %d (%T): %w", i, ev.Data, err)
			}
		}
		if cuts[i] {
			b, err := json.Marshal(m)
			if err != nil {
				return nil, err
			}
			if m, err = Decode(b); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func mustJSON(t *testing.T, m *Member) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var equateEmpty = cmpopts.EquateEmpty()

// TestPropertyLedger: over random streams, at every step the entries sum to the
// balance, no expired lot is counted, the balance is negative only through overdraft
// entries; a tick into the future expires exactly the lots Balance(future) already
// left out; folding in random batches with a JSON round trip between them, and
// recomputing from scratch, give the live state byte for byte; and reversals that
// add up to a recharge take all of its points back.
func TestPropertyLedger(t *testing.T) {
	deploy := deployBook(t)
	var entries, overdrafts, recomputes, expiries int
	for seed := range uint64(propertyCases) {
		book, evs, rng := propertyCase(t, deploy, seed)
		live, err := foldLive(book, evs, nil, func(i int, m *Member) error {
			if err := invariants(m); err != nil {
				return err
			}
			if i%8 != 0 {
				return nil
			}
			// Balance(future) counts no lot expired by then: a clock tick to that time
			// (through a JSON copy) changes the balance only by the bonuses it grants.
			future := m.Now.Add(time.Duration(rng.Int64N(int64(500 * 24 * time.Hour))))
			want := m.Balance(future)
			c, err := Decode(mustJSON(t, m))
			if err != nil {
				return err
			}
			out, err := c.Apply(book, Event{Ref: events.EventRef{Source: srcClock, ID: "probe"}, Time: future, Data: tick(future)})
			if err != nil {
				return err
			}
			for _, e := range out.Entries {
				switch e.Kind {
				case KindBonus:
					want += e.Points
				case KindExpire:
					expiries++
					if e.At.After(future) {
						return fmt.Errorf("lot expired at %s by a tick at %s", e.At, future)
					}
					if e.Lots[0].Lot > m.NextLot { // a bonus lot the tick granted, and expired
						want += e.Points
					}
				default:
					return fmt.Errorf("a clock tick wrote a %s entry", e.Kind)
				}
			}
			if got := c.Balance(future); got != want {
				return fmt.Errorf("Balance(%s) predicted %d, after the tick %d", future, want, got)
			}
			return invariants(c)
		})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		want := mustJSON(t, live)

		cuts := map[int]bool{}
		for i := range evs {
			if rng.IntN(6) == 0 {
				cuts[i] = true
			}
		}
		chunked, err := foldLive(book, evs, cuts, nil)
		if err != nil {
			t.Fatalf("seed %d: chunked: %v", seed, err)
		}
		if got := mustJSON(t, chunked); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: chunked fold differs from one fold (-one +chunked):\n%s", seed, cmp.Diff(live, chunked, equateEmpty))
		}
		again, err := Recompute(book, evs)
		if err != nil {
			t.Fatalf("seed %d: recompute: %v", seed, err)
		}
		if got := mustJSON(t, again); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: Recompute differs from the live fold (-live +recompute):\n%s", seed, cmp.Diff(live, again, equateEmpty))
		}

		if err := reversalsTakeBack(live); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		entries += len(live.Entries)
		if live.Overdraft > 0 || slices.ContainsFunc(live.Entries, func(e Entry) bool { return e.Kind == KindOverdraft }) {
			overdrafts++
		}
		if slices.ContainsFunc(live.Entries, func(e Entry) bool { return e.Kind == KindRetract }) {
			recomputes++
		}
	}
	t.Logf("%d streams, %d entries; %d with overdrafts, %d with retractions recomputed, %d expiries probed",
		propertyCases, entries, overdrafts, recomputes, expiries)
	if overdrafts == 0 || recomputes == 0 || expiries == 0 {
		t.Errorf("the generator missed a path: overdrafts %d, recomputes %d, expiries %d", overdrafts, recomputes, expiries)
	}
}

// reversalsTakeBack: for every recharge, reversals never take back more than it
// earned, and reversals adding up to its amount take back exactly its points and
// qualifying points.
func reversalsTakeBack(m *Member) error {
	for _, earn := range m.Entries {
		if earn.Kind != KindEarn {
			continue
		}
		var fen, pts, qual int64
		for _, e := range m.Entries {
			if e.Target != earn.Event || e.Kind == KindRetract {
				continue
			}
			pts -= e.Points
			if e.Kind == KindReverse {
				fen += e.SpendFen
				qual -= e.Qualifying
			}
		}
		if pts > earn.Points || qual > earn.Qualifying || fen > earn.SpendFen {
			return fmt.Errorf("recharge %v: took back %d points, %d qualifying, %d fen of %+v", earn.Event, pts, qual, fen, earn)
		}
		if fen == earn.SpendFen && fen > 0 && (pts != earn.Points || qual != earn.Qualifying) {
			return fmt.Errorf("recharge %v fully reversed: took back %d points, %d qualifying of %d, %d", earn.Event, pts, qual, earn.Points, earn.Qualifying)
		}
	}
	return nil
}

// withoutMarkers drops the 0-point retract markers, the one trace a retraction leaves.
func withoutMarkers(m *Member) *Member {
	c := *m
	c.Entries = slices.DeleteFunc(slices.Clone(m.Entries), func(e Entry) bool { return e.Kind == KindRetract })
	return &c
}

// TestPropertyRetraction: retracting any event leaves the member as if the event had
// never been in the log, only its time passing (a clock tick in its place), but for
// the retract marker: the live fold with the retraction equals that fold.
func TestPropertyRetraction(t *testing.T) {
	deploy := deployBook(t)
	var recomputed int
	for seed := range uint64(propertyCases) {
		book, evs, rng := propertyCase(t, deploy, seed+1_000_000)
		var candidates []int
		for i, ev := range evs {
			if _, ok := payload(ev.Data).(events.EventRetracted); !ok {
				candidates = append(candidates, i)
			}
		}
		if len(candidates) == 0 {
			continue
		}
		x := candidates[rng.IntN(len(candidates))]
		latest := evs[0].Time
		for _, ev := range evs {
			if ev.Time.After(latest) {
				latest = ev.Time
			}
		}
		at := latest.Add(time.Duration(rng.Int64N(int64(40 * 24 * time.Hour))))
		r := Event{Ref: events.EventRef{Source: srcStore, ID: "retraction"}, Time: at,
			Data: &events.EventRetracted{Target: evs[x].Ref, Reason: "entered in error"}}

		with, err := foldLive(book, append(slices.Clone(evs), r), nil, func(_ int, m *Member) error { return invariants(m) })
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		never := append(slices.Clone(evs), r)
		never[x] = Event{Ref: events.EventRef{Source: srcClock, ID: "instead"}, Time: evs[x].Time, Data: tick(evs[x].Time)}
		without, err := foldLive(book, never, nil, nil)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if got, want := mustJSON(t, withoutMarkers(with)), mustJSON(t, withoutMarkers(without)); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: retracting event %d (%T) differs from never having it (-never +retracted):\n%s",
				seed, x, evs[x].Data, cmp.Diff(withoutMarkers(without), withoutMarkers(with), equateEmpty))
		}
		if len(with.Entries) != len(without.Entries) {
			recomputed++
		}
	}
	t.Logf("%d retractions, %d of them recomputed a ledger", propertyCases, recomputed)
	if recomputed == 0 {
		t.Error("no retraction touched a ledger")
	}
}

// TestExpiryFollowsEventTimeOnly: the same events give the same state whatever zone
// their times are written in and whatever the process's local zone; and the package
// never reads the wall clock.
func TestExpiryFollowsEventTimeOnly(t *testing.T) {
	deploy := deployBook(t)
	zones := []*time.Location{time.UTC, mustZone("America/New_York"), time.FixedZone("odd", -(9*3600 + 30*60))}
	saved := time.Local
	t.Cleanup(func() { time.Local = saved })
	for seed := range uint64(200) {
		book, evs, _ := propertyCase(t, deploy, seed+2_000_000)
		time.Local = saved
		base, err := foldLive(book, evs, nil, nil)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		want := mustJSON(t, base)
		for _, z := range zones {
			time.Local = z
			shifted := slices.Clone(evs)
			for i := range shifted {
				shifted[i].Time = shifted[i].Time.In(z)
			}
			got, err := foldLive(book, shifted, nil, nil)
			if err != nil {
				t.Fatalf("seed %d zone %s: %v", seed, z, err)
			}
			if !bytes.Equal(mustJSON(t, got), want) {
				t.Fatalf("seed %d: times written in %s give another state:\n%s", seed, z, cmp.Diff(base, got, equateEmpty))
			}
		}
	}

	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "time" &&
				slices.Contains([]string{"Now", "Since", "Until", "Tick", "After", "AfterFunc", "NewTimer", "NewTicker", "Sleep"}, sel.Sel.Name) {
				t.Errorf("%s: time.%s: the ledger must use event time only", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}

func TestDecodeRejectsOtherVersions(t *testing.T) {
	if _, err := Decode([]byte(`{"v":2}`)); err == nil || !strings.Contains(err.Error(), "v: 2: want 1") {
		t.Errorf("Decode(v 2) error = %v, want the version named", err)
	}
	if _, err := Decode([]byte(`{"v":1,"balance":3}`)); err == nil || !strings.Contains(err.Error(), `unknown field "balance"`) {
		t.Errorf("Decode(unknown field) error = %v, want it named", err)
	}
}

func TestApplyRejectsInvalidEvents(t *testing.T) {
	book := deployBook(t)
	at := local(2026, 5, 1, 10, 0)
	ref := events.EventRef{Source: srcStore, ID: "1"}
	for _, tc := range []struct {
		name string
		ev   Event
		want string
	}{
		{"no id", Event{Ref: events.EventRef{Source: srcStore}, Time: at}, "id: required"},
		{"no time", Event{Ref: ref}, "time: required"},
		{"negative recharge", Event{Ref: ref, Time: at, Data: events.RechargeCompleted{Amount: events.CNY(-1)}}, "amount.fen: -1: must be positive"},
		{"foreign currency", Event{Ref: ref, Time: at, Data: events.BillPaid{Amount: events.Money{Fen: 100, Currency: "USD"}}}, `amount.currency: "USD"`},
		{"zero redemption", Event{Ref: ref, Time: at, Data: events.PointsRedeemed{}}, "points: 0: must be 1-1000000000000"},
		{"reversal without recharge", Event{Ref: ref, Time: at, Data: events.RechargeReversed{Amount: events.CNY(100)}}, "recharge: source and id required"},
		{"retraction without target", Event{Ref: ref, Time: at, Data: events.EventRetracted{}}, "target: source and id required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Member{}
			before := mustJSON(t, m)
			_, err := m.Apply(book, tc.ev)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply error = %v, want %q", err, tc.want)
			}
			if !bytes.Equal(mustJSON(t, m), before) {
				t.Error("a failed Apply changed the member")
			}
		})
	}
	s, err := loadDeploy(t).Schedule(Activation{Version: "2026-10", Effective: local(2026, 10, 1, 0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&Member{}).Apply(s, Event{Ref: ref, Time: at, Data: recharge(10)}); !errors.Is(err, ErrNoRules) {
		t.Errorf("Apply before any activation: error = %v, want ErrNoRules", err)
	}
}
