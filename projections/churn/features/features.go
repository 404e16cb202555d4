package features

import (
	"cmp"
	"fmt"
	"math"
	"reflect"
	"slices"
	"time"

	"github.com/touchstream/touchstream/events"
)

// Zone is the operator's time zone (Asia/Shanghai: UTC+8 all year, no daylight
// saving since 1991). It is fixed here so that the fold needs no tz database.
var Zone = time.FixedZone("Asia/Shanghai", 8*60*60)

const (
	// DaysKept is how many daily buckets a state holds, counting the day of Now:
	// the 30-day window plus the 90-day baseline before it.
	DaysKept = 120
	// MaxEvidence is how many event ids a feature carries: the most recent ones.
	MaxEvidence = 3
	// maxOpenComplaints and maxResolved bound the complaint sets.
	maxOpenComplaints = 32
	maxResolved       = 32
)

// Evidence kinds: which events stand behind which features.
const (
	kindSpend     = "spend"
	kindUsage     = "usage"
	kindDropped   = "dropped"
	kindIncident  = "incident"
	kindComplaint = "complaint"
	kindCare      = "care"
	kindRetention = "retention"
	kindDowngrade = "downgrade"
)

// Event is one event of the customer as the fold needs it: its reference, its
// event time and its decoded payload (a value or a pointer from the events package).
// Payloads the fold does not read (a store visit, nil) only advance time.
type Event struct {
	Ref  events.EventRef
	Time time.Time
	Data any
}

// FromEnvelope pairs an envelope with its decoded payload.
func FromEnvelope(e *events.Event, payload any) Event {
	return Event{Ref: e.Ref(), Time: e.Time, Data: payload}
}

// Day is one daily bucket, a calendar day in Zone.
type Day struct {
	Day          int32   `json:"day"` // days since 1970-01-01 in Zone
	SpendFen     int64   `json:"spend_fen,omitempty"`
	VoiceMinutes int64   `json:"voice_minutes,omitempty"`
	DataMB       float64 `json:"data_mb,omitempty"`
	Dropped      int64   `json:"dropped,omitempty"`
	Complaints   int32   `json:"complaints,omitempty"`
	Care         int32   `json:"care,omitempty"`
	Retention    int32   `json:"retention,omitempty"`
	Incidents    int32   `json:"incidents,omitempty"`
	Downgrades   int32   `json:"downgrades,omitempty"`
}

// Evidence is an event behind a feature.
type Evidence struct {
	Ref  events.EventRef `json:"ref"`
	Time time.Time       `json:"time"`
}

// Fact is a dated fact (the last recharge, the contract end) and the event that
// stated it. Value is a day number in Zone for dates, a score for surveys.
type Fact struct {
	Ref   events.EventRef `json:"ref"`
	Time  time.Time       `json:"time"`
	Value int64           `json:"value,omitempty"`
}

func (f *Fact) set() bool { return !f.Time.IsZero() }

// Complaint is an open complaint.
type Complaint struct {
	ID         string          `json:"id"`
	Ref        events.EventRef `json:"ref"`
	Opened     time.Time       `json:"opened"`
	PromisedBy time.Time       `json:"promised_by"`
}

// State is one customer's feature state. Its JSON form is its stored form; a
// round trip is exact. The zero value is an empty state.
type State struct {
	Now      time.Time `json:"now,omitzero"`       // the highest event time applied
	FirstDay int32     `json:"first_day,omitzero"` // the earliest event day seen (0: none)
	Days     Days      `json:"days,omitempty"`     // ascending, Day > day(Now)-DaysKept

	Recent map[string][]Evidence `json:"recent,omitempty"` // per kind, newest first

	Open     []Complaint `json:"open,omitempty"`     // open complaints, by open time
	Resolved []string    `json:"resolved,omitempty"` // complaint ids resolved (bounded)

	Registered   Fact `json:"registered,omitzero"`    // earliest registration
	ContractEnd  Fact `json:"contract_end,omitzero"`  // latest statement; Value = day
	Device       Fact `json:"device,omitzero"`        // latest device; Value = purchase day
	LastRecharge Fact `json:"last_recharge,omitzero"` // latest recharge
	LastPayment  Fact `json:"last_payment,omitzero"`  // latest bill payment
	LastCSAT     Fact `json:"last_csat,omitzero"`     // Value = score 1-5
	LastNPS      Fact `json:"last_nps,omitzero"`      // Value = score 0-10
	PortOut      Fact `json:"port_out,omitzero"`      // earliest port-out request
	Terminated   Fact `json:"terminated,omitzero"`    // the label: never a feature
}

// DayOf is the day number of t in Zone.
func DayOf(t time.Time) int32 {
	sec := t.Unix() + 8*60*60
	day := sec / 86400
	if sec%86400 < 0 {
		day--
	}
	return int32(day)
}

// parseDay reads a YYYY-MM-DD date in Zone.
func parseDay(field, s string) (int32, error) {
	t, err := time.ParseInLocation(time.DateOnly, s, Zone)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a date (YYYY-MM-DD)", field, s)
	}
	return DayOf(t), nil
}

// Apply folds one event. Events are applied in stream order; a late event (older
// than Now) lands in its own day's bucket, or in none when that day has left the
// buckets, and never moves Now back. Dated facts keep the latest (or, for
// registration and port-out, the earliest) by event time, whatever the arrival
// order. An error (an invalid payload) is permanent and leaves the state unchanged.
func (s *State) Apply(ev Event) error {
	if ev.Time.IsZero() {
		return fmt.Errorf("churn features %s %s: time: required", ev.Ref.Source, ev.Ref.ID)
	}
	ch, err := s.change(ev)
	if err != nil {
		return fmt.Errorf("churn features %s %s: %w", ev.Ref.Source, ev.Ref.ID, err)
	}
	at := ev.Time.UTC()
	day := DayOf(at)
	if at.After(s.Now) {
		s.Now = at
	}
	if s.FirstDay == 0 || day < s.FirstDay {
		s.FirstDay = day
	}
	ch(at, day)
	s.prune()
	return nil
}

func deref(d any) any {
	if v := reflect.ValueOf(d); v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		return v.Elem().Interface()
	}
	return d
}

// change validates the payload and returns its effect, to run after time moved.
func (s *State) change(ev Event) (func(at time.Time, day int32), error) {
	ref := ev.Ref
	switch d := deref(ev.Data).(type) {
	case events.RechargeCompleted:
		if d.Amount.Fen < 0 {
			return nil, fmt.Errorf("amount: %d fen is negative", d.Amount.Fen)
		}
		return func(at time.Time, day int32) {
			s.bucket(day, func(b *Day) { b.SpendFen += d.Amount.Fen })
			s.note(kindSpend, ref, at)
			latest(&s.LastRecharge, Fact{Ref: ref, Time: at})
		}, nil
	case events.BillIssued:
		if d.Amount.Fen < 0 {
			return nil, fmt.Errorf("amount: %d fen is negative", d.Amount.Fen)
		}
		return func(at time.Time, day int32) {
			s.bucket(day, func(b *Day) { b.SpendFen += d.Amount.Fen })
			s.note(kindSpend, ref, at)
		}, nil
	case events.BillPaid:
		return func(at time.Time, day int32) { latest(&s.LastPayment, Fact{Ref: ref, Time: at}) }, nil
	case events.UsageSummarized:
		end, err := parseDay("period_end", d.PeriodEnd)
		if err != nil {
			return nil, err
		}
		if d.VoiceMinutes < 0 || d.DataMB < 0 || math.IsNaN(d.DataMB) || math.IsInf(d.DataMB, 0) || d.DroppedCalls < 0 {
			return nil, fmt.Errorf("voice_minutes, data_mb, dropped_calls: must be finite and not negative")
		}
		return func(at time.Time, _ int32) {
			s.bucket(end, func(b *Day) {
				b.VoiceMinutes += d.VoiceMinutes
				b.DataMB += d.DataMB
				b.Dropped += d.DroppedCalls
			})
			s.note(kindUsage, ref, at)
			if d.DroppedCalls > 0 {
				s.note(kindDropped, ref, at)
			}
		}, nil
	case events.CallCompleted:
		// Outbound calls are the operator's own actions (retention desk, telesales):
		// reading them would feed the treatment back into the score.
		if d.Direction != "inbound" || d.Queue == "telesales" {
			return func(time.Time, int32) {}, nil
		}
		kind := kindCare
		if d.Queue == "retention" {
			kind = kindRetention
		}
		return func(at time.Time, day int32) {
			s.bucket(day, func(b *Day) {
				if kind == kindRetention {
					b.Retention++
				} else {
					b.Care++
				}
			})
			s.note(kind, ref, at)
		}, nil
	case events.ComplaintOpened:
		if d.ComplaintID == "" {
			return nil, fmt.Errorf("complaint_id: required")
		}
		return func(at time.Time, day int32) {
			s.bucket(day, func(b *Day) { b.Complaints++ })
			s.note(kindComplaint, ref, at)
			if slices.Contains(s.Resolved, d.ComplaintID) || slices.ContainsFunc(s.Open, func(c Complaint) bool { return c.ID == d.ComplaintID }) {
				return
			}
			s.Open = append(s.Open, Complaint{ID: d.ComplaintID, Ref: ref, Opened: at, PromisedBy: d.PromisedBy.UTC()})
			slices.SortStableFunc(s.Open, func(a, b Complaint) int {
				return cmp.Or(a.Opened.Compare(b.Opened), cmp.Compare(a.ID, b.ID))
			})
			if len(s.Open) > maxOpenComplaints {
				s.Open = slices.Delete(s.Open, 0, len(s.Open)-maxOpenComplaints)
			}
		}, nil
	case events.ComplaintResolved:
		if d.ComplaintID == "" {
			return nil, fmt.Errorf("complaint_id: required")
		}
		return func(time.Time, int32) {
			s.Open = slices.DeleteFunc(s.Open, func(c Complaint) bool { return c.ID == d.ComplaintID })
			if !slices.Contains(s.Resolved, d.ComplaintID) {
				s.Resolved = append(s.Resolved, d.ComplaintID)
				if len(s.Resolved) > maxResolved {
					s.Resolved = slices.Delete(s.Resolved, 0, len(s.Resolved)-maxResolved)
				}
			}
		}, nil
	case events.NetworkIncident:
		return func(at time.Time, day int32) {
			s.bucket(day, func(b *Day) { b.Incidents++ })
			s.note(kindIncident, ref, at)
		}, nil
	case events.SurveyAnswered:
		switch {
		case d.Kind == "nps" && d.Score >= 0 && d.Score <= 10:
			return func(at time.Time, _ int32) { latest(&s.LastNPS, Fact{Ref: ref, Time: at, Value: int64(d.Score)}) }, nil
		case d.Kind == "csat" && d.Score >= 1 && d.Score <= 5:
			return func(at time.Time, _ int32) { latest(&s.LastCSAT, Fact{Ref: ref, Time: at, Value: int64(d.Score)}) }, nil
		}
		return nil, fmt.Errorf("score: %d is out of range for kind %q (nps 0-10, csat 1-5)", d.Score, d.Kind)
	case events.PlanChanged:
		var end int32
		if d.ContractEnd != "" {
			var err error
			if end, err = parseDay("contract_end", d.ContractEnd); err != nil {
				return nil, err
			}
		}
		return func(at time.Time, day int32) {
			if d.Direction == "downgrade" {
				s.bucket(day, func(b *Day) { b.Downgrades++ })
				s.note(kindDowngrade, ref, at)
			}
			if d.ContractEnd != "" {
				latest(&s.ContractEnd, Fact{Ref: ref, Time: at, Value: int64(end)})
			}
		}, nil
	case events.CustomerRegistered:
		var end int32
		if d.ContractEnd != "" {
			var err error
			if end, err = parseDay("contract_end", d.ContractEnd); err != nil {
				return nil, err
			}
		}
		return func(at time.Time, _ int32) {
			earliest(&s.Registered, Fact{Ref: ref, Time: at})
			if d.ContractEnd != "" {
				latest(&s.ContractEnd, Fact{Ref: ref, Time: at, Value: int64(end)})
			}
		}, nil
	case events.CustomerUpdated:
		if d.ContractEnd == "" {
			return func(time.Time, int32) {}, nil
		}
		end, err := parseDay("contract_end", d.ContractEnd)
		if err != nil {
			return nil, err
		}
		return func(at time.Time, _ int32) { latest(&s.ContractEnd, Fact{Ref: ref, Time: at, Value: int64(end)}) }, nil
	case events.DeviceChanged:
		bought, err := parseDay("purchased_at", d.PurchasedAt)
		if err != nil {
			return nil, err
		}
		return func(at time.Time, _ int32) { latest(&s.Device, Fact{Ref: ref, Time: at, Value: int64(bought)}) }, nil
	case events.PortOutRequested:
		return func(at time.Time, _ int32) { earliest(&s.PortOut, Fact{Ref: ref, Time: at}) }, nil
	case events.SubscriptionTerminated:
		return func(at time.Time, _ int32) { earliest(&s.Terminated, Fact{Ref: ref, Time: at}) }, nil
	default: // a clock tick or a payload the features do not read: time passes
		return func(time.Time, int32) {}, nil
	}
}

// after orders facts by time, then by reference, so ties resolve the same way
// whatever the arrival order.
func after(a, b Fact) bool {
	return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Ref.Source, b.Ref.Source), cmp.Compare(a.Ref.ID, b.Ref.ID)) > 0
}

func latest(f *Fact, n Fact) {
	if !f.set() || after(n, *f) {
		*f = n
	}
}

func earliest(f *Fact, n Fact) {
	if !f.set() || after(*f, n) {
		*f = n
	}
}

// bucket runs fn on the bucket of day, creating it; a day that has left the
// window (older than Now's day minus DaysKept) is dropped.
func (s *State) bucket(day int32, fn func(*Day)) {
	if day <= DayOf(s.Now)-DaysKept {
		return
	}
	i, ok := slices.BinarySearchFunc(s.Days, day, func(d Day, day int32) int { return cmp.Compare(d.Day, day) })
	if !ok {
		s.Days = slices.Insert(s.Days, i, Day{Day: day})
	}
	fn(&s.Days[i])
}

// note records an event behind a kind: newest first, bounded.
func (s *State) note(kind string, ref events.EventRef, at time.Time) {
	if s.Recent == nil {
		s.Recent = map[string][]Evidence{}
	}
	list := s.Recent[kind]
	if slices.ContainsFunc(list, func(e Evidence) bool { return e.Ref == ref }) {
		return
	}
	list = append(list, Evidence{Ref: ref, Time: at})
	slices.SortFunc(list, func(a, b Evidence) int {
		return cmp.Or(b.Time.Compare(a.Time), cmp.Compare(a.Ref.Source, b.Ref.Source), cmp.Compare(a.Ref.ID, b.Ref.ID))
	})
	if len(list) > MaxEvidence {
		list = list[:MaxEvidence]
	}
	s.Recent[kind] = list
}

// prune drops the buckets that left the window.
func (s *State) prune() {
	low := DayOf(s.Now) - DaysKept
	i := 0
	for i < len(s.Days) && s.Days[i].Day <= low {
		i++
	}
	if i > 0 {
		s.Days = slices.Delete(s.Days, 0, i)
	}
	// Empty sets are nil, as JSON reads them back.
	if len(s.Days) == 0 {
		s.Days = nil
	}
	if len(s.Open) == 0 {
		s.Open = nil
	}
}
