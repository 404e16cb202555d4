package features

import (
	"slices"
	"time"

	"github.com/touchstream/touchstream/events"
)

// Feature names, in the stable order of a Vector.
const (
	Spend30d            = "spend_30d_yuan"
	SpendBaseline30d    = "spend_baseline_30d_yuan"
	SpendDrop           = "spend_drop"
	Voice30d            = "voice_minutes_30d"
	VoiceDrop           = "voice_drop"
	Data30d             = "data_mb_30d"
	DataDrop            = "data_drop"
	DroppedCalls30d     = "dropped_calls_30d"
	Incidents30d        = "network_incidents_30d"
	ComplaintsOpen      = "complaints_open"
	Complaints30d       = "complaints_30d"
	ComplaintsOverdue   = "complaints_past_deadline"
	CareCalls30d        = "care_calls_30d"
	RetentionCalls30d   = "retention_calls_30d"
	LastCSAT            = "last_csat"
	LastNPS             = "last_nps"
	Detractor           = "survey_detractor"
	DaysSinceRecharge   = "days_since_recharge"
	DaysSincePayment    = "days_since_payment"
	DaysSinceSpend      = "days_since_recharge_or_payment"
	TenureMonths        = "tenure_months"
	MonthsToContractEnd = "months_to_contract_end"
	HandsetAgeMonths    = "handset_age_months"
	Downgrades90d       = "downgrades_90d"
	PortOutRequested    = "port_out_requested"
	DaysSincePortOut    = "days_since_port_out"
	unknown             = -1
)

var names = []string{
	Spend30d, SpendBaseline30d, SpendDrop, Voice30d, VoiceDrop, Data30d, DataDrop,
	DroppedCalls30d, Incidents30d, ComplaintsOpen, Complaints30d, ComplaintsOverdue,
	CareCalls30d, RetentionCalls30d, LastCSAT, LastNPS, Detractor, DaysSinceRecharge,
	DaysSincePayment, DaysSinceSpend, TenureMonths, MonthsToContractEnd, HandsetAgeMonths,
	Downgrades90d, PortOutRequested, DaysSincePortOut,
}

// Names returns the feature names in their stable order.
func Names() []string { return slices.Clone(names) }

// Feature is one named value and the events behind it (at most MaxEvidence, the
// most recent first).
type Feature struct {
	Name   string            `json:"name"`
	Value  float64           `json:"value"`
	Events []events.EventRef `json:"events,omitempty"`
}

// Vector is a customer's features as of an instant, in the order of Names.
type Vector struct {
	AsOf     time.Time `json:"as_of"`
	Features []Feature `json:"features"`
}

// Value returns a feature's value and whether the vector has it.
func (v Vector) Value(name string) (float64, bool) {
	if f := v.Feature(name); f != nil {
		return f.Value, true
	}
	return 0, false
}

// Feature returns the named feature, nil if absent.
func (v Vector) Feature(name string) *Feature {
	for i := range v.Features {
		if v.Features[i].Name == name {
			return &v.Features[i]
		}
	}
	return nil
}

// Snapshot computes the features as of asOf (normally the state's Now; a clock tick
// moves Now when the customer is silent). Windows are whole calendar days in Zone
// ending with asOf's day; only what happened at or before asOf counts. Buckets older
// than Now's day minus DaysKept are gone, so a snapshot far before Now is partial.
func (s *State) Snapshot(asOf time.Time) Vector {
	asOf = asOf.UTC()
	today := DayOf(asOf)
	sum := func(from, to int32, f func(Day) float64) float64 {
		var t float64
		for _, d := range s.Days {
			if d.Day >= from && d.Day <= to {
				t += f(d)
			}
		}
		return t
	}
	last30 := func(f func(Day) float64) float64 { return sum(today-29, today, f) }
	// The baseline is the customer's own spend in the 90 days before the last 30,
	// per 30 days, over the part of those days since the first event seen; with
	// less than 30 days of history it is unknown and drops are 0.
	baseline := func(f func(Day) float64) (float64, bool) {
		from, to := today-119, today-30
		if s.FirstDay > from {
			from = s.FirstDay
		}
		if s.FirstDay == 0 || to-from+1 < 30 {
			return 0, false
		}
		return sum(from, to, f) * 30 / float64(to-from+1), true
	}
	drop := func(f func(Day) float64) float64 {
		base, ok := baseline(f)
		if !ok || base <= 0 {
			return 0
		}
		return min(1, max(0, 1-last30(f)/base))
	}
	spend := func(d Day) float64 { return float64(d.SpendFen) / 100 }
	voice := func(d Day) float64 { return float64(d.VoiceMinutes) }
	data := func(d Day) float64 { return d.DataMB }

	ev := func(kind string, window int32) []events.EventRef {
		var out []events.EventRef
		for _, e := range s.Recent[kind] {
			if !e.Time.After(asOf) && DayOf(e.Time) > today-window {
				out = append(out, e.Ref)
			}
		}
		return out
	}
	fact := func(f Fact) []events.EventRef {
		if f.set() && !f.Time.After(asOf) {
			return []events.EventRef{f.Ref}
		}
		return nil
	}
	daysSince := func(f Fact) float64 {
		if !f.set() || f.Time.After(asOf) {
			return unknown
		}
		return float64(today - DayOf(f.Time))
	}
	var open, overdue float64
	var openRefs, overdueRefs []events.EventRef
	for i := len(s.Open) - 1; i >= 0; i-- {
		c := s.Open[i]
		if c.Opened.After(asOf) {
			continue
		}
		open++
		if len(openRefs) < MaxEvidence {
			openRefs = append(openRefs, c.Ref)
		}
		if !c.PromisedBy.IsZero() && c.PromisedBy.Before(asOf) {
			overdue++
			if len(overdueRefs) < MaxEvidence {
				overdueRefs = append(overdueRefs, c.Ref)
			}
		}
	}
	surveyValue := func(f Fact) float64 {
		if !f.set() || f.Time.After(asOf) {
			return unknown
		}
		return float64(f.Value)
	}
	// The detractor flag reads the latest survey answered, of either kind.
	var detractor float64
	var detractorRefs []events.EventRef
	csat, nps := s.LastCSAT, s.LastNPS
	if csat.Time.After(asOf) {
		csat = Fact{}
	}
	if nps.Time.After(asOf) {
		nps = Fact{}
	}
	switch {
	case nps.set() && (!csat.set() || after(nps, csat)):
		if nps.Value <= 6 {
			detractor, detractorRefs = 1, []events.EventRef{nps.Ref}
		}
	case csat.set():
		if csat.Value <= 2 {
			detractor, detractorRefs = 1, []events.EventRef{csat.Ref}
		}
	}
	sinceSpend := daysSince(s.LastRecharge)
	spendFact := s.LastRecharge
	if p := daysSince(s.LastPayment); p >= 0 && (sinceSpend < 0 || p < sinceSpend) {
		sinceSpend, spendFact = p, s.LastPayment
	}
	tenure := float64(unknown)
	if s.Registered.set() && !s.Registered.Time.After(asOf) {
		tenure = float64(monthsBetween(s.Registered.Time, asOf))
	}
	toEnd := float64(unknown)
	if s.ContractEnd.set() && !s.ContractEnd.Time.After(asOf) {
		end := dayTime(int32(s.ContractEnd.Value))
		toEnd = float64(max(0, monthsBetween(asOf, end)))
	}
	handset := float64(unknown)
	if s.Device.set() && !s.Device.Time.After(asOf) {
		handset = float64(max(0, monthsBetween(dayTime(int32(s.Device.Value)), asOf)))
	}
	var portOut float64
	if s.PortOut.set() && !s.PortOut.Time.After(asOf) {
		portOut = 1
	}
	n := func(f func(Day) float64) float64 { return last30(f) }
	base, _ := baseline(spend)
	spendRefs := ev(kindSpend, DaysKept)
	usageRefs := ev(kindUsage, DaysKept)
	return Vector{AsOf: asOf, Features: []Feature{
		{Spend30d, last30(spend), ev(kindSpend, 30)},
		{SpendBaseline30d, base, spendRefs},
		{SpendDrop, drop(spend), spendRefs},
		{Voice30d, last30(voice), ev(kindUsage, 30)},
		{VoiceDrop, drop(voice), usageRefs},
		{Data30d, last30(data), ev(kindUsage, 30)},
		{DataDrop, drop(data), usageRefs},
		{DroppedCalls30d, n(func(d Day) float64 { return float64(d.Dropped) }), ev(kindDropped, 30)},
		{Incidents30d, n(func(d Day) float64 { return float64(d.Incidents) }), ev(kindIncident, 30)},
		{ComplaintsOpen, open, openRefs},
		{Complaints30d, n(func(d Day) float64 { return float64(d.Complaints) }), ev(kindComplaint, 30)},
		{ComplaintsOverdue, overdue, overdueRefs},
		{CareCalls30d, n(func(d Day) float64 { return float64(d.Care) }), ev(kindCare, 30)},
		{RetentionCalls30d, n(func(d Day) float64 { return float64(d.Retention) }), ev(kindRetention, 30)},
		{LastCSAT, surveyValue(s.LastCSAT), fact(s.LastCSAT)},
		{LastNPS, surveyValue(s.LastNPS), fact(s.LastNPS)},
		{Detractor, detractor, detractorRefs},
		{DaysSinceRecharge, daysSince(s.LastRecharge), fact(s.LastRecharge)},
		{DaysSincePayment, daysSince(s.LastPayment), fact(s.LastPayment)},
		{DaysSinceSpend, sinceSpend, fact(spendFact)},
		{TenureMonths, tenure, fact(s.Registered)},
		{MonthsToContractEnd, toEnd, fact(s.ContractEnd)},
		{HandsetAgeMonths, handset, fact(s.Device)},
		{Downgrades90d, sum(today-89, today, func(d Day) float64 { return float64(d.Downgrades) }), ev(kindDowngrade, 90)},
		{PortOutRequested, portOut, fact(s.PortOut)},
		{DaysSincePortOut, daysSince(s.PortOut), fact(s.PortOut)},
	}}
}

// dayTime is the start of a day number in Zone.
func dayTime(day int32) time.Time {
	return time.Unix(int64(day)*86400-8*60*60, 0).In(Zone)
}

// monthsBetween counts the whole calendar months from a to b in Zone (negative
// when b is before a).
func monthsBetween(a, b time.Time) int {
	a, b = a.In(Zone), b.In(Zone)
	m := (b.Year()-a.Year())*12 + int(b.Month()-a.Month())
	if m > 0 && b.Day() < a.Day() {
		m--
	} else if m < 0 && b.Day() > a.Day() {
		m++
	}
	return m
}

// DayStart is the first instant of a day number (DayOf) in Zone.
func DayStart(day int32) time.Time { return dayTime(day) }
