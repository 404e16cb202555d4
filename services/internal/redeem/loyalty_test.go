package redeem_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/loyalty"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/redeem"
	"github.com/touchstream/touchstream/testkit"
)

// End to end against the real loyalty projection: recharges folded into loyalty_v1
// give the balance; a redemption is held by its reservation until the fold of its
// points.redeemed settles it and lowers the balance; a reversal, once folded, gives
// the points back.
func TestRedeemAgainstTheLoyaltyProjection(t *testing.T) {
	f := newFixtureWith(t, redeem.Config{LoyaltyTarget: "loyalty_v1"}, loyalty.Available)
	rs, err := ledger.Load("../../../deploy/loyalty.json")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	fold := func() {
		t.Helper()
		p, err := loyalty.New(loyalty.Options{Target: "loyalty_v1", Rules: rs, Pin: "2026-01"})
		if err != nil {
			t.Fatal(err)
		}
		r, err := projections.NewRunner(projections.Config{Group: "redeem-e2e"}, projections.Deps{
			Pool: f.pool, JS: f.js, Layout: f.layout, Catalog: cat, Log: testkit.Logger(t),
			History: &projections.LogHistory{Index: &timeline.Index{Target: "timeline_v1", Layout: f.layout}, JS: f.js,
				Decoder: projections.NewDecoder(f.layout, cat)},
		}, timeline.New("timeline_v1"), p)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CatchUp(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
	}
	balance := func() int64 {
		t.Helper()
		b, err := loyalty.Available(t.Context(), f.pool, "loyalty_v1", e2eMember, f.now)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Two recharges of 500 yuan, a day ago, at the default rate.
	var evs []*events.Event
	for i, id := range []string{"R-E2E-1", "R-E2E-2"} {
		e, err := events.NewEvent(e2eMember, f.now.Add(-24*time.Hour+time.Duration(i)*time.Minute),
			events.RechargeCompleted{RechargeID: id, Amount: events.CNY(50000), Credited: events.CNY(50000), Method: "wechat_pay"})
		if err != nil {
			t.Fatal(err)
		}
		e.Source = "urn:touchstream:channel:recharge"
		evs = append(evs, e)
	}
	for i, r := range f.pub.PublishBatch(t.Context(), evs) {
		if r.Err != nil {
			t.Fatalf("publish recharge %d: %v", i, r.Err)
		}
	}
	fold()
	start := balance()
	if start < 100 {
		t.Fatalf("balance after two recharges: %d, want at least 100", start)
	}

	first := f.post(t, redemptionsPath(e2eMember), redeemBody("e2e-1", start-50), nil)
	if first.status != http.StatusCreated {
		t.Fatalf("redeem: %d %s", first.status, first.body)
	}
	red := decode[redeem.Redemption](t, first)
	// Published, not yet folded: the reservation holds the points.
	if r := f.post(t, redemptionsPath(e2eMember), redeemBody("e2e-2", 51), nil); r.status != http.StatusConflict || *decode[errorAnswer](t, r).Available != 50 {
		t.Errorf("before the fold: %d %s", r.status, r.body)
	}

	fold()
	if got := decode[redeem.Redemption](t, f.get(t, "/v1/loyalty/redemptions/"+red.ID)); got.Status != "settled" {
		t.Errorf("after the fold the reservation is %q, want settled", got.Status)
	}
	if got := balance(); got != 50 {
		t.Errorf("balance after the fold: %d, want 50", got)
	}
	// Now the ledger, not the reservation, holds the points back: still 50 available.
	if r := f.post(t, redemptionsPath(e2eMember), redeemBody("e2e-3", 51), nil); r.status != http.StatusConflict || *decode[errorAnswer](t, r).Available != 50 {
		t.Errorf("after the fold: %d %s", r.status, r.body)
	}

	rev := f.post(t, "/v1/loyalty/redemptions/"+red.ID+"/reversal", `{"reason":"partner out of stock"}`, nil)
	if rev.status != http.StatusCreated {
		t.Fatalf("reverse: %d %s", rev.status, rev.body)
	}
	fold()
	if got := balance(); got != start {
		t.Errorf("balance after the reversal is folded: %d, want %d", got, start)
	}
	if r := f.post(t, redemptionsPath(e2eMember), redeemBody("e2e-4", start), nil); r.status != http.StatusCreated {
		t.Errorf("the whole balance after the reversal: %d %s", r.status, r.body)
	}
}

// e2eMember is the end-to-end test's member.
const e2eMember = "C-E2E"

// Before the projector has created the loyalty read model, redemptions answer 503
// with Retry-After and reserve nothing.
func TestRedeemBeforeTheReadModelExists(t *testing.T) {
	f := newFixtureWith(t, redeem.Config{LoyaltyTarget: "loyalty_v1"}, loyalty.Available)
	r := f.post(t, redemptionsPath(e2eMember), redeemBody("early", 10), nil)
	if e := decode[errorAnswer](t, r); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || e.Error.Code != "unavailable" {
		t.Errorf("got %d %v %s", r.status, r.header, r.body)
	}
	var rows int
	if err := f.pool.QueryRow(t.Context(), `SELECT count(*) FROM redeem.reservations`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("reservations: %d (%v)", rows, err)
	}
}
