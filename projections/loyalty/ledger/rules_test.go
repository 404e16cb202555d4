package ledger

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
)

const deployRules = "../../../deploy/loyalty.json"

var shanghai = mustZone("Asia/Shanghai")

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// local is a wall time in Shanghai.
func local(y int, mo time.Month, d, h, mi int) time.Time {
	return time.Date(y, mo, d, h, mi, 0, 0, shanghai)
}

func loadDeploy(t *testing.T) *RuleSet {
	t.Helper()
	rs, err := Load(deployRules)
	if err != nil {
		t.Fatalf("Load(%s): %v", deployRules, err)
	}
	return rs
}

func TestLoadDeployRules(t *testing.T) {
	rs := loadDeploy(t)
	if got, want := strings.Join(rs.IDs(), ","), "2026-01,2026-10"; got != want {
		t.Fatalf("IDs() = %s, want %s", got, want)
	}
	oct, err := rs.Version("2026-10")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		typ  string
		at   time.Time
		want string // campaign id, "" for none
	}{
		{"national day opens at local midnight", events.TypeRechargeCompleted, local(2026, 10, 1, 0, 0), "national-day-2026"},
		{"national day covers bills", events.TypeBillPaid, local(2026, 10, 7, 23, 59), "national-day-2026"},
		{"before the window", events.TypeRechargeCompleted, local(2026, 9, 30, 23, 59), ""},
		{"end is exclusive", events.TypeRechargeCompleted, local(2026, 10, 8, 0, 0), ""},
		{"UTC instant inside the local window", events.TypeRechargeCompleted, time.Date(2026, 9, 30, 16, 0, 0, 0, time.UTC), "national-day-2026"},
		{"double 11 recharges", events.TypeRechargeCompleted, local(2026, 11, 11, 12, 0), "double-11-2026"},
		{"double 11 is not for bills", events.TypeBillPaid, local(2026, 11, 11, 12, 0), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			if c := oct.campaign(tc.typ, tc.at); c != nil {
				got = c.ID
			}
			if got != tc.want {
				t.Errorf("campaign(%s, %s) = %q, want %q", tc.typ, tc.at, got, tc.want)
			}
		})
	}
	if _, err := rs.Version("1999-01"); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("Version(1999-01) error = %v, want ErrUnknownVersion", err)
	}
}

func TestRatesExpiryAndReviews(t *testing.T) {
	rs := loadDeploy(t)
	r, err := rs.Version("2026-01")
	if err != nil {
		t.Fatal(err)
	}
	online, store := "urn:touchstream:channel:online", "urn:touchstream:channel:store"
	for _, tc := range []struct {
		rate         Rate
		source, plan string
		want         int64
		name         string
	}{
		{r.Earning.Recharge, online, PlanPrepaid, 2, "online recharge"},
		{r.Earning.Recharge, store, PlanPrepaid, 1, "store recharge: default"},
		{r.Earning.BillPayment, online, PlanPostpaid, 2, "online postpaid bill"},
		{r.Earning.BillPayment, online, PlanPrepaid, 1, "online bill of a prepaid plan: default"},
		{r.Earning.BillPayment, "urn:touchstream:channel:crm-import", "", 0, "imported bills earn nothing"},
	} {
		if got := tc.rate.pointsPerYuan(tc.source, tc.plan); got != tc.want {
			t.Errorf("%s: pointsPerYuan = %d, want %d", tc.name, got, tc.want)
		}
	}

	// End of the 12th month after the month of earning, local time.
	if got, want := r.expiresAt(local(2026, 3, 15, 10, 0)), local(2027, 4, 1, 0, 0); !got.Equal(want) {
		t.Errorf("expiresAt(2026-03-15) = %s, want %s", got, want)
	}
	// 31 December 23:30 local is already January in UTC+8 but December locally.
	if got, want := r.expiresAt(local(2026, 12, 31, 23, 30)), local(2028, 1, 1, 0, 0); !got.Equal(want) {
		t.Errorf("expiresAt(2026-12-31T23:30) = %s, want %s", got, want)
	}
	if got, want := r.nextReview(local(2026, 12, 31, 23, 59)), local(2027, 1, 1, 0, 0); !got.Equal(want) {
		t.Errorf("nextReview = %s, want %s", got, want)
	}
	if got, want := r.nextReview(local(2027, 1, 1, 0, 0)), local(2028, 1, 1, 0, 0); !got.Equal(want) {
		t.Errorf("nextReview at a boundary = %s, want the next one %s", got, want)
	}
	q := *r
	q.Tiers.ReviewEveryMonths = 3
	if got, want := q.nextReview(local(2026, 5, 20, 0, 0)), local(2026, 7, 1, 0, 0); !got.Equal(want) {
		t.Errorf("quarterly nextReview = %s, want %s", got, want)
	}
	q.Expiry = Expiry{Months: 6, Align: "exact"}
	if got, want := q.expiresAt(local(2026, 5, 20, 9, 30)), local(2026, 11, 20, 9, 30); !got.Equal(want) {
		t.Errorf("exact expiresAt = %s, want %s", got, want)
	}
}

func TestValidationErrors(t *testing.T) {
	base, err := os.ReadFile(deployRules)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(rs *RuleSet)
		raw    string // used instead of mutate when set
		want   []string
	}{
		{name: "campaign ends before it starts",
			mutate: func(rs *RuleSet) { rs.Versions[1].Campaigns[0].End = "2026-09-30" },
			want:   []string{"versions[1].campaigns[0].end: before start"}},
		{name: "empty campaign window",
			mutate: func(rs *RuleSet) { rs.Versions[0].Campaigns[0].End = rs.Versions[0].Campaigns[0].Start },
			want:   []string{"versions[0].campaigns[0].end: equals start"}},
		{name: "campaign time not a local time",
			mutate: func(rs *RuleSet) { rs.Versions[1].Campaigns[1].Start = "2026-11-11T00:00:00Z" },
			want:   []string{`versions[1].campaigns[1].start: "2026-11-11T00:00:00Z": want local time`}},
		{name: "campaign on a type that does not earn",
			mutate: func(rs *RuleSet) { rs.Versions[1].Campaigns[0].EventTypes = []string{"store.visited"} },
			want:   []string{`versions[1].campaigns[0].event_types[0]: "store.visited" does not earn points`}},
		{name: "campaign multiplier below 100%",
			mutate: func(rs *RuleSet) { rs.Versions[1].Campaigns[0].MultiplierPercent = 50 },
			want:   []string{"versions[1].campaigns[0].multiplier_percent: 50: must be 100-1000 percent"}},
		{name: "duplicate campaign id",
			mutate: func(rs *RuleSet) { rs.Versions[1].Campaigns[1].ID = rs.Versions[1].Campaigns[0].ID },
			want:   []string{`versions[1].campaigns[1].id: "national-day-2026" duplicates campaigns[0].id`}},
		{name: "duplicate version id",
			mutate: func(rs *RuleSet) { rs.Versions[1].ID = "2026-01" },
			want:   []string{`versions[1].id: "2026-01" duplicates versions[0].id`}},
		{name: "missing version id",
			mutate: func(rs *RuleSet) { rs.Versions[0].ID = "" },
			want:   []string{"versions[0].id: required"}},
		{name: "unknown time zone",
			mutate: func(rs *RuleSet) { rs.TimeZone = "Asia/Beijing" },
			want:   []string{`time_zone: unknown zone "Asia/Beijing"`}},
		{name: "no versions",
			mutate: func(rs *RuleSet) { rs.Versions = nil },
			want:   []string{"versions: at least one rule version"}},
		{name: "negative rate",
			mutate: func(rs *RuleSet) { rs.Versions[0].Earning.Recharge.DefaultPointsPerYuan = -1 },
			want:   []string{"versions[0].earning.recharge.default_points_per_yuan: -1: must be 0-100"}},
		{name: "rate for an unknown plan kind",
			mutate: func(rs *RuleSet) { rs.Versions[0].Earning.BillPayment.Rates[0].PlanKind = "hybrid" },
			want:   []string{`versions[0].earning.bill_payment.rates[0].plan_kind: "hybrid": want prepaid or postpaid`}},
		{name: "rate matching nothing in particular",
			mutate: func(rs *RuleSet) { rs.Versions[0].Earning.Recharge.Rates[0].Source = "" },
			want:   []string{"versions[0].earning.recharge.rates[0]: needs a source, a plan_kind or both"}},
		{name: "shadowed rate",
			mutate: func(rs *RuleSet) {
				e := &rs.Versions[0].Earning.Recharge
				e.Rates = append(e.Rates, e.Rates[0])
			},
			want: []string{"versions[0].earning.recharge.rates[1]: duplicates rates[0]"}},
		{name: "cap period",
			mutate: func(rs *RuleSet) { rs.Versions[0].Caps[0].Period = "week" },
			want:   []string{`versions[0].caps[0].period: "week": want month or year`}},
		{name: "cap points",
			mutate: func(rs *RuleSet) { rs.Versions[0].Caps[1].Points = 0 },
			want:   []string{"versions[0].caps[1].points: must be at least 1"}},
		{name: "expiry",
			mutate: func(rs *RuleSet) { rs.Versions[0].Expiry = Expiry{Months: 0, Align: "eom"} },
			want: []string{"versions[0].expiry.months: 0: must be 1-60",
				`versions[0].expiry.align: "eom": want end_of_month or exact`}},
		{name: "negative joining bonus",
			mutate: func(rs *RuleSet) { rs.Versions[1].JoiningBonusPoints = -5 },
			want:   []string{"versions[1].joining_bonus_points: -5: must be 0-1000000"}},
		{name: "review period not dividing the year",
			mutate: func(rs *RuleSet) { rs.Versions[0].Tiers.ReviewEveryMonths = 5 },
			want:   []string{"versions[0].tiers.review_every_months: 5: must divide the year"}},
		{name: "window too long",
			mutate: func(rs *RuleSet) { rs.Versions[0].Tiers.WindowMonths = 36 },
			want:   []string{"versions[0].tiers.window_months: 36: must be 1-24"}},
		{name: "lowest tier above zero",
			mutate: func(rs *RuleSet) { rs.Versions[0].Tiers.Levels[0].MinQualifyingPoints = 10 },
			want:   []string{"versions[0].tiers.levels[0].min_qualifying_points: the lowest tier must start at 0"}},
		{name: "tiers out of order",
			mutate: func(rs *RuleSet) { rs.Versions[1].Tiers.Levels[2].MinQualifyingPoints = 1500 },
			want:   []string{"versions[1].tiers.levels[2].min_qualifying_points: must be above the tier below"}},
		{name: "tier multiplier",
			mutate: func(rs *RuleSet) { rs.Versions[1].Tiers.Levels[3].MultiplierPercent = 5000 },
			want:   []string{"versions[1].tiers.levels[3].multiplier_percent: 5000: must be 100-1000 percent"}},
		{name: "duplicate tier name",
			mutate: func(rs *RuleSet) { rs.Versions[1].Tiers.Levels[3].Name = "gold" },
			want:   []string{`versions[1].tiers.levels[3].name: "gold" duplicates levels[2].name`}},
		{name: "no tiers",
			mutate: func(rs *RuleSet) { rs.Versions[0].Tiers.Levels = nil },
			want:   []string{"versions[0].tiers.levels: at least one tier"}},
		{name: "misspelt field", raw: `{"time_zone":"Asia/Shanghai","version":[]}`,
			want: []string{`unknown field "version"`}},
		{name: "several problems are all reported",
			mutate: func(rs *RuleSet) {
				rs.Versions[0].Expiry.Months = 99
				rs.Versions[1].Campaigns[0].End = "2026-01-01"
			},
			want: []string{"versions[0].expiry.months: 99", "versions[1].campaigns[0].end: before start"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.raw)
			if tc.raw == "" {
				var rs RuleSet
				if err := json.Unmarshal(base, &rs); err != nil {
					t.Fatal(err)
				}
				tc.mutate(&rs)
				var err error
				if b, err = json.Marshal(&rs); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(t.TempDir(), "loyalty.json")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestSchedule(t *testing.T) {
	rs := loadDeploy(t)
	oct1 := local(2026, 10, 1, 0, 0)
	s, err := rs.Schedule(
		Activation{Version: "2026-01", Effective: local(2026, 1, 1, 0, 0)},
		Activation{Version: "2026-10", Effective: oct1},
	)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.At(local(2025, 12, 31, 23, 59)); !errors.Is(err, ErrNoRules) {
		t.Errorf("At(before first) error = %v, want ErrNoRules", err)
	}
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{local(2026, 1, 1, 0, 0), "2026-01"},
		{oct1.Add(-time.Second), "2026-01"},
		{oct1, "2026-10"},
		{local(2030, 1, 1, 0, 0), "2026-10"},
	} {
		r, err := s.At(tc.at)
		if err != nil {
			t.Fatalf("At(%s): %v", tc.at, err)
		}
		if r.ID != tc.want {
			t.Errorf("At(%s) = %s, want %s", tc.at, r.ID, tc.want)
		}
	}
	// A later activation at the same effective time wins; an earlier effective time
	// activated later in the log slots into place.
	if err := s.Activate(Activation{Version: "2026-01", Effective: oct1}); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.At(oct1); r.ID != "2026-01" {
		t.Errorf("At(oct1) after re-activation = %s, want 2026-01", r.ID)
	}
	if err := s.Activate(Activation{Version: "2027-01", Effective: oct1}); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("Activate(unknown) error = %v, want ErrUnknownVersion", err)
	}
	p, err := rs.Pinned("2026-10")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := p.At(local(2001, 1, 1, 0, 0)); err != nil || r.ID != "2026-10" {
		t.Errorf("Pinned.At(2001) = %v, %v; want 2026-10", r, err)
	}
}
