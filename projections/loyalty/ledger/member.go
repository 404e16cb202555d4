package ledger

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/touchstream/touchstream/events"
)

// StateVersion is the version of Member's JSON form.
const StateVersion = 1

// Kind is the kind of a ledger entry.
type Kind string

// Ledger entry kinds.
const (
	KindEarn      Kind = "earn"      // points from spend (recharge, bill payment)
	KindBonus     Kind = "bonus"     // joining and anniversary bonuses
	KindRedeem    Kind = "redeem"    // points spent (points.redeemed), from lots oldest expiry first
	KindExpire    Kind = "expire"    // a lot's remaining points at its expiry
	KindAdjust    Kind = "adjust"    // a club correction, either sign
	KindReverse   Kind = "reverse"   // points taken back for a reversed recharge
	KindRetract   Kind = "retract"   // marker, 0 points: a retracted event's effects were removed
	KindOverdraft Kind = "overdraft" // the part of a debit the lots could not cover
)

// Member is one club member's ledger state, a pure function of the member's events
// (in stream order) and the rule versions in force. Its JSON form (json.Marshal,
// Decode) is lossless: folding in chunks with a round trip between them gives the same
// state as folding at once. Times are kept in UTC; local calendar questions use the
// rules' zone.
type Member struct {
	V             int               `json:"v"`
	Now           time.Time         `json:"now,omitzero"`          // highest event time applied
	Registered    time.Time         `json:"registered,omitzero"`   // customer.registered event time
	Registration  events.EventRef   `json:"registration,omitzero"` // that event
	Anniversaries int               `json:"anniversaries,omitempty"`
	PlanKind      string            `json:"plan_kind,omitempty"` // prepaid or postpaid, from registration and plan changes
	PlanEvents    []events.EventRef `json:"plan_events,omitempty"`
	Tier          string            `json:"tier,omitempty"`
	TierSince     time.Time         `json:"tier_since,omitzero"`
	NextReview    time.Time         `json:"next_review,omitzero"`
	Qualifying    map[string]int64  `json:"qualifying,omitempty"` // month (YYYY-MM, local) → base points of spend, net
	Earned        map[string]int64  `json:"earned,omitempty"`     // month → points awarded from spend, net: what caps count
	Overdraft     int64             `json:"overdraft,omitempty"`  // points owed; repaid first from new points
	Lots          []Lot             `json:"lots,omitempty"`       // open lots, by expiry then id
	NextLot       int64             `json:"next_lot,omitempty"`
	Entries       []Entry           `json:"entries,omitempty"`   // the ledger, in the order applied
	Retracted     []events.EventRef `json:"retracted,omitempty"` // targets of retractions met
}

// Lot is a parcel of points with one expiry. Consumed oldest expiry first.
type Lot struct {
	ID        int64           `json:"id"`
	Kind      Kind            `json:"kind"`   // earn, bonus or adjust
	Points    int64           `json:"points"` // as granted, after repaying any overdraft
	Remaining int64           `json:"remaining"`
	EarnedAt  time.Time       `json:"earned_at"`
	ExpiresAt time.Time       `json:"expires_at"` // the lot counts while asOf < ExpiresAt
	Source    events.EventRef `json:"source"`
	Rules     string          `json:"rules"`
}

// LotUse is points taken from a lot.
type LotUse struct {
	Lot    int64 `json:"lot"`
	Points int64 `json:"points"`
}

// Entry is one movement of points, traceable to the event that caused it. The sum of
// all entries' Points is the balance.
type Entry struct {
	Kind       Kind            `json:"kind"`
	Points     int64           `json:"points"`          // signed
	At         time.Time       `json:"at"`              // event time; for expiry the lot's expiry, for anniversaries the anniversary
	Event      events.EventRef `json:"event"`           // the cause: the event; for expiry the lot's source; for anniversaries the registration
	Target     events.EventRef `json:"target,omitzero"` // reverse: the recharge; retract: the retracted event
	Rules      string          `json:"rules,omitempty"`
	Lot        int64           `json:"lot,omitempty"`        // the lot created
	Lots       []LotUse        `json:"lots,omitempty"`       // the lots consumed
	SpendFen   int64           `json:"spend_fen,omitempty"`  // earn: the spend; reverse: the amount reversed
	Qualifying int64           `json:"qualifying,omitempty"` // base points counted towards tiers (signed)
	Capped     int64           `json:"capped,omitempty"`     // points withheld by a cap
	Campaign   string          `json:"campaign,omitempty"`
	Repaid     int64           `json:"repaid,omitempty"` // overdraft repaid from these points
	Note       string          `json:"note,omitempty"`
}

// TierChange is a tier move, for the tier-change signal.
type TierChange struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"` // upgrade (immediate) or review (period end, either way)
	Rules  string    `json:"rules"`
}

// Decode reads a Member from its JSON form.
func Decode(b []byte) (*Member, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Member
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode member: %w", err)
	}
	if m.V != 0 && m.V != StateVersion {
		return nil, fmt.Errorf("decode member: v: %d: want %d", m.V, StateVersion)
	}
	return &m, nil
}

// Balance is the points balance as of asOf in event time. At or after Now it is the
// sum of the lots still unexpired at asOf, minus any overdraft; before Now it is the
// sum of the entries dated at or before asOf (what the ledger now knows of that past).
// Balance(Now) always equals the sum of all entries.
func (m *Member) Balance(asOf time.Time) int64 {
	var sum int64
	if asOf.Before(m.Now) {
		for _, e := range m.Entries {
			if !e.At.After(asOf) {
				sum += e.Points
			}
		}
		return sum
	}
	for _, l := range m.Lots {
		if asOf.Before(l.ExpiresAt) {
			sum += l.Remaining
		}
	}
	return sum - m.Overdraft
}

// Available is the balance a redemption may spend at asOf: never below zero.
func (m *Member) Available(asOf time.Time) int64 { return max(0, m.Balance(asOf)) }

// Expiring is the points of the open lots that expire at or before t.
func (m *Member) Expiring(t time.Time) int64 {
	var sum int64
	for _, l := range m.Lots {
		if !l.ExpiresAt.After(t) {
			sum += l.Remaining
		}
	}
	return sum
}

// Window returns the qualifying and the awarded points from spend over the rules'
// rolling tier window ending with (and including) the month of asOf.
func (m *Member) Window(r *Rules, asOf time.Time) (qualifying, earned int64) {
	end := monthOf(asOf, r.loc)
	start := end - r.Tiers.WindowMonths + 1
	return sumMonths(m.Qualifying, start, end), sumMonths(m.Earned, start, end)
}

// Progress is where a member stands in the club.
type Progress struct {
	Tier         string    `json:"tier"`
	Qualifying   int64     `json:"qualifying"`         // base points over the window ending now
	WindowMonths int       `json:"window_months"`      //
	Next         string    `json:"next,omitempty"`     // the tier above; empty at the top
	NextMin      int64     `json:"next_min,omitempty"` // qualifying points it takes
	ToNext       int64     `json:"to_next,omitempty"`  // points still needed
	NextReview   time.Time `json:"next_review"`        // when a downgrade can happen
	AtReview     string    `json:"at_review"`          // the tier the window would give if reviewed now
}

// Progress reports the member's tier and the way to the next one under rules r.
func (m *Member) Progress(r *Rules) Progress {
	q, _ := m.Window(r, m.Now)
	_, idx := r.level(m.Tier)
	at, _ := r.qualify(q)
	p := Progress{Tier: r.Tiers.Levels[idx].Name, Qualifying: q, WindowMonths: r.Tiers.WindowMonths,
		NextReview: m.NextReview, AtReview: at.Name}
	if idx+1 < len(r.Tiers.Levels) {
		n := r.Tiers.Levels[idx+1]
		p.Next, p.NextMin, p.ToNext = n.Name, n.MinQualifyingPoints, max(0, n.MinQualifyingPoints-q)
	}
	return p
}

// Months are counted as year*12 + month-1 in the rules' zone.

func monthOf(t time.Time, loc *time.Location) int {
	l := t.In(loc)
	return l.Year()*12 + int(l.Month()) - 1
}

// monthKey formats a month as YYYY-MM (years 0-9999), which sorts as text.
func monthKey(m int) string {
	y, mo := m/12, m%12+1
	b := [7]byte{byte('0' + y/1000%10), byte('0' + y/100%10), byte('0' + y/10%10), byte('0' + y%10), '-',
		byte('0' + mo/10), byte('0' + mo%10)}
	return string(b[:])
}

// sumMonths adds the months start to end, inclusive. The map holds a few dozen
// months at most, so a scan with two keys beats formatting every month.
func sumMonths(by map[string]int64, start, end int) int64 {
	if end < start || len(by) == 0 {
		return 0
	}
	lo, hi := monthKey(start), monthKey(end)
	var sum int64
	for k, v := range by {
		if k >= lo && k <= hi {
			sum += v
		}
	}
	return sum
}

// addMonth adds delta to a month, keeping no zero values so the JSON form is canonical.
func addMonth(by *map[string]int64, month int, delta int64) {
	if delta == 0 {
		return
	}
	if *by == nil {
		*by = map[string]int64{}
	}
	k := monthKey(month)
	if v := (*by)[k] + delta; v != 0 {
		(*by)[k] = v
	} else {
		delete(*by, k)
	}
}

// pruneMonths drops months before the first one any rule can still look at, once
// the map holds more months than that horizon (so not on every event).
func pruneMonths(by map[string]int64, first int) {
	if len(by) <= monthsKept+1 {
		return
	}
	k := monthKey(first)
	for m := range by {
		if m < k {
			delete(by, m)
		}
	}
}

// insertLot keeps lots ordered by expiry, then id.
func (m *Member) insertLot(l Lot) {
	i, _ := slices.BinarySearchFunc(m.Lots, l, func(a, b Lot) int {
		if c := a.ExpiresAt.Compare(b.ExpiresAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	m.Lots = slices.Insert(m.Lots, i, l)
}

// NextDue is when the member's time next crosses something that changes its ledger by
// itself: a lot's expiry, a tier review or an anniversary. Zero: nothing is due. A
// projection advances a silent member past it at the next clock tick.
func (m *Member) NextDue(rs *RuleSet) time.Time {
	var due time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	if len(m.Lots) > 0 {
		consider(m.Lots[0].ExpiresAt)
	}
	consider(m.NextReview)
	if !m.Registered.IsZero() {
		consider(anniversaryAt(m.Registered, m.Anniversaries+1, rs.Location()))
	}
	return due
}

// Month numbers t's local month as the ledger does: year×12 + month−1.
func Month(t time.Time, loc *time.Location) int { return monthOf(t, loc) }
