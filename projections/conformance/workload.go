package conformance

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/touchstream/touchstream/events"
)

// Workload is a reproducible mix of every customer event type plus partition-wide
// clock ticks, with retractions of earlier events, over a set of customers.
type Workload struct {
	Events []*events.Event
	// PerCustomer is how many events each customer has in the workload.
	PerCustomer map[string]int64
}

// Source of workload events: one channel for simplicity; the envelope rules do not
// depend on it.
const Source = "urn:touchstream:test:conformance"

// NewWorkload generates n customer events over the given number of customers,
// starting at start and advancing event time with each event, plus a clock tick to
// every partition once a simulated day. The same seed gives the same events.
func NewWorkload(seed uint64, customers, n, partitions int, start time.Time) *Workload {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &Workload{PerCustomer: map[string]int64{}}
	ids := make([]string, customers)
	for i := range ids {
		ids[i] = fmt.Sprintf("K%04d-%d", i, seed%1000)
	}
	seq := 0
	id := func() string {
		seq++
		return fmt.Sprintf("%d-%06d", seed, seq)
	}
	at := start
	emitted := map[string][]*events.Event{} // per customer, retractable
	add := func(c string, p events.Payload) *events.Event {
		data, err := events.NewEvent(c, at, p)
		if err != nil {
			panic(err)
		}
		data.ID, data.Source = id(), Source
		w.Events = append(w.Events, data)
		w.PerCustomer[c]++
		return data
	}
	for _, c := range ids {
		add(c, events.CustomerRegistered{
			Name: events.Clear("测试" + c), Phone: events.Clear(fmt.Sprintf("+86138%08d", rng.IntN(1e8))),
			IDType: "resident_id", IDNumber: events.Clear(fmt.Sprintf("11010119900307%04d", rng.IntN(1e4))),
			CustomerType: "individual", Segment: "consumer", Region: []string{"CN-GD-SZ", "CN-BJ", "CN-SH"}[rng.IntN(3)],
			Plan: events.Plan{ID: "P58", Kind: "prepaid", MonthlyFee: events.CNY(5800)},
		})
		at = at.Add(time.Minute)
	}
	lastTick := start
	for i := 0; i < n; i++ {
		at = at.Add(time.Duration(rng.IntN(40)+1) * time.Minute)
		if at.Sub(lastTick) >= 24*time.Hour {
			lastTick = at
			ticks, err := events.NewPartitionEvents(partitions, at, events.ClockTicked{Period: "day", Tick: at.Truncate(time.Hour)})
			if err != nil {
				panic(err)
			}
			tickID := id()
			for _, t := range ticks {
				t.ID, t.Source = tickID, Source
				w.Events = append(w.Events, t)
			}
		}
		c := ids[rng.IntN(len(ids))]
		var e *events.Event
		switch k := rng.IntN(20); {
		case k < 5:
			rid, paid := id(), events.CNY(int64([]int{3000, 5000, 10000, 20000}[rng.IntN(4)]))
			e = add(c, events.RechargeCompleted{RechargeID: rid, Amount: paid, Credited: paid, Method: "wechat_pay"})
		case k < 6:
			e = add(c, events.BillIssued{BillID: id(), Period: at.Format("2006-01"), Amount: events.CNY(int64(rng.IntN(30000))), DueDate: at.AddDate(0, 0, 20).Format("2006-01-02")})
		case k < 7:
			e = add(c, events.BillAdjusted{BillID: id(), Amount: events.CNY(-int64(rng.IntN(2000) + 1)), Reason: "goodwill"})
		case k < 9:
			answered := rng.IntN(10) > 1
			call := events.CallCompleted{CallID: id(), Direction: "inbound", Queue: []string{"care", "billing", "technical"}[rng.IntN(3)],
				WaitSeconds: rng.IntN(60), Answered: answered, Outcome: "abandoned"}
			if answered {
				call.HandlingSeconds, call.Outcome = rng.IntN(600)+1, "resolved"
			}
			e = add(c, call)
		case k < 10:
			e = add(c, events.ComplaintOpened{ComplaintID: fmt.Sprintf("CP-%s-%d", c, i), Category: "network", Severity: "high",
				PromisedBy: at.Add(48 * time.Hour), Description: events.Clear("信号差 " + c)})
		case k < 11:
			// Resolve the customer's latest complaint, if any.
			var open string
			for _, prev := range emitted[c] {
				if prev.Type == events.TypeComplaintOpened {
					var co events.ComplaintOpened
					_ = events.DecodeData(prev, &co)
					open = co.ComplaintID
				}
			}
			if open == "" {
				e = add(c, events.StoreVisited{StoreID: "S1", Purpose: "inquiry", DurationSeconds: 300})
			} else {
				e = add(c, events.ComplaintResolved{ComplaintID: open, Resolution: "resolved", Satisfaction: rng.IntN(5) + 1})
			}
		case k < 12:
			e = add(c, events.SurveyAnswered{SurveyID: id(), Kind: "nps", Score: rng.IntN(11)})
		case k < 14:
			e = add(c, events.UsageSummarized{PeriodStart: at.Format("2006-01-02"), PeriodEnd: at.Format("2006-01-02"),
				VoiceMinutes: int64(rng.IntN(30)), DataMB: float64(rng.IntN(2000)), SMS: int64(rng.IntN(5)), Calls: 10, DroppedCalls: int64(rng.IntN(2))})
		case k < 15:
			e = add(c, events.PlanChanged{From: events.Plan{ID: "P58", Kind: "prepaid", MonthlyFee: events.CNY(5800)},
				To: events.Plan{ID: "P88", Kind: "prepaid", MonthlyFee: events.CNY(8800)}, Direction: "upgrade"})
		case k < 16:
			e = add(c, events.CustomerUpdated{Phone: events.Clear(fmt.Sprintf("+86139%08d", rng.IntN(1e8)))})
		case k < 17:
			e = add(c, events.DeviceChanged{Brand: "Huawei", Model: "Mate 70", PurchasedAt: at.Format("2006-01-02")})
		case k < 18:
			e = add(c, events.OfferPresented{OfferID: id(), Kind: "data_bonus"})
		case k < 19:
			// Retract one of the customer's earlier events (not a retraction).
			var candidates []*events.Event
			for _, prev := range emitted[c] {
				if prev.Type != events.TypeEventRetracted && prev.Type != events.TypeCustomerRegistered {
					candidates = append(candidates, prev)
				}
			}
			if len(candidates) == 0 {
				e = add(c, events.StoreVisited{StoreID: "S2", Purpose: "payment", DurationSeconds: 120})
			} else {
				target := candidates[rng.IntN(len(candidates))]
				e = add(c, events.EventRetracted{Target: target.Ref(), Reason: "entered in error"})
			}
		default:
			if rng.IntN(4) == 0 {
				e = add(c, events.PortOutRequested{RequestID: id(), TargetOperator: "cmcc"})
			} else {
				e = add(c, events.NetworkIncident{IncidentID: id(), Kind: "outage", Severity: "high", Region: "CN-BJ", StartedAt: at.Add(-time.Hour)})
			}
		}
		emitted[c] = append(emitted[c], e)
	}
	return w
}
