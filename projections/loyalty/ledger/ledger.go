package ledger

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"

	"github.com/touchstream/touchstream/events"
)

// maxFen bounds amounts (one hundred billion yuan) so that no product overflows.
const maxFen = 10_000_000_000_000

// maxPoints bounds the points of one redemption or adjustment.
const maxPoints = 1_000_000_000_000

// monthsKept is how far back the per-month counters reach: more than any window
// (24 months) or cap period (a year) can look.
const monthsKept = 36

// Event is one event of the member as the ledger needs it: its reference, its event
// time and its decoded payload. Data is a payload from the events package, as a value
// or a pointer: RechargeCompleted, BillPaid, RechargeReversed, PointsRedeemed,
// CustomerRegistered, PlanChanged, EventRetracted; or an Adjustment. Any other payload
// (a clock tick, a store visit, nil) only advances the member's time.
type Event struct {
	Ref  events.EventRef
	Time time.Time
	Data any
}

// FromEnvelope pairs an envelope with its decoded payload.
func FromEnvelope(e *events.Event, payload any) Event {
	return Event{Ref: e.Ref(), Time: e.Time, Data: payload}
}

// Adjustment is a club correction of a member's points: positive adds a lot, negative
// consumes lots like a redemption (an overdraft if short). There is no event type for
// it yet; the projection maps one to it when there is.
type Adjustment struct {
	Points int64  `json:"points"` // never zero
	Reason string `json:"reason"` // no personal data
}

// Outcome is what one Apply did.
type Outcome struct {
	Entries     []Entry      // the entries appended, in order
	TierChanges []TierChange // for the tier-change signal
	// Overdraft is set when a debit found too few points and the member now owes
	// points: the projection raises a signal; it never fails the event.
	Overdraft bool
	// Recompute is set when a retraction hit an event already in the ledger. The
	// member is then stale: replace it with Recompute over the member's events.
	Recompute bool
	// Skipped is set when the event was retracted earlier: it was applied as a clock
	// tick (time passed), nothing else.
	Skipped bool
}

// Apply folds one event into the member under the rules the book has in force at
// the event's time. Events are applied in stream order; an event older than Now (a
// late event) earns under its own time but cannot move Now back. Errors are
// permanent (an invalid payload, no rules in force) and leave the member unchanged,
// provided the book answers for every time after one it has answered (Schedule does).
func (m *Member) Apply(book Rulebook, ev Event) (Outcome, error) {
	n := len(m.Entries)
	out, err := m.apply(book, ev, nil)
	if err != nil {
		return Outcome{}, fmt.Errorf("loyalty apply %s %s: %w", ev.Ref.Source, ev.Ref.ID, err)
	}
	out.Entries = slices.Clone(m.Entries[n:])
	return out, nil
}

// Recompute folds a member's events (stream order, retractions included) from
// nothing. A retracted event that had touched the ledger is left out, as if never
// applied (it counts as a clock tick: its time passed), and a 0-point retract entry
// marks where its retraction stood; this is
// exactly the state the live fold reaches when it recomputes at each such
// retraction, so replay equals live. Retractions are final: retracting a retraction
// has no effect.
//
// Undoing a retracted earning or redemption incrementally is not sound, because lots
// may have been consumed since, caps may have withheld later points and tiers may
// have moved; recomputing the one member is simple and exact.
func Recompute(book Rulebook, evs []Event) (*Member, error) {
	skip := map[events.EventRef]bool{}
	for {
		m := &Member{}
		restart := false
		for _, ev := range evs {
			out, err := m.apply(book, ev, skip)
			if err != nil {
				return nil, fmt.Errorf("loyalty recompute %s %s: %w", ev.Ref.Source, ev.Ref.ID, err)
			}
			if out.Recompute {
				skip[target(ev)] = true
				restart = true
				break
			}
		}
		if !restart {
			return m, nil
		}
	}
}

func target(ev Event) events.EventRef {
	if r, ok := payload(ev.Data).(events.EventRetracted); ok {
		return r.Target
	}
	return events.EventRef{}
}

// payload dereferences pointer payloads.
func payload(d any) any {
	switch p := d.(type) {
	case *events.RechargeCompleted:
		return *p
	case *events.BillPaid:
		return *p
	case *events.RechargeReversed:
		return *p
	case *events.PointsRedeemed:
		return *p
	case *events.CustomerRegistered:
		return *p
	case *events.PlanChanged:
		return *p
	case *events.EventRetracted:
		return *p
	case *Adjustment:
		return *p
	}
	return d
}

func checkMoney(field string, m events.Money, positive bool) error {
	switch {
	case m.Currency != "" && m.Currency != "CNY":
		return fmt.Errorf("%s.currency: %q: the club earns in CNY only", field, m.Currency)
	case m.Fen < 0 || (positive && m.Fen == 0):
		return fmt.Errorf("%s.fen: %d: must be positive", field, m.Fen)
	case m.Fen > maxFen:
		return fmt.Errorf("%s.fen: %d: above %d", field, m.Fen, int64(maxFen))
	}
	return nil
}

func validate(ev Event, data any) error {
	switch {
	case ev.Ref.Source == "":
		return errors.New("source: required")
	case ev.Ref.ID == "":
		return errors.New("id: required")
	case ev.Time.IsZero():
		return errors.New("time: required")
	}
	switch p := data.(type) {
	case events.RechargeCompleted:
		return checkMoney("amount", p.Amount, false)
	case events.BillPaid:
		return checkMoney("amount", p.Amount, false)
	case events.RechargeReversed:
		if p.Recharge.Source == "" || p.Recharge.ID == "" {
			return errors.New("recharge: source and id required")
		}
		return checkMoney("amount", p.Amount, true)
	case events.PointsRedeemed:
		if p.Points < 1 || p.Points > maxPoints {
			return fmt.Errorf("points: %d: must be 1-%d", p.Points, int64(maxPoints))
		}
	case events.EventRetracted:
		if p.Target.Source == "" || p.Target.ID == "" {
			return errors.New("target: source and id required")
		}
	case Adjustment:
		if p.Points == 0 || p.Points > maxPoints || p.Points < -maxPoints {
			return fmt.Errorf("points: %d: must be non-zero, at most %d either way", p.Points, int64(maxPoints))
		}
	}
	return nil
}

// apply is Apply with the replay's skip set: targets of retractions that touched the
// ledger, left out and marked.
func (m *Member) apply(book Rulebook, ev Event, skip map[events.EventRef]bool) (Outcome, error) {
	data := payload(ev.Data)
	if err := validate(ev, data); err != nil {
		return Outcome{}, err
	}
	ret, isRetraction := data.(events.EventRetracted)
	// A retracted event is applied as a clock tick: time passed, nothing else.
	skipped := !isRetraction && (skip[ev.Ref] || slices.Contains(m.Retracted, ev.Ref))
	t := ev.Time.UTC()
	r, err := book.At(t)
	if err != nil {
		return Outcome{}, err
	}
	rNow := r // the rules at the member's Now after this event, for upgrades
	if m.Now.After(t) {
		if rNow, err = book.At(m.Now); err != nil {
			return Outcome{}, err
		}
	}
	var out Outcome
	if m.V == 0 {
		m.V = StateVersion
		m.Now = t
		m.Tier = r.Tiers.Levels[0].Name
		m.TierSince = t
		m.NextReview = r.nextReview(t)
	} else if t.After(m.Now) {
		if err := m.advance(book, t, r.loc, &out); err != nil {
			return Outcome{}, err
		}
	}

	switch {
	case isRetraction:
		m.retract(r, ev, t, ret.Target, skip, &out)
	case skipped:
		out.Skipped = true
	default:
		switch p := data.(type) {
		case events.RechargeCompleted:
			m.earn(r, ev.Ref, t, events.TypeRechargeCompleted, p.Amount.Fen, r.Earning.Recharge)
		case events.BillPaid:
			m.earn(r, ev.Ref, t, events.TypeBillPaid, p.Amount.Fen, r.Earning.BillPayment)
		case events.RechargeReversed:
			m.reverse(r, ev.Ref, t, p, &out)
		case events.PointsRedeemed:
			m.debit(Entry{Kind: KindRedeem, At: t, Event: ev.Ref, Rules: r.ID}, p.Points, 0, &out)
		case Adjustment:
			e := Entry{Kind: KindAdjust, Points: p.Points, At: t, Event: ev.Ref, Rules: r.ID, Note: p.Reason}
			if p.Points > 0 {
				m.credit(r, &e, KindAdjust)
				m.Entries = append(m.Entries, e)
			} else {
				m.debit(e, -p.Points, 0, &out)
			}
		case events.CustomerRegistered:
			m.register(r, ev.Ref, t, p)
		case events.PlanChanged:
			m.PlanKind = p.To.Kind
			m.PlanEvents = append(m.PlanEvents, ev.Ref)
		}
	}

	m.expireDue(m.Now)
	m.upgrade(rNow, &out)
	first := monthOf(m.Now, r.loc) - monthsKept
	pruneMonths(m.Qualifying, first)
	pruneMonths(m.Earned, first)
	return out, nil
}

// advance moves Now to t, applying in time order what happens in between: lot
// expiries, tier reviews, anniversaries (at the same instant, in that order). Every
// version of a rule set shares its zone, loc.
func (m *Member) advance(book Rulebook, t time.Time, loc *time.Location, out *Outcome) error {
	for {
		const (
			none = iota
			expiry
			review
			anniversary
		)
		what, when := none, t
		if len(m.Lots) > 0 && !m.Lots[0].ExpiresAt.After(when) {
			what, when = expiry, m.Lots[0].ExpiresAt
		}
		if !m.NextReview.IsZero() && !m.NextReview.After(when) && (what == none || m.NextReview.Before(when)) {
			what, when = review, m.NextReview
		}
		if !m.Registered.IsZero() {
			ann := anniversaryAt(m.Registered, m.Anniversaries+1, loc)
			if !ann.After(when) && (what == none || ann.Before(when)) {
				what, when = anniversary, ann
			}
		}
		if what == none {
			break
		}
		m.Now = when
		r, err := book.At(when)
		if err != nil {
			return err
		}
		switch what {
		case expiry:
			m.expireDue(when)
		case review:
			m.review(r, when, out)
		case anniversary:
			m.Anniversaries++
			level, _ := r.level(m.Tier)
			if level.AnniversaryBonusPoints > 0 {
				e := Entry{Kind: KindBonus, Points: level.AnniversaryBonusPoints, At: when, Event: m.Registration,
					Rules: r.ID, Note: fmt.Sprintf("anniversary %d", m.Anniversaries)}
				m.credit(r, &e, KindBonus)
				m.Entries = append(m.Entries, e)
			}
		}
	}
	m.Now = t
	return nil
}

// anniversaryAt is the start of the local day of the n-th anniversary of registered
// (29 February falls on 1 March in other years).
func anniversaryAt(registered time.Time, n int, loc *time.Location) time.Time {
	l := registered.In(loc)
	return time.Date(l.Year()+n, l.Month(), l.Day(), 0, 0, 0, 0, loc).UTC()
}

// expireDue expires every lot whose expiry is at or before t.
func (m *Member) expireDue(t time.Time) {
	for len(m.Lots) > 0 && !m.Lots[0].ExpiresAt.After(t) {
		l := m.Lots[0]
		m.Lots = m.Lots[1:]
		m.Entries = append(m.Entries, Entry{Kind: KindExpire, Points: -l.Remaining, At: l.ExpiresAt,
			Event: l.Source, Rules: l.Rules, Lots: []LotUse{{Lot: l.ID, Points: l.Remaining}}})
	}
	if len(m.Lots) == 0 {
		m.Lots = nil
	}
}

// review sets the tier from the window that ends with the month before the review:
// the one place a tier can go down.
func (m *Member) review(r *Rules, at time.Time, out *Outcome) {
	end := monthOf(at, r.loc) - 1
	q := sumMonths(m.Qualifying, end-r.Tiers.WindowMonths+1, end)
	level, _ := r.qualify(q)
	if level.Name != m.Tier {
		out.TierChanges = append(out.TierChanges, TierChange{From: m.Tier, To: level.Name, At: at, Reason: "review", Rules: r.ID})
		m.Tier, m.TierSince = level.Name, at
	}
	m.NextReview = r.nextReview(at)
}

// upgrade moves the member up at once when the window ending now qualifies for a
// higher tier.
func (m *Member) upgrade(r *Rules, out *Outcome) {
	q, _ := m.Window(r, m.Now)
	level, idx := r.qualify(q)
	if _, cur := r.level(m.Tier); idx > cur {
		out.TierChanges = append(out.TierChanges, TierChange{From: m.Tier, To: level.Name, At: m.Now, Reason: "upgrade", Rules: r.ID})
		m.Tier, m.TierSince = level.Name, m.Now
	}
}

// earn records points for spend: base = floor(fen × rate / 100) counts towards tiers;
// awarded = floor(fen × rate × tier% × campaign% / 100³), once per event, then cut to
// what the caps leave. An entry is written even for 0 points, so every spend is
// traceable (rate 0, capped).
func (m *Member) earn(r *Rules, ref events.EventRef, t time.Time, eventType string, fen int64, rate Rate) {
	ppy := rate.pointsPerYuan(ref.Source, m.PlanKind)
	level, _ := r.level(m.Tier)
	e := Entry{Kind: KindEarn, At: t, Event: ref, Rules: r.ID, SpendFen: fen}
	pct := int64(100)
	if c := r.campaign(eventType, t); c != nil {
		pct, e.Campaign = c.MultiplierPercent, c.ID
	}
	e.Qualifying = mulDiv(fen, ppy, 100)
	full := mulDiv(fen, ppy*level.MultiplierPercent*pct, 100*100*100)
	month := monthOf(t, r.loc)
	pts := full
	for _, c := range r.Caps {
		var used int64
		if c.Period == "month" {
			used = m.Earned[monthKey(month)]
		} else {
			y := month - month%12
			used = sumMonths(m.Earned, y, y+11)
		}
		pts = min(pts, max(0, c.Points-used))
	}
	e.Points, e.Capped = pts, full-pts
	addMonth(&m.Earned, month, pts)
	addMonth(&m.Qualifying, month, e.Qualifying)
	m.credit(r, &e, KindEarn)
	m.Entries = append(m.Entries, e)
}

// register grants the joining bonus on the first registration; a later one changes
// nothing but the plan kind it does not set either (it is a duplicate).
func (m *Member) register(r *Rules, ref events.EventRef, t time.Time, p events.CustomerRegistered) {
	if !m.Registered.IsZero() {
		return
	}
	m.Registered, m.Registration = t, ref
	for !anniversaryAt(t, m.Anniversaries+1, r.loc).After(m.Now) {
		m.Anniversaries++ // a late registration does not grant anniversaries already past
	}
	if p.Plan.Kind != "" {
		m.PlanKind = p.Plan.Kind
		m.PlanEvents = append(m.PlanEvents, ref)
	}
	e := Entry{Kind: KindBonus, Points: r.JoiningBonusPoints, At: t, Event: ref, Rules: r.ID, Note: "joining"}
	m.credit(r, &e, KindBonus)
	m.Entries = append(m.Entries, e)
}

// credit puts e.Points into the ledger: first repaying any overdraft, the rest as a
// new lot expiring under r.
func (m *Member) credit(r *Rules, e *Entry, kind Kind) {
	if e.Points <= 0 {
		return
	}
	repay := min(e.Points, m.Overdraft)
	m.Overdraft -= repay
	e.Repaid = repay
	if rest := e.Points - repay; rest > 0 {
		m.NextLot++
		l := Lot{ID: m.NextLot, Kind: kind, Points: rest, Remaining: rest, EarnedAt: e.At,
			ExpiresAt: r.expiresAt(e.At), Source: e.Event, Rules: r.ID}
		m.insertLot(l)
		e.Lot = l.ID
	}
}

// debit takes points from the lots (lot prefer first, then oldest expiry first),
// appending e with what was taken and, when the lots fall short, an overdraft entry
// for the rest.
func (m *Member) debit(e Entry, points int64, prefer int64, out *Outcome) {
	var taken int64
	take := func(i int) {
		n := min(points-taken, m.Lots[i].Remaining)
		if n <= 0 {
			return
		}
		m.Lots[i].Remaining -= n
		taken += n
		e.Lots = append(e.Lots, LotUse{Lot: m.Lots[i].ID, Points: n})
	}
	if i := slices.IndexFunc(m.Lots, func(l Lot) bool { return l.ID == prefer }); prefer != 0 && i >= 0 {
		take(i)
	}
	for i := range m.Lots {
		take(i)
	}
	m.Lots = slices.DeleteFunc(m.Lots, func(l Lot) bool { return l.Remaining == 0 })
	if len(m.Lots) == 0 {
		m.Lots = nil
	}
	e.Points = -taken
	m.Entries = append(m.Entries, e)
	if short := points - taken; short > 0 {
		m.Overdraft += short
		m.Entries = append(m.Entries, Entry{Kind: KindOverdraft, Points: -short, At: e.At, Event: e.Event,
			Target: e.Target, Rules: e.Rules, Note: fmt.Sprintf("%s short of points", e.Kind)})
		out.Overdraft = true
	}
}

// reverse takes back the points a recharge earned, in proportion to the amount
// reversed: after reversals totalling the recharge, exactly all of its points and
// qualifying points are back. Points come from the recharge's own lot first, then
// the oldest; if they were spent, the member goes into overdraft.
func (m *Member) reverse(r *Rules, ref events.EventRef, t time.Time, p events.RechargeReversed, out *Outcome) {
	e := Entry{Kind: KindReverse, At: t, Event: ref, Target: p.Recharge, Rules: r.ID}
	i := slices.IndexFunc(m.Entries, func(x Entry) bool { return x.Kind == KindEarn && x.Event == p.Recharge })
	if i < 0 {
		e.Note = "recharge not in the ledger"
		m.Entries = append(m.Entries, e)
		return
	}
	earned := m.Entries[i]
	var doneFen, donePts, doneQual int64
	for _, x := range m.Entries[i+1:] {
		if x.Kind == KindReverse && x.Target == p.Recharge {
			doneFen += x.SpendFen
			donePts += -x.Points
			doneQual += -x.Qualifying
		}
		if x.Kind == KindOverdraft && x.Target == p.Recharge {
			donePts += -x.Points
		}
	}
	cum := min(doneFen+p.Amount.Fen, earned.SpendFen)
	e.SpendFen = cum - doneFen
	var pts, qual int64
	if earned.SpendFen > 0 {
		pts = mulDiv(earned.Points, cum, earned.SpendFen) - donePts
		qual = mulDiv(earned.Qualifying, cum, earned.SpendFen) - doneQual
	}
	if e.SpendFen < p.Amount.Fen {
		e.Note = "reversal beyond the recharge amount: capped"
	}
	e.Qualifying = -qual
	month := monthOf(earned.At, r.loc)
	addMonth(&m.Earned, month, -pts)
	addMonth(&m.Qualifying, month, -qual)
	m.debit(e, pts, earned.Lot, out)
}

// retract handles a retraction: it records the target so the target is skipped if it
// comes later, and asks for a recompute when the target touched the ledger. In a
// recompute (the target in skip) it writes the 0-point marker instead.
func (m *Member) retract(r *Rules, ev Event, t time.Time, tgt events.EventRef, skip map[events.EventRef]bool, out *Outcome) {
	if slices.Contains(m.Retracted, tgt) {
		return
	}
	m.Retracted = append(m.Retracted, tgt)
	switch {
	case skip[tgt]:
		m.Entries = append(m.Entries, Entry{Kind: KindRetract, At: t, Event: ev.Ref, Target: tgt, Rules: r.ID})
	case m.touched(tgt):
		out.Recompute = true
	}
}

// touched reports whether an event has had any effect on the member.
func (m *Member) touched(ref events.EventRef) bool {
	if m.Registration == ref || slices.Contains(m.PlanEvents, ref) {
		return true
	}
	return slices.ContainsFunc(m.Entries, func(e Entry) bool { return e.Event == ref })
}

// mulDiv is floor(a×b/d) for non-negative a, b and positive d, without overflow in
// the product; a quotient beyond int64 saturates.
func mulDiv(a, b, d int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(d) {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, uint64(d))
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}
