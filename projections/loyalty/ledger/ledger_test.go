package ledger

import (
	"fmt"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
)

const (
	srcStore    = "urn:touchstream:channel:store"
	srcOnline   = "urn:touchstream:channel:online"
	srcRecharge = "urn:touchstream:channel:recharge"
	srcClub     = "urn:touchstream:channel:club"
	srcClock    = "urn:touchstream:scheduler"
)

// deployBook is the club's schedule as the log would hold it: 2026-01 from the start,
// 2026-10 from National Day.
func deployBook(t *testing.T) Rulebook {
	t.Helper()
	s, err := loadDeploy(t).Schedule(
		Activation{Version: "2026-01"},
		Activation{Version: "2026-10", Effective: local(2026, 10, 1, 0, 0)},
	)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// script builds a member's events with unique ids.
type script struct{ evs []Event }

func (s *script) add(source string, at time.Time, data any) events.EventRef {
	ref := events.EventRef{Source: source, ID: fmt.Sprintf("e%d", len(s.evs)+1)}
	s.evs = append(s.evs, Event{Ref: ref, Time: at, Data: data})
	return ref
}

func register(kind string) events.CustomerRegistered {
	return events.CustomerRegistered{CustomerType: "individual", Region: "GZ", Plan: events.Plan{ID: "p1", Kind: kind}}
}

func recharge(yuan int64) events.RechargeCompleted {
	return events.RechargeCompleted{RechargeID: "r", Amount: events.CNY(yuan * 100), Credited: events.CNY(yuan * 100), Method: "wechat_pay"}
}

func redeem(points int64) events.PointsRedeemed {
	return events.PointsRedeemed{RedemptionID: "x", Points: points, Partner: "jd", Item: "voucher-50"}
}

func tick(at time.Time) events.ClockTicked { return events.ClockTicked{Period: "day", Tick: at} }

// run applies the script's events one by one and returns the member and each outcome.
func run(t *testing.T, book Rulebook, evs []Event) (*Member, []Outcome) {
	t.Helper()
	m := &Member{}
	var outs []Outcome
	for i, ev := range evs {
		out, err := m.Apply(book, ev)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if out.Recompute {
			if m, err = Recompute(book, evs[:i+1]); err != nil {
				t.Fatalf("recompute at %d: %v", i, err)
			}
		}
		if err := invariants(m); err != nil {
			t.Fatalf("after event %d (%T): %v", i, ev.Data, err)
		}
		outs = append(outs, out)
	}
	return m, outs
}

func sumEntries(m *Member) int64 {
	var s int64
	for _, e := range m.Entries {
		s += e.Points
	}
	return s
}

func kinds(es []Entry) string {
	var s string
	for i, e := range es {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s%+d", e.Kind, e.Points)
	}
	return s
}

func TestEarning(t *testing.T) {
	book := deployBook(t)
	var s script
	s.add(srcStore, local(2026, 3, 10, 14, 0), register(PlanPrepaid))
	s.add(srcOnline, local(2026, 3, 12, 9, 0), recharge(100))                                            // 2/yuan online
	s.add(srcStore, local(2026, 3, 13, 9, 0), events.RechargeCompleted{Amount: events.CNY(1234)})        // 12.34 yuan: floor
	s.add(srcStore, local(2026, 10, 3, 20, 0), recharge(100))                                            // national day: double
	s.add(srcOnline, local(2026, 10, 9, 20, 0), &events.BillPaid{BillID: "b", Amount: events.CNY(5000)}) // prepaid plan: default rate
	s.add(srcStore, local(2026, 10, 10, 8, 0), events.StoreVisited{StoreID: "s1", Purpose: "inquiry"})   // no points
	m, _ := run(t, book, s.evs)

	if got, want := kinds(m.Entries), "bonus+200 earn+200 earn+12 earn+200 earn+50"; got != want {
		t.Fatalf("entries = %s, want %s", got, want)
	}
	if e := m.Entries[3]; e.Campaign != "national-day-2026" || e.Rules != "2026-10" || e.Qualifying != 100 {
		t.Errorf("national day entry = %+v, want campaign national-day-2026, rules 2026-10, qualifying 100", e)
	}
	if e := m.Entries[1]; e.Rules != "2026-01" || e.Qualifying != 200 || e.SpendFen != 10000 {
		t.Errorf("online entry = %+v, want rules 2026-01, qualifying 200, spend 10000", e)
	}
	if got, want := m.Balance(m.Now), int64(662); got != want {
		t.Errorf("Balance = %d, want %d", got, want)
	}
	// The joining bonus of March 2026 expires at the end of March 2027.
	if l := m.Lots[0]; l.Source != s.evs[0].Ref || !l.ExpiresAt.Equal(local(2027, 4, 1, 0, 0)) {
		t.Errorf("first lot = %+v, want the joining bonus expiring 2027-04-01 local", l)
	}
	if got, want := m.Balance(local(2027, 4, 1, 0, 0)), int64(662-200-200-12); got != want {
		t.Errorf("Balance(2027-04-01) = %d, want %d: lots expiring by then do not count", got, want)
	}
	if got, want := m.Balance(local(2026, 3, 12, 9, 0)), int64(400); got != want {
		t.Errorf("Balance(2026-03-12 09:00) = %d, want %d: entries dated by then", got, want)
	}
}

func TestCapsAndTiers(t *testing.T) {
	book := deployBook(t)
	var s script
	s.add(srcStore, local(2026, 1, 5, 10, 0), register(PlanPrepaid))
	s.add(srcStore, local(2026, 1, 20, 10, 0), recharge(500))
	s.add(srcStore, local(2026, 2, 20, 10, 0), recharge(500))
	s.add(srcStore, local(2026, 3, 2, 10, 0), recharge(500)) // 1500 qualifying: silver at once
	s.add(srcStore, local(2026, 3, 3, 10, 0), recharge(500)) // silver earns 110%
	s.add(srcOnline, local(2026, 3, 4, 10, 0), recharge(20000))
	m, outs := run(t, book, s.evs)

	if got := outs[3].TierChanges; len(got) != 1 || got[0].To != "silver" || got[0].Reason != "upgrade" {
		t.Fatalf("tier changes at 1500 qualifying = %+v, want an upgrade to silver", got)
	}
	if got, want := m.Entries[4].Points, int64(550); got != want {
		t.Errorf("silver earning = %d, want %d", got, want)
	}
	// 20000 yuan online at 2/yuan: 40000 base points, 44000 at silver (the tier
	// before the event), cut by the month cap to 20000 less the 1050 March already had.
	e := m.Entries[5]
	if got, want := e.Points, int64(20000-500-550); got != want {
		t.Errorf("capped earning = %d, want %d", got, want)
	}
	if got, want := e.Capped, int64(44000)-e.Points; got != want {
		t.Errorf("capped = %d, want %d", got, want)
	}
	if got, want := m.Tier, "platinum"; got != want {
		t.Errorf("tier = %s, want %s", got, want)
	}

	// Silence: no downgrade until the review on 1 January 2027 (the 2026 window
	// qualifies platinum), and none mid-2027 though the rolling window empties.
	var u script
	u.evs = append(u.evs, s.evs...)
	u.add(srcClock, local(2027, 1, 1, 0, 0), tick(local(2027, 1, 1, 0, 0)))
	u.add(srcClock, local(2027, 6, 1, 0, 0), tick(local(2027, 6, 1, 0, 0)))
	m, _ = run(t, book, u.evs)
	if m.Tier != "platinum" {
		t.Fatalf("tier in June 2027 = %s, want platinum until the review", m.Tier)
	}
	if p := m.Progress(mustVersion(t, "2026-10")); p.AtReview != "member" || !p.NextReview.Equal(local(2028, 1, 1, 0, 0)) {
		t.Errorf("progress = %+v, want at review member, next review 2028-01-01", p)
	}
	u.add(srcClock, local(2028, 1, 10, 0, 0), tick(local(2028, 1, 10, 0, 0)))
	m, outs = run(t, book, u.evs)
	last := outs[len(outs)-1]
	if len(last.TierChanges) != 1 || last.TierChanges[0].To != "member" || last.TierChanges[0].Reason != "review" {
		t.Errorf("tier changes at the 2028 review = %+v, want a review to member", last.TierChanges)
	}
	// The anniversaries of 5 January were granted by tier: platinum in 2027, member in
	// 2028 (the review on 1 January came first).
	var bonuses []int64
	for _, e := range m.Entries {
		if e.Kind == KindBonus {
			bonuses = append(bonuses, e.Points)
		}
	}
	if got, want := fmt.Sprint(bonuses), "[200 2000 100]"; got != want {
		t.Errorf("bonuses = %s, want %s", got, want)
	}
}

func mustVersion(t *testing.T, id string) *Rules {
	t.Helper()
	r, err := loadDeploy(t).Version(id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRedemptionExpiryOverdraft(t *testing.T) {
	book := deployBook(t)
	var s script
	s.add(srcStore, local(2026, 1, 10, 10, 0), recharge(300)) // lot 1: expires 2027-02-01
	s.add(srcStore, local(2026, 3, 10, 10, 0), recharge(100)) // lot 2: expires 2027-04-01
	s.add(srcClub, local(2026, 4, 1, 10, 0), redeem(250))     // from lot 1
	s.add(srcClock, local(2027, 2, 1, 0, 0), tick(local(2027, 2, 1, 0, 0)))
	s.add(srcClub, local(2027, 2, 2, 10, 0), redeem(160)) // 100 there: overdraft 60
	s.add(srcStore, local(2027, 2, 3, 10, 0), recharge(100))
	m, outs := run(t, book, s.evs)

	if got, want := kinds(m.Entries), "earn+300 earn+100 redeem-250 expire-50 redeem-100 overdraft-60 earn+100"; got != want {
		t.Fatalf("entries = %s, want %s", got, want)
	}
	if u := m.Entries[2].Lots; len(u) != 1 || u[0] != (LotUse{Lot: 1, Points: 250}) {
		t.Errorf("redemption used %+v, want 250 from lot 1 (oldest expiry)", u)
	}
	if e := m.Entries[3]; !e.At.Equal(local(2027, 2, 1, 0, 0)) || e.Event != s.evs[0].Ref {
		t.Errorf("expiry = %+v, want dated 2027-02-01 local, caused by the first recharge", e)
	}
	if !outs[4].Overdraft || outs[5].Overdraft {
		t.Errorf("overdraft flags = %v, %v; want true then false", outs[4].Overdraft, outs[5].Overdraft)
	}
	if e := m.Entries[6]; e.Repaid != 60 || m.Overdraft != 0 || m.Balance(m.Now) != 40 || m.Lots[0].Remaining != 40 {
		t.Errorf("after repayment: entry %+v, overdraft %d, balance %d, lots %+v; want 60 repaid, 40 left",
			e, m.Overdraft, m.Balance(m.Now), m.Lots)
	}
}

func TestReversal(t *testing.T) {
	book := deployBook(t)
	var s script
	s.add(srcStore, local(2026, 5, 1, 10, 0), register(PlanPrepaid)) // 200
	rc := s.add(srcOnline, local(2026, 5, 2, 10, 0), events.RechargeCompleted{Amount: events.CNY(10001)})
	s.add(srcClub, local(2026, 5, 3, 10, 0), redeem(150))
	s.add(srcStore, local(2026, 5, 4, 10, 0), events.RechargeReversed{Recharge: rc, Amount: events.CNY(3333), Reason: "duplicate"})
	s.add(srcClub, local(2026, 5, 5, 10, 0), redeem(180))
	s.add(srcStore, local(2026, 5, 6, 10, 0), &events.RechargeReversed{Recharge: rc, Amount: events.CNY(9999), Reason: "fraud"})
	m, outs := run(t, book, s.evs)

	// 100.01 yuan online: 200 points, 200 qualifying. First reversal: floor(200 ×
	// 3333 / 10001) = 66 from the recharge's own lot. The second is capped at the rest
	// of the recharge and takes the other 134, of which only 4 are left: 130 overdraft.
	if got, want := kinds(m.Entries), "bonus+200 earn+200 redeem-150 reverse-66 redeem-180 reverse-4 overdraft-130"; got != want {
		t.Fatalf("entries = %s, want %s", got, want)
	}
	if u := m.Entries[3].Lots; len(u) != 1 || u[0].Lot != m.Entries[1].Lot {
		t.Errorf("first reversal used %+v, want the recharge's own lot %d", u, m.Entries[1].Lot)
	}
	if !outs[5].Overdraft || m.Entries[5].Note == "" {
		t.Errorf("second reversal: overdraft %v, note %q; want an overdraft and a note on the capped amount", outs[5].Overdraft, m.Entries[5].Note)
	}
	var back, qual int64
	for _, e := range m.Entries {
		if e.Target == rc {
			back -= e.Points
			qual -= e.Qualifying
		}
	}
	if back != 200 || qual != 200 || m.Qualifying["2026-05"] != 0 {
		t.Errorf("taken back %d points, %d qualifying, month left %d; want 200, 200, 0", back, qual, m.Qualifying["2026-05"])
	}
	if got, want := m.Balance(m.Now), int64(-130); got != want || m.Overdraft != 130 {
		t.Errorf("balance = %d (overdraft %d), want %d", got, m.Overdraft, want)
	}
}

func TestRetraction(t *testing.T) {
	book := deployBook(t)
	var s script
	s.add(srcStore, local(2026, 5, 1, 10, 0), recharge(100))
	wrong := s.add(srcStore, local(2026, 5, 2, 10, 0), recharge(300)) // keyed twice by the store
	s.add(srcClub, local(2026, 5, 3, 10, 0), redeem(350))
	retraction := Event{Ref: events.EventRef{Source: srcStore, ID: "r1"}, Time: local(2026, 5, 4, 10, 0),
		Data: events.EventRetracted{Target: wrong, Reason: "entered twice"}}

	m, _ := run(t, book, s.evs)
	out, err := m.Apply(book, retraction)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Recompute {
		t.Fatal("retracting a recharge that earned points did not ask for a recompute")
	}
	m, err = Recompute(book, append(s.evs, retraction))
	if err != nil {
		t.Fatal(err)
	}
	// Without the wrong recharge the redemption found 100 points: 250 overdraft.
	if got, want := kinds(m.Entries), "earn+100 redeem-100 overdraft-250 retract+0"; got != want {
		t.Fatalf("entries = %s, want %s", got, want)
	}
	if e := m.Entries[3]; e.Target != wrong || e.Event != retraction.Ref {
		t.Errorf("marker = %+v, want target %v by %v", e, wrong, retraction.Ref)
	}
	if m.Qualifying["2026-05"] != 100 || m.Balance(m.Now) != -250 {
		t.Errorf("qualifying %d, balance %d; want 100, -250", m.Qualifying["2026-05"], m.Balance(m.Now))
	}

	// A retraction that arrives before its target: the target is skipped when it comes.
	early := Event{Ref: events.EventRef{Source: srcStore, ID: "r2"}, Time: local(2026, 5, 5, 10, 0),
		Data: events.EventRetracted{Target: events.EventRef{Source: srcOnline, ID: "later"}, Reason: "cancelled"}}
	if out, err := m.Apply(book, early); err != nil || out.Recompute || len(out.Entries) != 0 {
		t.Fatalf("early retraction: %+v, %v; want nothing to do", out, err)
	}
	out, err = m.Apply(book, Event{Ref: events.EventRef{Source: srcOnline, ID: "later"}, Time: local(2026, 5, 6, 10, 0), Data: recharge(50)})
	if err != nil || !out.Skipped || len(out.Entries) != 0 {
		t.Errorf("retracted recharge arriving late: %+v, %v; want skipped", out, err)
	}
	if !m.Now.Equal(local(2026, 5, 6, 10, 0)) {
		t.Errorf("Now = %s: a skipped event still passes time", m.Now)
	}
}

// TestPinnedRebuild recomputes the same history under the rules in force at each time
// and pinned to one version: a what-if shows what the Spring Festival campaign of
// 2026-01 and the National Day campaign of 2026-10 were worth.
func TestPinnedRebuild(t *testing.T) {
	rs := loadDeploy(t)
	var s script
	s.add(srcStore, local(2026, 2, 16, 10, 0), recharge(100)) // Spring Festival: 1.5x under 2026-01
	s.add(srcStore, local(2026, 10, 2, 10, 0), recharge(100)) // National Day: 2x under 2026-10
	for _, tc := range []struct {
		name string
		book Rulebook
		want string
	}{
		{"as activated", deployBook(t), "earn+150 earn+200"},
		{"pinned to 2026-01", must(rs.Pinned("2026-01")), "earn+150 earn+100"},
		{"pinned to 2026-10", must(rs.Pinned("2026-10")), "earn+100 earn+200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Recompute(tc.book, s.evs)
			if err != nil {
				t.Fatal(err)
			}
			if got := kinds(m.Entries); got != tc.want {
				t.Errorf("entries = %s, want %s", got, tc.want)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestMonthKey(t *testing.T) {
	for _, m := range []int{0, 2026*12 + 0, 2026*12 + 9, 2026*12 + 11, 9999*12 + 11} {
		if got, want := monthKey(m), fmt.Sprintf("%04d-%02d", m/12, m%12+1); got != want {
			t.Errorf("monthKey(%d) = %s, want %s", m, got, want)
		}
	}
}
