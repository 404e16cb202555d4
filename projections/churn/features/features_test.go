package features

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
)

// t0 is noon of 2026-06-01 in Shanghai.
var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, Zone)

func at(days int) time.Time { return t0.AddDate(0, 0, days) }

type step struct {
	day  int
	data any
}

func fold(t *testing.T, steps []step) *State {
	t.Helper()
	var s State
	for i, st := range steps {
		ev := Event{Ref: events.EventRef{Source: "src", ID: fmt.Sprintf("e%d", i)}, Time: at(st.day), Data: st.data}
		if err := s.Apply(ev); err != nil {
			t.Fatalf("apply step %d: %v", i, err)
		}
	}
	return &s
}

func recharge(yuan int64) events.RechargeCompleted {
	return events.RechargeCompleted{RechargeID: "r", Amount: events.CNY(yuan * 100), Method: "alipay"}
}

func tick() events.ClockTicked { return events.ClockTicked{Period: "day"} }

func ref(i int) events.EventRef { return events.EventRef{Source: "src", ID: fmt.Sprintf("e%d", i)} }

func TestFeatures(t *testing.T) {
	yes := true
	tests := []struct {
		name     string
		steps    []step
		asOf     int // days after t0
		feature  string
		want     float64
		wantRefs []events.EventRef
	}{
		{"spend in the last 30 days", []step{{0, recharge(50)}, {-40, recharge(100)}, {10, events.BillIssued{BillID: "b", Period: "2026-06", Amount: events.CNY(3000), DueDate: "2026-06-20"}}}, 10, Spend30d, 80, []events.EventRef{ref(2), ref(0)}},
		{"spend baseline per 30 days", []step{{-119, recharge(100)}, {-60, recharge(100)}, {-35, recharge(100)}, {0, recharge(30)}}, 0, SpendBaseline30d, 100, []events.EventRef{ref(3), ref(2), ref(1)}},
		{"spend drop against the baseline", []step{{-119, recharge(100)}, {-60, recharge(100)}, {-35, recharge(100)}, {0, recharge(30)}}, 0, SpendDrop, 0.7, nil},
		{"no drop without 30 days of history", []step{{-35, recharge(100)}, {-20, tick()}}, 0, SpendDrop, 0, nil},
		{"silence makes a full drop", []step{{-100, recharge(100)}, {-60, recharge(100)}, {-35, recharge(100)}, {0, tick()}}, 0, SpendDrop, 1, nil},
		{"usage trend", []step{
			{-119, events.UsageSummarized{PeriodStart: "2026-02-02", PeriodEnd: "2026-02-02", VoiceMinutes: 300, DataMB: 3000}},
			{-60, events.UsageSummarized{PeriodStart: "2026-04-02", PeriodEnd: "2026-04-02", VoiceMinutes: 300, DataMB: 3000}},
			{-40, events.UsageSummarized{PeriodStart: "2026-04-22", PeriodEnd: "2026-04-22", VoiceMinutes: 300, DataMB: 3000}},
			{0, events.UsageSummarized{PeriodStart: "2026-06-01", PeriodEnd: "2026-06-01", VoiceMinutes: 75, DataMB: 1500}},
		}, 0, VoiceDrop, 0.75, nil},
		{"usage lands on its period end", []step{{-40, events.UsageSummarized{PeriodStart: "2026-04-01", PeriodEnd: "2026-04-01", VoiceMinutes: 10, DataMB: 5.5}}, {5, events.UsageSummarized{PeriodStart: "2026-06-05", PeriodEnd: "2026-06-05", DataMB: 2.25}}}, 5, Data30d, 2.25, []events.EventRef{ref(1)}},
		{"dropped calls", []step{{0, events.UsageSummarized{PeriodStart: "2026-06-01", PeriodEnd: "2026-06-01", DroppedCalls: 4}}, {1, events.UsageSummarized{PeriodStart: "2026-06-02", PeriodEnd: "2026-06-02", DroppedCalls: 0}}}, 1, DroppedCalls30d, 4, []events.EventRef{ref(0)}},
		{"network incidents in 30 days", []step{{-31, events.NetworkIncident{IncidentID: "i1", Kind: "outage"}}, {-3, events.NetworkIncident{IncidentID: "i2", Kind: "outage"}}}, 0, Incidents30d, 1, []events.EventRef{ref(1)}},
		{"open complaints", []step{
			{0, events.ComplaintOpened{ComplaintID: "c1", PromisedBy: at(3)}},
			{1, events.ComplaintOpened{ComplaintID: "c2", PromisedBy: at(10)}},
			{2, events.ComplaintResolved{ComplaintID: "c1", Resolution: "resolved"}},
		}, 5, ComplaintsOpen, 1, []events.EventRef{ref(1)}},
		{"complaints past their deadline", []step{
			{0, events.ComplaintOpened{ComplaintID: "c1", PromisedBy: at(3)}},
			{1, events.ComplaintOpened{ComplaintID: "c2", PromisedBy: at(10)}},
		}, 5, ComplaintsOverdue, 1, []events.EventRef{ref(0)}},
		{"a resolution before its opening (late) closes it", []step{
			{2, events.ComplaintResolved{ComplaintID: "c1", Resolution: "resolved"}},
			{0, events.ComplaintOpened{ComplaintID: "c1", PromisedBy: at(1)}},
		}, 5, ComplaintsOpen, 0, nil},
		{"complaints in 30 days", []step{{-40, events.ComplaintOpened{ComplaintID: "c0"}}, {-5, events.ComplaintOpened{ComplaintID: "c1"}}, {0, events.ComplaintOpened{ComplaintID: "c2"}}}, 0, Complaints30d, 2, []events.EventRef{ref(2), ref(1)}},
		{"care calls: inbound only", []step{
			{0, events.CallCompleted{CallID: "1", Direction: "inbound", Queue: "billing"}},
			{1, events.CallCompleted{CallID: "2", Direction: "outbound", Queue: "care"}},
			{2, events.CallCompleted{CallID: "3", Direction: "inbound", Queue: "technical"}},
			{3, events.CallCompleted{CallID: "4", Direction: "inbound", Queue: "retention"}},
		}, 3, CareCalls30d, 2, []events.EventRef{ref(2), ref(0)}},
		{"retention calls: the customer asks to leave", []step{
			{0, events.CallCompleted{CallID: "1", Direction: "outbound", Queue: "retention"}},
			{3, events.CallCompleted{CallID: "4", Direction: "inbound", Queue: "retention"}},
		}, 3, RetentionCalls30d, 1, []events.EventRef{ref(1)}},
		{"last nps by event time, not arrival", []step{{5, events.SurveyAnswered{SurveyID: "s1", Kind: "nps", Score: 9}}, {2, events.SurveyAnswered{SurveyID: "s0", Kind: "nps", Score: 3}}}, 6, LastNPS, 9, []events.EventRef{ref(0)}},
		{"unknown csat", []step{{0, tick()}}, 0, LastCSAT, -1, nil},
		{"detractor from the latest survey", []step{{1, events.SurveyAnswered{SurveyID: "s1", Kind: "nps", Score: 9}}, {2, events.SurveyAnswered{SurveyID: "s2", Kind: "csat", Score: 2}}}, 2, Detractor, 1, []events.EventRef{ref(1)}},
		{"promoter is no detractor", []step{{1, events.SurveyAnswered{SurveyID: "s2", Kind: "csat", Score: 2}}, {2, events.SurveyAnswered{SurveyID: "s1", Kind: "nps", Score: 9}}}, 2, Detractor, 0, nil},
		{"days since recharge", []step{{0, recharge(50)}, {20, tick()}}, 20, DaysSinceRecharge, 20, []events.EventRef{ref(0)}},
		{"days since payment", []step{{0, events.BillPaid{BillID: "b", Amount: events.CNY(100), PaidLate: &yes}}}, 7, DaysSincePayment, 7, []events.EventRef{ref(0)}},
		{"days since recharge or payment: the latest", []step{{0, recharge(50)}, {4, events.BillPaid{BillID: "b", Amount: events.CNY(100)}}}, 9, DaysSinceSpend, 5, []events.EventRef{ref(1)}},
		{"never spent", []step{{0, tick()}}, 9, DaysSinceSpend, -1, nil},
		{"tenure months", []step{{-400, events.CustomerRegistered{CustomerType: "individual", Region: "GZ"}}, {0, tick()}}, 0, TenureMonths, 13, []events.EventRef{ref(0)}},
		{"months to contract end", []step{{0, events.CustomerRegistered{ContractEnd: "2026-08-15"}}}, 0, MonthsToContractEnd, 2, []events.EventRef{ref(0)}},
		{"a plan change restates the contract", []step{{0, events.CustomerRegistered{ContractEnd: "2026-08-15"}}, {1, events.PlanChanged{Direction: "upgrade", ContractEnd: "2028-06-30"}}}, 1, MonthsToContractEnd, 24, []events.EventRef{ref(1)}},
		{"an ended contract is 0 months away", []step{{0, events.CustomerRegistered{ContractEnd: "2026-01-15"}}}, 0, MonthsToContractEnd, 0, []events.EventRef{ref(0)}},
		{"no contract", []step{{0, events.CustomerRegistered{}}}, 0, MonthsToContractEnd, -1, nil},
		{"handset age", []step{{0, events.DeviceChanged{Brand: "x", Model: "y", PurchasedAt: "2024-05-20"}}}, 0, HandsetAgeMonths, 24, []events.EventRef{ref(0)}},
		{"downgrades in 90 days", []step{{-100, events.PlanChanged{Direction: "downgrade"}}, {-50, events.PlanChanged{Direction: "downgrade"}}, {-10, events.PlanChanged{Direction: "upgrade"}}}, 0, Downgrades90d, 1, []events.EventRef{ref(1)}},
		{"port-out requested", []step{{0, tick()}, {3, events.PortOutRequested{RequestID: "p", TargetOperator: "cmcc"}}}, 10, PortOutRequested, 1, []events.EventRef{ref(1)}},
		{"days since port-out", []step{{3, events.PortOutRequested{RequestID: "p", TargetOperator: "cmcc"}}, {8, events.PortOutRequested{RequestID: "q", TargetOperator: "cmcc"}}}, 10, DaysSincePortOut, 7, []events.EventRef{ref(0)}},
		{"a port-out after asOf does not count", []step{{3, events.PortOutRequested{RequestID: "p", TargetOperator: "cmcc"}}}, 2, PortOutRequested, 0, nil},
		{"pointer payloads fold like values", []step{{0, &events.RechargeCompleted{Amount: events.CNY(1234)}}}, 0, Spend30d, 12.34, []events.EventRef{ref(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fold(t, tt.steps)
			f := s.Snapshot(at(tt.asOf)).Feature(tt.feature)
			if f == nil {
				t.Fatalf("no feature %s", tt.feature)
			}
			if diff := cmp.Diff(tt.want, f.Value, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
				t.Errorf("%s value (-want +got):\n%s", tt.feature, diff)
			}
			if tt.wantRefs != nil {
				if diff := cmp.Diff(tt.wantRefs, f.Events); diff != "" {
					t.Errorf("%s events (-want +got):\n%s", tt.feature, diff)
				}
			}
		})
	}
}

func TestVectorOrder(t *testing.T) {
	var s State
	v := s.Snapshot(t0)
	var got []string
	for _, f := range v.Features {
		got = append(got, f.Name)
	}
	if diff := cmp.Diff(Names(), got); diff != "" {
		t.Errorf("vector order (-names +vector):\n%s", diff)
	}
}

func TestEvidenceBounded(t *testing.T) {
	var steps []step
	for i := range 10 {
		steps = append(steps, step{i, recharge(10)})
	}
	s := fold(t, steps)
	got := s.Snapshot(at(9)).Feature(Spend30d).Events
	want := []events.EventRef{ref(9), ref(8), ref(7)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("evidence (-want +got):\n%s", diff)
	}
}

func TestBucketsBounded(t *testing.T) {
	var steps []step
	for i := range 400 {
		steps = append(steps, step{i, recharge(10)})
	}
	s := fold(t, steps)
	if got := len(s.Days); got != DaysKept {
		t.Errorf("days kept: got %d, want %d", got, DaysKept)
	}
	// A late event older than the buckets changes no bucket.
	before := len(s.Days)
	if err := s.Apply(Event{Ref: ref(999), Time: at(10), Data: recharge(10)}); err != nil {
		t.Fatal(err)
	}
	if got := len(s.Days); got != before || s.Days[0].Day != DayOf(at(399))-DaysKept+1 {
		t.Errorf("late event reopened a bucket: %d days from %d", got, s.Days[0].Day)
	}
}

// TestDayInShanghai: a recharge at 23:30 UTC belongs to the next day in Shanghai.
func TestDayInShanghai(t *testing.T) {
	late := time.Date(2026, 6, 30, 23, 30, 0, 0, time.UTC) // 2026-07-01 07:30 in Shanghai
	var s State
	if err := s.Apply(Event{Ref: ref(0), Time: late, Data: recharge(30)}); err != nil {
		t.Fatal(err)
	}
	want, _ := parseDay("d", "2026-07-01")
	if got := s.Days[0].Day; got != want {
		t.Errorf("day: got %d, want %d", got, want)
	}
}

func TestApplyErrors(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"no time", Event{Ref: ref(0), Data: tick()}, "time: required"},
		{"negative recharge", Event{Ref: ref(0), Time: t0, Data: events.RechargeCompleted{Amount: events.CNY(-1)}}, "amount: -1 fen is negative"},
		{"bad period end", Event{Ref: ref(0), Time: t0, Data: events.UsageSummarized{PeriodEnd: "June"}}, `period_end: "June" is not a date`},
		{"bad contract end", Event{Ref: ref(0), Time: t0, Data: events.PlanChanged{ContractEnd: "2026-13-01"}}, "contract_end:"},
		{"bad purchase date", Event{Ref: ref(0), Time: t0, Data: events.DeviceChanged{}}, "purchased_at:"},
		{"nps out of range", Event{Ref: ref(0), Time: t0, Data: events.SurveyAnswered{Kind: "nps", Score: 11}}, "score: 11 is out of range"},
		{"complaint without id", Event{Ref: ref(0), Time: t0, Data: events.ComplaintOpened{}}, "complaint_id: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fold(t, []step{{0, recharge(10)}})
			before := mustJSON(t, s)
			err := s.Apply(tt.ev)
			if err == nil || !contains(err.Error(), tt.want) {
				t.Fatalf("error: got %v, want one containing %q", err, tt.want)
			}
			if diff := cmp.Diff(string(before), string(mustJSON(t, s))); diff != "" {
				t.Errorf("a failed apply changed the state:\n%s", diff)
			}
		})
	}
}

// TestLabelIsNoFeature: subscription.terminated is the training label; it is kept
// in the state and moves time like any event, but no feature reads it.
func TestLabelIsNoFeature(t *testing.T) {
	base := []step{{-60, recharge(100)}, {-10, events.ComplaintOpened{ComplaintID: "c"}}, {0, tick()}}
	without := fold(t, base)
	with := fold(t, append(base[:2:2], step{0, events.SubscriptionTerminated{Reason: "port_out", EffectiveAt: at(0)}}))
	if !with.Terminated.set() {
		t.Fatal("termination not kept")
	}
	if diff := cmp.Diff(without.Snapshot(at(0)), with.Snapshot(at(0))); diff != "" {
		t.Errorf("the label changed the features:\n%s", diff)
	}
}
