package simulate

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/schemas"
)

// stamper turns drafts into events: it decides each event's time.
//
// In history mode the event time is the behaviour time. In live mode the event time
// is the clock's now as the event is emitted, and the behaviour timeline is
// compressed to reach the sending rate; the payload's instants keep their distance
// from the event time (a promised deadline stays 48 hours after the complaint), its
// dates their distance in calendar days (a usage summary covers the day before its
// event). Calendar periods cannot be compressed: in live mode a customer gets at most
// one usage summary per calendar day and one bill per month, none for a period
// before their registration; the other summaries and bills, and the payments and
// adjustments of dropped bills, are dropped.
type stamper struct {
	live     bool
	now      func() time.Time
	loc      *time.Location
	channels map[string]*Channel

	// Live mode: what each customer has had, by customer index.
	registered map[int]string // registration date
	usageDay   map[int]string // last usage summary's day
	billMonth  map[int]string // last bill's period
	keptBills  map[string]keptBill
	dropped    map[string]time.Time // dropped bill payments (source and id): retractions of them are dropped too
	incidents  map[string]*incidentTimes
	stamped    int
}

type keptBill struct {
	due time.Time // end of the due date, live
	at  time.Time // behaviour time of the bill, for pruning
}

type incidentTimes struct {
	started, ended time.Time
	at             time.Time
}

func newStamper(live bool, now func() time.Time, loc *time.Location, chs map[string]*Channel) *stamper {
	return &stamper{live: live, now: now, loc: loc, channels: chs,
		registered: map[int]string{}, usageDay: map[int]string{}, billMonth: map[int]string{},
		keptBills: map[string]keptBill{}, dropped: map[string]time.Time{}, incidents: map[string]*incidentTimes{}}
}

// stamp returns the event of a draft, or nil if live mode drops it.
func (s *stamper) stamp(d *Draft) (*events.Event, error) {
	at, p := d.At, d.Payload
	if s.live {
		at = s.now().In(s.loc)
		var keep bool
		if p, keep = s.shift(d, at); !keep {
			return nil, nil
		}
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload of %s: %w", p.EventType(), d.ID, err)
	}
	ch := s.channels[d.Channel]
	return &events.Event{ID: d.ID, Source: ch.Source, Type: p.EventType(), Subject: d.Customer, Time: at,
		DataSchema: schemas.URI(p.EventType(), p.SchemaMajor()), Data: data}, nil
}

// shift moves a payload's times to an event time of at (live mode) and applies the
// calendar rules. Payloads are copied: drafts may share them.
func (s *stamper) shift(d *Draft, at time.Time) (events.Payload, bool) {
	s.stamped++
	if s.stamped%100_000 == 0 {
		s.prune(d.At)
	}
	delta := at.Sub(d.At)
	days := calendarDays(d.At, at)
	date := func(v string) string {
		if v == "" {
			return ""
		}
		t, err := time.ParseInLocation(time.DateOnly, v, s.loc)
		if err != nil {
			return v
		}
		return t.AddDate(0, 0, days).Format(time.DateOnly)
	}
	switch p := d.Payload.(type) {
	case *events.CustomerRegistered:
		q := *p
		q.ContractEnd = date(q.ContractEnd)
		s.registered[d.Index] = at.Format(time.DateOnly)
		return &q, true
	case *events.CustomerUpdated:
		q := *p
		q.ContractEnd = date(q.ContractEnd)
		return &q, true
	case *events.UsageSummarized:
		q := *p
		q.PeriodStart, q.PeriodEnd = date(q.PeriodStart), date(q.PeriodEnd)
		if q.PeriodEnd < s.registered[d.Index] || q.PeriodStart <= s.usageDay[d.Index] {
			return nil, false
		}
		s.usageDay[d.Index] = q.PeriodEnd
		return &q, true
	case *events.BillIssued:
		q := *p
		last, err := time.ParseInLocation("2006-01", q.Period, s.loc)
		if err != nil {
			return nil, false
		}
		end := date(last.AddDate(0, 1, -1).Format(time.DateOnly))
		q.Period, q.DueDate = end[:7], date(q.DueDate)
		if end < s.registered[d.Index] || q.Period <= s.billMonth[d.Index] {
			return nil, false
		}
		s.billMonth[d.Index] = q.Period
		due, _ := time.ParseInLocation(time.DateOnly, q.DueDate, s.loc)
		s.keptBills[q.BillID] = keptBill{due: due.Add(day - time.Second), at: d.At}
		return &q, true
	case *events.BillPaid:
		b, ok := s.keptBills[p.BillID]
		if !ok {
			s.dropped[s.channels[d.Channel].Source+"\x00"+d.ID] = d.At
			return nil, false
		}
		q := *p
		late := at.After(b.due)
		q.PaidLate = &late
		return &q, true
	case *events.BillAdjusted:
		if _, ok := s.keptBills[p.BillID]; !ok {
			return nil, false
		}
		return p, true
	case *events.EventRetracted:
		if _, gone := s.dropped[p.Target.Source+"\x00"+p.Target.ID]; gone {
			return nil, false
		}
		return p, true
	case *events.ComplaintOpened:
		q := *p
		q.PromisedBy = q.PromisedBy.Add(delta)
		return &q, true
	case *events.NetworkIncident:
		q := *p
		it := s.incidents[q.IncidentID]
		if it == nil {
			it = &incidentTimes{started: q.StartedAt.Add(delta).Truncate(time.Second), at: d.At}
			s.incidents[q.IncidentID] = it
		}
		q.StartedAt = it.started
		if !q.EndedAt.IsZero() {
			if it.ended.IsZero() {
				it.ended = q.EndedAt.Add(delta).Truncate(time.Second)
				if it.ended.Before(it.started) {
					it.ended = it.started
				}
			}
			q.EndedAt = it.ended
		}
		return &q, true
	case *events.SubscriptionTerminated:
		q := *p
		q.EffectiveAt = q.EffectiveAt.Add(delta).Truncate(time.Second)
		return &q, true
	case *events.PlanChanged:
		q := *p
		q.EffectiveOn, q.ContractEnd = date(q.EffectiveOn), date(q.ContractEnd)
		return &q, true
	case *events.DeviceChanged:
		q := *p
		q.PurchasedAt = date(q.PurchasedAt)
		return &q, true
	}
	return d.Payload, true
}

// prune forgets live-mode bookkeeping older than any event that could still refer
// to it.
func (s *stamper) prune(now time.Time) {
	cut := now.Add(-120 * day)
	for k, b := range s.keptBills {
		if b.at.Before(cut) {
			delete(s.keptBills, k)
		}
	}
	for k, t := range s.dropped {
		if t.Before(cut) {
			delete(s.dropped, k)
		}
	}
	for k, it := range s.incidents {
		if it.at.Before(now.Add(-7 * day)) {
			delete(s.incidents, k)
		}
	}
}

// calendarDays is the number of calendar days from a's date to b's, in b's zone.
func calendarDays(a, b time.Time) int {
	ya, ma, da := a.In(b.Location()).Date()
	yb, mb, db := b.Date()
	ta := time.Date(ya, ma, da, 12, 0, 0, 0, time.UTC)
	tb := time.Date(yb, mb, db, 12, 0, 0, 0, time.UTC)
	return int(tb.Sub(ta).Hours() / 24)
}
