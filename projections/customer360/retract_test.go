package customer360_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/testkit"
)

// fixture folds hand-written events through the timeline index and customer360.
type fixture struct {
	t      *testing.T
	env    projections.Deps
	keys   *testkit.Keys
	pub    *events.Publisher
	at     time.Time
	target string
}

func newFixture(t *testing.T) *fixture {
	pool, _ := testkit.Pool(t)
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	def := streams.Default()
	if _, err := streams.Apply(t.Context(), js, def); err != nil {
		t.Fatal(err)
	}
	cat, _ := events.DefaultCatalog()
	keys := testkit.NewKeys()
	pub, err := events.NewPublisher(t.Context(), nc, events.WithLayout(def.Layout), events.WithKeys(keys), events.WithSource("urn:test:store"),
		events.WithLimits(events.Limits{MaxSize: 64 << 10})) // history: no late-arrival limit
	if err != nil {
		t.Fatal(err)
	}
	history := &projections.LogHistory{Index: &timeline.Index{Target: "timeline_v1", Layout: def.Layout}, JS: js, Decoder: projections.NewDecoder(def.Layout, cat)}
	return &fixture{t: t, keys: keys, pub: pub, at: time.Now().Add(-48 * time.Hour), target: "customer360_v1",
		env: projections.Deps{Pool: pool, JS: js, Layout: def.Layout, Catalog: cat, History: history, Log: testkit.Logger(t)}}
}

func (f *fixture) publish(customer string, p events.Payload) *events.Event {
	f.t.Helper()
	f.at = f.at.Add(time.Minute)
	e, err := events.NewEvent(customer, f.at, p)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.pub.Publish(f.t.Context(), e); err != nil {
		f.t.Fatal(err)
	}
	return e
}

func (f *fixture) fold(batch int) *customer360.Profile {
	f.t.Helper()
	r, err := projections.NewRunner(projections.Config{BatchSize: batch}, f.env, timeline.New("timeline_v1"), newProjection(f.t, f.target, f.keys))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := r.CatchUp(f.t.Context(), nil); err != nil {
		f.t.Fatal(err)
	}
	p, err := customer360.Get(f.t.Context(), f.env.Pool, f.target, "C1")
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) tick(at time.Time) {
	f.t.Helper()
	evs, err := events.NewPartitionEvents(64, at, events.ClockTicked{Period: "day", Tick: at})
	if err != nil {
		f.t.Fatal(err)
	}
	for i, r := range f.pub.PublishBatch(f.t.Context(), evs) {
		if r.Err != nil {
			f.t.Fatalf("tick %d: %v", i, r.Err)
		}
	}
}

func TestTierDecaysWithClockTicksWhileTheCustomerIsSilent(t *testing.T) {
	f := newFixture(t)
	shanghai := time.FixedZone("CST", 8*3600)
	f.at = time.Date(2026, 1, 10, 9, 0, 0, 0, shanghai)
	f.publish("C1", register("+8613800004444"))
	f.publish("C1", events.RechargeCompleted{RechargeID: "R1", Amount: events.CNY(200000), Credited: events.CNY(200000), Method: "cash"})
	if p := f.fold(1000); p.Tier != "platinum" || p.MonthlyAverageFen != 66666 {
		t.Fatalf("after a 2000 CNY recharge: tier %s, monthly average %d; want platinum, 66666", p.Tier, p.MonthlyAverageFen)
	}
	want := map[string]string{"2026-02": "platinum", "2026-03": "platinum", "2026-04": "bronze"}
	for _, month := range []string{"2026-02", "2026-03", "2026-04"} {
		at, _ := time.ParseInLocation("2006-01-02", month+"-01", shanghai)
		f.tick(at.Add(time.Minute))
		p := f.fold(1000)
		if p.Tier != want[month] {
			t.Errorf("after the %s tick: tier %s (as of %s, average %d), want %s", month, p.Tier, p.AsOfMonth, p.MonthlyAverageFen, want[month])
		}
	}
	// A replay from zero at another batch size reaches the same profile.
	live := f.fold(1000)
	f.target = "customer360_v2"
	if diff := cmp.Diff(live, f.fold(7), cmpopts.IgnoreUnexported(customer360.Profile{})); diff != "" {
		t.Fatalf("replay (-live +replay):\n%s", diff)
	}
}

func register(phone string) events.CustomerRegistered {
	return events.CustomerRegistered{Name: events.Clear("王芳"), Phone: events.Clear(phone), CustomerType: "individual",
		Region: "CN-SH", Plan: events.Plan{ID: "P1", Kind: "prepaid", MonthlyFee: events.CNY(3800)}}
}

func TestRetractedEventsCountInNoAggregate(t *testing.T) {
	for _, batch := range []int{1, 1000} {
		t.Run("", func(t *testing.T) {
			f := newFixture(t)
			f.publish("C1", register("+8613800001111"))
			f.publish("C1", events.RechargeCompleted{RechargeID: "R1", Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "cash"})
			wrong := f.publish("C1", events.RechargeCompleted{RechargeID: "R2", Amount: events.CNY(900000), Credited: events.CNY(900000), Method: "cash"})
			f.publish("C1", events.SurveyAnswered{SurveyID: "S1", Kind: "nps", Score: 9})
			badSurvey := f.publish("C1", events.SurveyAnswered{SurveyID: "S2", Kind: "nps", Score: 0})
			f.publish("C1", events.EventRetracted{Target: wrong.Ref(), Reason: "keyed twice"})
			f.publish("C1", events.EventRetracted{Target: badSurvey.Ref(), Reason: "wrong customer"})
			f.publish("C1", events.RechargeCompleted{RechargeID: "R3", Amount: events.CNY(3000), Credited: events.CNY(3000), Method: "cash"})
			p := f.fold(batch)
			if p.LifetimeSpendFen != 8000 {
				t.Errorf("lifetime spend %d fen, want 8000 (the retracted recharge must not count)", p.LifetimeSpendFen)
			}
			if p.LastNPS == nil || p.LastNPS.Score != 9 {
				t.Errorf("last NPS %+v, want 9 (the retracted 0 must not count)", p.LastNPS)
			}
			if p.EventsTotal != 8 || p.Tier != "bronze" {
				t.Errorf("events total %d tier %s, want 8 events and bronze", p.EventsTotal, p.Tier)
			}
			if diff := cmp.Diff(map[string]*customer360.ChannelStat{"urn:test:store": {Count: 4, Last: p.Channels["urn:test:store"].Last}}, p.Channels); diff != "" {
				t.Errorf("channel counts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPhoneSearchHashFollowsTheCurrentNumberAndForgetsErasedCustomers(t *testing.T) {
	f := newFixture(t)
	f.publish("C1", register("+8613800002222"))
	f.publish("C1", events.CustomerUpdated{Phone: events.Clear("13900003333")})
	p := f.fold(1000)
	if diff := cmp.Diff(customer360.PhoneHash(phoneKey, "+8613900003333"), p.PhoneHash); diff != "" {
		t.Fatalf("phone hash is not the hash of the current number (-want +got):\n%s", diff)
	}
	hits, _, err := customer360.Search(t.Context(), f.env.Pool, f.target, customer360.Filter{PhoneHash: customer360.PhoneHash(phoneKey, "139 0000 3333")})
	if err != nil || len(hits) != 1 || hits[0].CustomerID != "C1" {
		t.Fatalf("search by phone: %v %+v", err, hits)
	}
	old, _, _ := customer360.Search(t.Context(), f.env.Pool, f.target, customer360.Filter{PhoneHash: customer360.PhoneHash(phoneKey, "13800002222")})
	if len(old) != 0 {
		t.Fatalf("the old number still finds the customer: %+v", old)
	}
	// After an erasure a replay derives no hash.
	f.keys.Erase("C1")
	f.target = "customer360_v2"
	p = f.fold(1000)
	if p.PhoneHash != nil {
		t.Fatalf("replay after erasure derived a phone hash")
	}
}
