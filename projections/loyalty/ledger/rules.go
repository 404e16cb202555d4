package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/touchstream/touchstream/events"
)

// ErrUnknownVersion is returned when a rule version id is not in the rule set.
var ErrUnknownVersion = errors.New("unknown rule version")

// ErrNoRules is returned by a Schedule asked about a time before its first activation.
var ErrNoRules = errors.New("no rule version in force")

// Limits that keep the integer arithmetic far from overflow and the rules explainable.
const (
	maxPointsPerYuan = 100
	minMultiplier    = 100  // percent: a multiplier never reduces points
	maxMultiplier    = 1000 // percent: ten times
	maxBonus         = 1_000_000
	maxExpiryMonths  = 60
	maxWindowMonths  = 24
)

// Plan kinds a rate can match.
const (
	PlanPrepaid  = "prepaid"
	PlanPostpaid = "postpaid"
)

// RuleSet is the content of deploy/loyalty.json: every rule version the club has had.
// A version is immutable once published; a change is a new version, activated through
// the log with an effective time (see Schedule). Use a RuleSet only once validated
// (Load, Parse or Validate): validation also resolves its zone and campaign windows.
type RuleSet struct {
	Comment  string  `json:"comment,omitempty"`
	TimeZone string  `json:"time_zone"` // IANA name; months, days and campaign windows are cut in it
	Versions []Rules `json:"versions"`

	loc *time.Location
}

// Rules is one version of the earning rules.
type Rules struct {
	ID                 string     `json:"id"`
	Description        string     `json:"description,omitempty"`
	Earning            Earning    `json:"earning"`
	Campaigns          []Campaign `json:"campaigns,omitempty"`
	Caps               []Cap      `json:"caps,omitempty"`
	JoiningBonusPoints int64      `json:"joining_bonus_points"` // granted on customer.registered
	Expiry             Expiry     `json:"expiry"`
	Tiers              Tiers      `json:"tiers"`

	loc *time.Location
}

// Earning holds the base rates for the two kinds of spend that earn points.
type Earning struct {
	Recharge    Rate `json:"recharge"`     // recharge.completed: Amount (what the customer paid)
	BillPayment Rate `json:"bill_payment"` // bill.paid: Amount
}

// Rate is points per yuan: the first matching entry of Rates, else the default.
type Rate struct {
	DefaultPointsPerYuan int64       `json:"default_points_per_yuan"`
	Rates                []RateMatch `json:"rates,omitempty"`
}

// RateMatch is a rate for a channel source, a plan kind, or both. An empty field
// matches anything; at least one is set.
type RateMatch struct {
	Source        string `json:"source,omitempty"`    // CloudEvents source, e.g. urn:touchstream:channel:online
	PlanKind      string `json:"plan_kind,omitempty"` // prepaid or postpaid: the member's current plan
	PointsPerYuan int64  `json:"points_per_yuan"`
}

// Campaign multiplies earning inside a window of local time. Start is inclusive, End
// exclusive; a bare date means midnight at the start of that day in the rule set's
// zone. Where campaigns overlap, the highest multiplier applies (they never compound).
type Campaign struct {
	ID                string   `json:"id"`
	Name              string   `json:"name,omitempty"`
	Start             string   `json:"start"` // 2006-01-02 or 2006-01-02T15:04[:05], local
	End               string   `json:"end"`
	MultiplierPercent int64    `json:"multiplier_percent"`    // 200: double points
	EventTypes        []string `json:"event_types,omitempty"` // empty: every earning type

	start, end time.Time
}

// Cap limits the points earned from spend (earn entries, after multipliers, net of
// reversals) per calendar period. Bonuses and adjustments are not capped.
type Cap struct {
	Period string `json:"period"` // month or year, calendar, local time
	Points int64  `json:"points"`
}

// Expiry says when the points of a lot expire.
type Expiry struct {
	Months int    `json:"months"`
	Align  string `json:"align"` // end_of_month: at the end of the Months-th month after earning; exact: Months to the instant
}

// Tiers are the club levels, qualified by the base points of spend earned over a
// rolling window of months (the current month included). Upgrades are immediate;
// downgrades happen only at a review, at the start of every ReviewEveryMonths-th month
// of the calendar year (12: each 1 January, local time).
type Tiers struct {
	WindowMonths      int     `json:"window_months"`
	ReviewEveryMonths int     `json:"review_every_months"`
	Levels            []Level `json:"levels"` // lowest first; the first starts at 0
}

// Level is one club tier.
type Level struct {
	Name                   string `json:"name"`
	MinQualifyingPoints    int64  `json:"min_qualifying_points"`
	MultiplierPercent      int64  `json:"multiplier_percent"`       // applied to earning
	AnniversaryBonusPoints int64  `json:"anniversary_bonus_points"` // at each anniversary of registration
}

// Load reads and validates a rule set.
func Load(path string) (*RuleSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loyalty rules: %w", err)
	}
	rs, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("loyalty rules %s: %w", path, err)
	}
	return rs, nil
}

// Parse decodes and validates a rule set. Unknown fields are errors, so a misspelt
// field never silently falls back to zero.
func Parse(b []byte) (*RuleSet, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var rs RuleSet
	if err := dec.Decode(&rs); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode: trailing data after the rule set")
	}
	if err := rs.Validate(); err != nil {
		return nil, err
	}
	return &rs, nil
}

// Validate checks every field and returns all problems joined, each naming the field
// path and the reason, for example "versions[1].campaigns[0].end: before start".
func (rs *RuleSet) Validate() error {
	var v validator
	loc, err := time.LoadLocation(rs.TimeZone)
	switch {
	case rs.TimeZone == "":
		v.add("time_zone", "required")
	case err != nil:
		v.add("time_zone", fmt.Sprintf("unknown zone %q", rs.TimeZone))
	}
	if err != nil || rs.TimeZone == "" {
		loc = nil
	}
	rs.loc = loc
	if len(rs.Versions) == 0 {
		v.add("versions", "at least one rule version")
	}
	seen := map[string]int{}
	for i := range rs.Versions {
		r := &rs.Versions[i]
		p := fmt.Sprintf("versions[%d]", i)
		if r.ID == "" {
			v.add(p+".id", "required")
		} else if j, dup := seen[r.ID]; dup {
			v.add(p+".id", fmt.Sprintf("%q duplicates versions[%d].id", r.ID, j))
		} else {
			seen[r.ID] = i
		}
		r.loc = loc
		r.validate(&v, p)
	}
	return v.err()
}

func (r *Rules) validate(v *validator, p string) {
	r.Earning.Recharge.validate(v, p+".earning.recharge")
	r.Earning.BillPayment.validate(v, p+".earning.bill_payment")

	ids := map[string]int{}
	for i := range r.Campaigns {
		c := &r.Campaigns[i]
		cp := fmt.Sprintf("%s.campaigns[%d]", p, i)
		if c.ID == "" {
			v.add(cp+".id", "required")
		} else if j, dup := ids[c.ID]; dup {
			v.add(cp+".id", fmt.Sprintf("%q duplicates campaigns[%d].id", c.ID, j))
		} else {
			ids[c.ID] = i
		}
		var startOK, endOK bool
		if r.loc != nil {
			c.start, startOK = v.localTime(cp+".start", c.Start, r.loc)
			c.end, endOK = v.localTime(cp+".end", c.End, r.loc)
		}
		if startOK && endOK {
			switch {
			case c.end.Before(c.start):
				v.add(cp+".end", "before start")
			case c.end.Equal(c.start):
				v.add(cp+".end", "equals start: the window is empty")
			}
		}
		v.multiplier(cp+".multiplier_percent", c.MultiplierPercent)
		for j, t := range c.EventTypes {
			if t != events.TypeRechargeCompleted && t != events.TypeBillPaid {
				v.add(fmt.Sprintf("%s.event_types[%d]", cp, j),
					fmt.Sprintf("%q does not earn points (want %s or %s)", t, events.TypeRechargeCompleted, events.TypeBillPaid))
			}
		}
	}

	periods := map[string]int{}
	for i, c := range r.Caps {
		cp := fmt.Sprintf("%s.caps[%d]", p, i)
		if c.Period != "month" && c.Period != "year" {
			v.add(cp+".period", fmt.Sprintf("%q: want month or year", c.Period))
		} else if j, dup := periods[c.Period]; dup {
			v.add(cp+".period", fmt.Sprintf("%q duplicates caps[%d]", c.Period, j))
		} else {
			periods[c.Period] = i
		}
		if c.Points < 1 {
			v.add(cp+".points", "must be at least 1")
		}
	}

	v.bonus(p+".joining_bonus_points", r.JoiningBonusPoints)

	if r.Expiry.Months < 1 || r.Expiry.Months > maxExpiryMonths {
		v.add(p+".expiry.months", fmt.Sprintf("%d: must be 1-%d", r.Expiry.Months, maxExpiryMonths))
	}
	if r.Expiry.Align != "end_of_month" && r.Expiry.Align != "exact" {
		v.add(p+".expiry.align", fmt.Sprintf("%q: want end_of_month or exact", r.Expiry.Align))
	}

	t := r.Tiers
	tp := p + ".tiers"
	if t.WindowMonths < 1 || t.WindowMonths > maxWindowMonths {
		v.add(tp+".window_months", fmt.Sprintf("%d: must be 1-%d", t.WindowMonths, maxWindowMonths))
	}
	if !slices.Contains([]int{1, 2, 3, 4, 6, 12}, t.ReviewEveryMonths) {
		v.add(tp+".review_every_months", fmt.Sprintf("%d: must divide the year (1, 2, 3, 4, 6 or 12)", t.ReviewEveryMonths))
	}
	if len(t.Levels) == 0 {
		v.add(tp+".levels", "at least one tier")
	}
	names := map[string]int{}
	for i, l := range t.Levels {
		lp := fmt.Sprintf("%s.levels[%d]", tp, i)
		if l.Name == "" {
			v.add(lp+".name", "required")
		} else if j, dup := names[l.Name]; dup {
			v.add(lp+".name", fmt.Sprintf("%q duplicates levels[%d].name", l.Name, j))
		} else {
			names[l.Name] = i
		}
		switch {
		case i == 0 && l.MinQualifyingPoints != 0:
			v.add(lp+".min_qualifying_points", "the lowest tier must start at 0")
		case i > 0 && l.MinQualifyingPoints <= t.Levels[i-1].MinQualifyingPoints:
			v.add(lp+".min_qualifying_points", "must be above the tier below")
		}
		v.multiplier(lp+".multiplier_percent", l.MultiplierPercent)
		v.bonus(lp+".anniversary_bonus_points", l.AnniversaryBonusPoints)
	}
}

func (rt Rate) validate(v *validator, p string) {
	v.rate(p+".default_points_per_yuan", rt.DefaultPointsPerYuan)
	type key struct{ source, kind string }
	seen := map[key]int{}
	for i, m := range rt.Rates {
		mp := fmt.Sprintf("%s.rates[%d]", p, i)
		if m.Source == "" && m.PlanKind == "" {
			v.add(mp, "needs a source, a plan_kind or both (the default covers the rest)")
		}
		if m.PlanKind != "" && m.PlanKind != PlanPrepaid && m.PlanKind != PlanPostpaid {
			v.add(mp+".plan_kind", fmt.Sprintf("%q: want prepaid or postpaid", m.PlanKind))
		}
		if j, dup := seen[key{m.Source, m.PlanKind}]; dup {
			v.add(mp, fmt.Sprintf("duplicates rates[%d]: it could never match", j))
		} else {
			seen[key{m.Source, m.PlanKind}] = i
		}
		v.rate(mp+".points_per_yuan", m.PointsPerYuan)
	}
}

// validator collects field errors in order.
type validator struct{ errs []error }

func (v *validator) add(field, reason string) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", field, reason))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func (v *validator) rate(field string, n int64) {
	if n < 0 || n > maxPointsPerYuan {
		v.add(field, fmt.Sprintf("%d: must be 0-%d", n, maxPointsPerYuan))
	}
}

func (v *validator) multiplier(field string, n int64) {
	if n < minMultiplier || n > maxMultiplier {
		v.add(field, fmt.Sprintf("%d: must be %d-%d percent", n, minMultiplier, maxMultiplier))
	}
}

func (v *validator) bonus(field string, n int64) {
	if n < 0 || n > maxBonus {
		v.add(field, fmt.Sprintf("%d: must be 0-%d", n, maxBonus))
	}
}

var localLayouts = []string{"2006-01-02", "2006-01-02T15:04", "2006-01-02T15:04:05"}

func (v *validator) localTime(field, s string, loc *time.Location) (time.Time, bool) {
	if s == "" {
		v.add(field, "required")
		return time.Time{}, false
	}
	for _, layout := range localLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, true
		}
	}
	v.add(field, fmt.Sprintf("%q: want local time as %s", s, strings.Join(localLayouts, " or ")))
	return time.Time{}, false
}

// Location is the zone months, days and campaign windows are cut in.
func (rs *RuleSet) Location() *time.Location { return rs.loc }

// IDs lists the rule version ids in file order.
func (rs *RuleSet) IDs() []string {
	out := make([]string, len(rs.Versions))
	for i, r := range rs.Versions {
		out[i] = r.ID
	}
	return out
}

// Version returns the rule version with this id.
func (rs *RuleSet) Version(id string) (*Rules, error) {
	for i := range rs.Versions {
		if rs.Versions[i].ID == id {
			return &rs.Versions[i], nil
		}
	}
	return nil, fmt.Errorf("rule version %q: %w", id, ErrUnknownVersion)
}

// Location is the zone the rules cut time in.
func (r *Rules) Location() *time.Location { return r.loc }

// pointsPerYuan picks the rate for a spend: first match, else the default.
func (rt Rate) pointsPerYuan(source, planKind string) int64 {
	for _, m := range rt.Rates {
		if (m.Source == "" || m.Source == source) && (m.PlanKind == "" || m.PlanKind == planKind) {
			return m.PointsPerYuan
		}
	}
	return rt.DefaultPointsPerYuan
}

// campaign returns the campaign with the highest multiplier in force at t for an
// earning event type, or nil.
func (r *Rules) campaign(eventType string, t time.Time) *Campaign {
	var best *Campaign
	for i := range r.Campaigns {
		c := &r.Campaigns[i]
		if t.Before(c.start) || !t.Before(c.end) {
			continue
		}
		if len(c.EventTypes) > 0 && !slices.Contains(c.EventTypes, eventType) {
			continue
		}
		if best == nil || c.MultiplierPercent > best.MultiplierPercent {
			best = c
		}
	}
	return best
}

// level returns the tier with this name; unknown names (a tier a later version
// dropped) are the lowest tier.
func (r *Rules) level(name string) (Level, int) {
	for i, l := range r.Tiers.Levels {
		if l.Name == name {
			return l, i
		}
	}
	return r.Tiers.Levels[0], 0
}

// qualify returns the highest tier whose minimum the qualifying points reach.
func (r *Rules) qualify(points int64) (Level, int) {
	idx := 0
	for i, l := range r.Tiers.Levels {
		if points >= l.MinQualifyingPoints {
			idx = i
		}
	}
	return r.Tiers.Levels[idx], idx
}

// expiresAt is when a lot earned at t expires (the lot counts while asOf < expiresAt).
func (r *Rules) expiresAt(t time.Time) time.Time {
	if r.Expiry.Align == "exact" {
		return t.AddDate(0, r.Expiry.Months, 0).UTC()
	}
	l := t.In(r.loc)
	return time.Date(l.Year(), l.Month()+time.Month(r.Expiry.Months)+1, 1, 0, 0, 0, 0, r.loc).UTC()
}

// nextReview is the first tier review strictly after t.
func (r *Rules) nextReview(t time.Time) time.Time {
	l := t.In(r.loc)
	every := r.Tiers.ReviewEveryMonths
	m := int(l.Month()) - 1 // 0-based
	next := (m/every + 1) * every
	return time.Date(l.Year(), time.Month(next+1), 1, 0, 0, 0, 0, r.loc).UTC()
}

// Rulebook chooses the rule version in force at an instant of event time.
type Rulebook interface {
	At(t time.Time) (*Rules, error)
}

// Activation puts a rule version in force from an effective time on.
type Activation struct {
	Version   string    `json:"version"`
	Effective time.Time `json:"effective"`
}

// Schedule is the sequence of activations met in the log, a Rulebook. The version in
// force at t is the one activated last among those effective at or before t; of two
// activations with the same effective time, the later one in the log wins.
type Schedule struct {
	set  *RuleSet
	acts []Activation
}

var _ Rulebook = (*Schedule)(nil)

// Schedule returns a schedule of these activations, in log order.
func (rs *RuleSet) Schedule(acts ...Activation) (*Schedule, error) {
	s := &Schedule{set: rs}
	for _, a := range acts {
		if err := s.Activate(a); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Pinned returns a schedule with one version in force at every time: for a rebuild
// pinned to a rule version (a correction or a what-if).
func (rs *RuleSet) Pinned(id string) (*Schedule, error) {
	return rs.Schedule(Activation{Version: id})
}

// Activate adds an activation met in the log.
func (s *Schedule) Activate(a Activation) error {
	if _, err := s.set.Version(a.Version); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	a.Effective = a.Effective.UTC()
	i, _ := slices.BinarySearchFunc(s.acts, a.Effective, func(x Activation, t time.Time) int {
		if x.Effective.After(t) {
			return 1
		}
		return -1 // equal times sort before: the new one goes after them
	})
	s.acts = slices.Insert(s.acts, i, a)
	return nil
}

// Activations lists the activations in effective order.
func (s *Schedule) Activations() []Activation { return slices.Clone(s.acts) }

// At returns the version in force at t.
func (s *Schedule) At(t time.Time) (*Rules, error) {
	i, _ := slices.BinarySearchFunc(s.acts, t, func(x Activation, t time.Time) int {
		if x.Effective.After(t) {
			return 1
		}
		return -1
	})
	if i == 0 {
		return nil, fmt.Errorf("at %s: %w", t.UTC().Format(time.RFC3339), ErrNoRules)
	}
	return s.set.Version(s.acts[i-1].Version)
}
