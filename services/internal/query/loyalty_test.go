package query_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/loyalty"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/query"
)

// TestLoyaltyRoutes folds the fixture's log into the loyalty ledger (pinned to the
// first rule version) and reads members' accounts and the club's totals.
func TestLoyaltyRoutes(t *testing.T) {
	f := newFixture(t)
	rs := f.foldLoyalty(t)
	f.serve(t, query.Config{Tiers: valuetier.Default().Names(), LoyaltyRules: rs}, query.Deps{})

	res := f.get(t, "/v1/loyalty/members/"+alice+"?entries=5", nil)
	var body query.LoyaltyMemberResponse
	if res.status != http.StatusOK || json.Unmarshal(res.body, &body) != nil {
		t.Fatalf("member: %d %s", res.status, res.body)
	}
	a := body.Account
	if a.Balance <= 0 || a.Tier == "" || len(a.Lots) == 0 || len(a.Entries) != 5 || body.Freshness == nil || body.Freshness.Target != query.DefaultLoyaltyTarget {
		t.Fatalf("alice's account: %s", res.body)
	}
	var lots int64
	for _, l := range a.Lots {
		lots += l.Remaining
	}
	if lots-a.Overdraft != a.Balance {
		t.Fatalf("lots hold %d (overdraft %d), balance %d", lots, a.Overdraft, a.Balance)
	}
	// Before her first event the ledger held nothing.
	res = f.get(t, "/v1/loyalty/members/"+alice+"?as_of=2000-01-01T00:00:00%2B08:00&entries=0", nil)
	body = query.LoyaltyMemberResponse{}
	if res.status != http.StatusOK || json.Unmarshal(res.body, &body) != nil || body.Account.Balance != 0 || len(body.Account.Entries) != 0 {
		t.Fatalf("as of 2000: %d %s", res.status, res.body)
	}
	if res := f.get(t, "/v1/loyalty/members/"+nobody, nil); res.status != http.StatusNotFound {
		t.Fatalf("a customer with no ledger: %d %s", res.status, res.body)
	}
	for _, bad := range []string{"?as_of=yesterday", "?entries=-1", "?entries=9999", "?colour=red"} {
		if res := f.get(t, "/v1/loyalty/members/"+alice+bad, nil); res.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad, res.status, res.body)
		}
	}

	// The whole ledger, page by page, newest first, with no entry twice.
	var all []loyalty.LedgerEntry
	path := "/v1/loyalty/members/" + alice + "/ledger?limit=7"
	for pages := 0; ; pages++ {
		res := f.get(t, path, nil)
		var page query.LoyaltyLedgerResponse
		if res.status != http.StatusOK || json.Unmarshal(res.body, &page) != nil || pages > 20 {
			t.Fatalf("ledger page %d: %d %s", pages, res.status, res.body)
		}
		all = append(all, page.Items...)
		if page.Next == nil {
			break
		}
		path = fmt.Sprintf("/v1/loyalty/members/%s/ledger?limit=7&before=%d", alice, *page.Next)
	}
	var sum int64
	for i, e := range all {
		if e.N != len(all)-1-i {
			t.Fatalf("entry %d has position %d: pages skipped or repeated", i, e.N)
		}
		sum += e.Points
	}
	if len(all) < 10 || sum != a.Balance { // the entries sum to the balance at the member's time
		t.Fatalf("ledger of %d entries sums to %d, balance %d", len(all), sum, a.Balance)
	}
	if res := f.get(t, "/v1/loyalty/members/"+nobody+"/ledger", nil); res.status != http.StatusNotFound {
		t.Fatalf("ledger of a customer with none: %d", res.status)
	}
	if res := f.get(t, "/v1/loyalty/members/"+alice+"/ledger?before=-3", nil); res.status != http.StatusBadRequest {
		t.Fatalf("before=-3: %d", res.status)
	}

	res = f.get(t, "/v1/loyalty/totals?months=24", nil)
	var totals query.LoyaltyTotalsResponse
	if res.status != http.StatusOK || json.Unmarshal(res.body, &totals) != nil {
		t.Fatalf("totals: %d %s", res.status, res.body)
	}
	var sumTiers int64
	for _, n := range totals.Totals.Tiers {
		sumTiers += n
	}
	var net int64
	for _, m := range totals.Totals.Months {
		net += m.Net
	}
	if totals.Totals.Members == 0 || sumTiers != totals.Totals.Members || len(totals.Totals.Months) == 0 || net != totals.Totals.Outstanding {
		t.Fatalf("totals (net over the months %d): %s", net, res.body)
	}
	if res := f.get(t, "/v1/loyalty/totals?months=0", nil); res.status != http.StatusBadRequest {
		t.Fatalf("months=0: %d", res.status)
	}

	// A server without the club's rules has no loyalty routes.
	f.serve(t, query.Config{Tiers: valuetier.Default().Names()}, query.Deps{})
	if res := f.get(t, "/v1/loyalty/totals", nil); res.status != http.StatusNotFound {
		t.Fatalf("totals without rules: %d", res.status)
	}
}

// foldLoyalty folds the fixture's log into the loyalty ledger pinned to the first rule
// version, and returns the rules to serve it with.
func (f *fixture) foldLoyalty(t *testing.T) *ledger.RuleSet {
	t.Helper()
	rs, err := ledger.Load("../../../deploy/loyalty.json")
	if err != nil {
		t.Fatal(err)
	}
	lp, err := loyalty.New(loyalty.Options{Target: query.DefaultLoyaltyTarget, Rules: rs, Pin: "2026-01"})
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := events.DefaultCatalog()
	r, err := projections.NewRunner(projections.Config{Group: "loyalty-test"}, projections.Deps{Pool: f.pool, JS: f.js, Layout: f.layout,
		Catalog: cat, Log: slog.New(slog.DiscardHandler),
		History: &projections.LogHistory{Index: &timeline.Index{Target: timelineTarget, Layout: f.layout}, JS: f.js, Decoder: projections.NewDecoder(f.layout, cat)}}, lp)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	return rs
}
