package loyalty

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/projections/migrate"
	"github.com/touchstream/touchstream/projections/outbox"
)

// Name is the projection's name; its versions are loyalty_v1, loyalty_v2, ...
const Name = "loyalty"

//go:embed migrations/*.sql
var migrations embed.FS

// Signal types the projection raises.
const (
	SignalTierChanged = "loyalty.tier_changed"
	SignalOverdraft   = "loyalty.overdraft"
)

// Options configure the projection.
type Options struct {
	// Target is the schema this version writes (loyalty_v1).
	Target string
	// Rules are the versioned earning rules (deploy/loyalty.json).
	Rules *ledger.RuleSet
	// Pin folds the whole history under one rule version (a correction or a what-if
	// rebuild); "" : the versions the log activates, each from its effective time.
	Pin string
	// Outbox: signals also go to the transactional outbox (forwarded to the SIGNALS
	// stream), in the batch's transaction. They are always recorded in the version's
	// signals table.
	Outbox bool
}

// Projection folds the log into the loyalty ledger.
type Projection struct {
	opts   Options
	pinned *ledger.Schedule
}

// New returns the projection.
func New(opts Options) (*Projection, error) {
	if opts.Rules == nil {
		return nil, errors.New("loyalty: Options.Rules: required (deploy/loyalty.json)")
	}
	if opts.Target == "" {
		return nil, errors.New("loyalty: Options.Target: required")
	}
	p := &Projection{opts: opts}
	if opts.Pin != "" {
		s, err := opts.Rules.Pinned(opts.Pin)
		if err != nil {
			return nil, fmt.Errorf("loyalty: Options.Pin: %w", err)
		}
		p.pinned = s
	}
	return p, nil
}

func (p *Projection) Name() string   { return Name }
func (p *Projection) Target() string { return p.opts.Target }

// DeferredIndexes are the ledger indexes only readers use (members by tier, the
// monthly totals): a rebuild creates them at its end. The fold reads members and
// entries by customer and members due for expiry by (partition, next_due).
func (p *Projection) DeferredIndexes() []string { return []string{"members_tier", "entries_month"} }

// Migrate creates the tables.
func (p *Projection) Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if p.opts.Outbox {
		if err := outbox.Migrate(ctx, pool); err != nil {
			return err
		}
	}
	return migrate.Apply(ctx, pool, Name, p.opts.Target, migrations, "migrations")
}

// activation is a rules activation met in a partition.
type activation struct {
	seq uint64
	id  string
	act ledger.Activation
}

// books answers, per partition, the schedule an event at a stream sequence earns
// under: the activations met before it in the partition.
type books struct {
	set    *ledger.RuleSet
	pinned *ledger.Schedule
	acts   map[int][]activation       // by seq
	prefix map[int][]*ledger.Schedule // prefix[k]: the first k activations
}

func (bk *books) at(partition int, seq uint64) (ledger.Rulebook, error) {
	if bk.pinned != nil {
		return bk.pinned, nil
	}
	acts := bk.acts[partition]
	k := sort.Search(len(acts), func(i int) bool { return acts[i].seq >= seq })
	sched := bk.prefix[partition]
	if sched == nil {
		sched = make([]*ledger.Schedule, len(acts)+1)
		bk.prefix[partition] = sched
	}
	if sched[k] == nil {
		as := make([]ledger.Activation, k)
		for i := range k {
			as[i] = acts[i].act
		}
		s, err := bk.set.Schedule(as...)
		if err != nil {
			return nil, err
		}
		sched[k] = s
	}
	return sched[k], nil
}

// relevant lists the event types that change a ledger; any other event only moves the
// member's time on.
var relevant = map[string]bool{
	events.TypeRechargeCompleted: true, events.TypeBillPaid: true, events.TypeRechargeReversed: true,
	events.TypePointsRedeemed: true, events.TypeCustomerRegistered: true, events.TypePlanChanged: true,
	events.TypeEventRetracted: true, events.TypePointsAdjusted: true,
}

// ledgerEvent decodes what the ledger needs of an envelope.
func ledgerEvent(e *projections.Envelope) (ledger.Event, error) {
	ev := ledger.Event{Ref: e.Ref(), Time: e.Time}
	if relevant[e.Type] {
		payload, err := e.Payload()
		if err != nil {
			return ev, err
		}
		ev.Data = payload
		if a, ok := payload.(*events.PointsAdjusted); ok {
			ev.Data = ledger.Adjustment{Points: a.Points, Reason: a.Reason}
		}
	}
	return ev, nil
}

// state is a member being folded in a batch.
type state struct {
	m          *ledger.Member
	partition  int
	seq        uint64
	storedN    int   // entries already stored
	events     int64 // events of the member folded
	recomputed bool  // the stored entries are replaced
	isNew      bool
}

// Apply folds a batch.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	order, by := b.ByCustomer()
	var batchActs []struct {
		part int
		a    activation
	}
	var ticks []*projections.Envelope
	parts := map[int]bool{}
	for _, e := range b.Events {
		parts[e.Partition] = true
		switch e.Type {
		case events.TypeLoyaltyRulesActivated:
			payload, err := events.Decode(&e.Event)
			if err != nil {
				return projections.Poison(e, err)
			}
			d := payload.(*events.LoyaltyRulesActivated)
			if _, err := p.opts.Rules.Version(d.Version); err != nil {
				return projections.Poison(e, fmt.Errorf("loyalty.rules_activated: version: %w", err))
			}
			batchActs = append(batchActs, struct {
				part int
				a    activation
			}{e.Partition, activation{seq: e.Seq, id: e.ID, act: ledger.Activation{Version: d.Version, Effective: d.EffectiveAt}}})
		case events.TypeClockTicked:
			ticks = append(ticks, e)
		}
	}
	bk, err := p.loadBooks(ctx, tx, parts)
	if err != nil {
		return err
	}
	for _, ba := range batchActs {
		bk.acts[ba.part] = append(bk.acts[ba.part], ba.a)
	}

	t := time.Now()
	members, err := p.load(ctx, tx, order)
	if err != nil {
		return err
	}
	b.Stage("load", t)
	t = time.Now()
	var sigs []outbox.Signal
	var settle []string
	for _, c := range order {
		st := members[c]
		if st == nil {
			st = &state{m: &ledger.Member{}, partition: by[c][0].Partition, isNew: true}
			members[c] = st
		}
		for _, e := range by[c] {
			if e.Seq <= st.seq {
				return fmt.Errorf("loyalty: seq=%d after %d for one member: out of order", e.Seq, st.seq)
			}
			st.seq = e.Seq
			st.events++
			book, err := bk.at(e.Partition, e.Seq)
			if err != nil {
				return projections.Poison(e, err)
			}
			if _, err := book.At(e.Time); errors.Is(err, ledger.ErrNoRules) {
				st.events-- // no rules in force at its time (the club was not open): earns nothing
				continue
			}
			ev, err := ledgerEvent(e)
			if err != nil {
				return projections.Poison(e, err)
			}
			out, err := st.m.Apply(book, ev)
			if err != nil {
				return projections.Poison(e, err)
			}
			if out.Recompute {
				before := st.m.Tier
				if st.m, st.events, err = p.recompute(ctx, b, c, e, book); err != nil {
					return err
				}
				st.recomputed = true
				if st.m.Tier != before || st.m.Overdraft > 0 {
					// A signal already sent is followed by a correcting one.
					corr := ledger.Outcome{Overdraft: st.m.Overdraft > 0}
					if st.m.Tier != before {
						corr.TierChanges = []ledger.TierChange{{From: before, To: st.m.Tier, At: e.Time, Reason: "correction"}}
					}
					emit, err := b.Emitting(ctx, e)
					if err != nil {
						return err
					}
					if emit {
						sigs = append(sigs, p.signalsOf(c, e, st.m, corr)...)
					}
				}
				continue
			}
			if r, ok := ev.Data.(*events.PointsRedeemed); ok && r.ReservationID != "" {
				settle = append(settle, r.ReservationID)
			}
			if len(out.TierChanges) > 0 || out.Overdraft {
				emit, err := b.Emitting(ctx, e)
				if err != nil {
					return err
				}
				if emit {
					sigs = append(sigs, p.signalsOf(c, e, st.m, out)...)
				}
			}
		}
	}
	// Clock ticks move silent members past their expiries, reviews and anniversaries.
	for _, tick := range ticks {
		due, err := p.loadDue(ctx, tx, tick.Partition, tick.Time, members)
		if err != nil {
			return err
		}
		for _, c := range due {
			st := members[c]
			book, err := bk.at(tick.Partition, tick.Seq)
			if err != nil {
				return projections.Poison(tick, err)
			}
			out, err := st.m.Apply(book, ledger.Event{Ref: tick.Ref(), Time: tick.Time})
			if errors.Is(err, ledger.ErrNoRules) {
				continue
			}
			if err != nil {
				return projections.Poison(tick, err)
			}
			st.seq = max(st.seq, tick.Seq)
			order = append(order, c)
			if len(out.TierChanges) > 0 {
				emit, err := b.Emitting(ctx, tick)
				if err != nil {
					return err
				}
				if emit {
					sigs = append(sigs, p.signalsOf(c, tick, st.m, out)...)
				}
			}
		}
	}
	b.Stage("fold", t)
	t = time.Now()
	if err := p.store(ctx, tx, order, members, batchActs); err != nil {
		return err
	}
	if err := outbox.Record(ctx, tx, p.opts.Target, p.opts.Outbox, sigs...); err != nil {
		return err
	}
	if err := Settle(ctx, tx, settle); err != nil {
		return err
	}
	b.Stage("store", t)
	return nil
}

// recompute folds a member again from its events in the log (after a retraction hit
// an event already in its ledger), through the customer index.
func (p *Projection) recompute(ctx context.Context, b *projections.Batch, customer string, at *projections.Envelope, book ledger.Rulebook) (*ledger.Member, int64, error) {
	history, err := b.History(ctx, customer, at.Seq)
	if err != nil {
		return nil, 0, fmt.Errorf("loyalty: recompute %s after seq=%d: %w", customer, at.Seq, err)
	}
	return p.fold(history, book)
}

// fold folds a member from its events, under one rulebook, and says how many of them
// it folded (those before the club had rules in force are not).
func (p *Projection) fold(history []*projections.Envelope, book ledger.Rulebook) (*ledger.Member, int64, error) {
	evs := make([]ledger.Event, 0, len(history))
	for _, h := range history {
		ev, err := ledgerEvent(h)
		if err != nil {
			return nil, 0, projections.Poison(h, err)
		}
		if _, err := book.At(h.Time); errors.Is(err, ledger.ErrNoRules) {
			continue
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return &ledger.Member{}, 0, nil
	}
	m, err := ledger.Recompute(book, evs)
	return m, int64(len(evs)), err
}

// RecomputeCustomer replaces one member's rows with a fold from scratch of its events
// (projections.CustomerRecomputer): rebuild --customer and dead-letter redrive.
func (p *Projection) RecomputeCustomer(ctx context.Context, tx pgx.Tx, customer string, partition int, history []*projections.Envelope) error {
	bk, err := p.loadBooks(ctx, tx, map[int]bool{partition: true})
	if err != nil {
		return err
	}
	var last uint64
	if len(history) > 0 {
		last = history[len(history)-1].Seq
	}
	book, err := bk.at(partition, last+1)
	if err != nil {
		return err
	}
	m, n, err := p.fold(history, book)
	if err != nil {
		return err
	}
	q := pgx.Identifier{p.opts.Target}.Sanitize()
	if _, err := tx.Exec(ctx, `DELETE FROM `+q+`.entries WHERE customer_id = $1`, customer); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+q+`.members WHERE customer_id = $1`, customer); err != nil {
		return err
	}
	if m.V == 0 {
		return nil
	}
	st := &state{m: m, partition: partition, seq: last, recomputed: true, isNew: true, events: n}
	return p.store(ctx, tx, []string{customer}, map[string]*state{customer: st}, nil)
}

var _ projections.CustomerRecomputer = (*Projection)(nil)

func (p *Projection) signalsOf(customer string, e *projections.Envelope, m *ledger.Member, out ledger.Outcome) []outbox.Signal {
	var sigs []outbox.Signal
	for i, tc := range out.TierChanges {
		data, _ := json.Marshal(tc)
		sigs = append(sigs, p.newSignal(SignalTierChanged, customer, e, fmt.Sprint(i), data))
	}
	if out.Overdraft {
		data, _ := json.Marshal(map[string]int64{"owed_points": m.Overdraft})
		sigs = append(sigs, p.newSignal(SignalOverdraft, customer, e, "", data))
	}
	return sigs
}

func (p *Projection) newSignal(typ, customer string, e *projections.Envelope, disc string, data json.RawMessage) outbox.Signal {
	return outbox.Signal{ID: outbox.NewID(typ, e.Ref(), customer+"/"+disc), Type: typ, Customer: customer, Partition: e.Partition,
		Time: e.Time, Seq: e.Seq, CausedBy: e.Ref(), Target: p.opts.Target, Data: data}
}

// loadBooks reads the activations of the partitions from the version's table.
func (p *Projection) loadBooks(ctx context.Context, tx pgx.Tx, parts map[int]bool) (*books, error) {
	bk := &books{set: p.opts.Rules, pinned: p.pinned, acts: map[int][]activation{}, prefix: map[int][]*ledger.Schedule{}}
	if p.pinned != nil {
		return bk, nil
	}
	ps := make([]int32, 0, len(parts))
	for part := range parts {
		ps = append(ps, int32(part))
	}
	rows, err := tx.Query(ctx, `SELECT partition, seq, activation_id, version, effective_at FROM `+pgx.Identifier{p.opts.Target}.Sanitize()+
		`.activations WHERE partition = ANY($1) ORDER BY partition, seq`, ps)
	if err != nil {
		return nil, fmt.Errorf("loyalty: load activations: %w", err)
	}
	var part int32
	var seq int64
	var a activation
	_, err = pgx.ForEachRow(rows, []any{&part, &seq, &a.id, &a.act.Version, &a.act.Effective}, func() error {
		a.seq = uint64(seq)
		bk.acts[int(part)] = append(bk.acts[int(part)], a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loyalty: load activations: %w", err)
	}
	return bk, nil
}

// load reads the members of the batch.
func (p *Projection) load(ctx context.Context, tx pgx.Tx, customers []string) (map[string]*state, error) {
	rows, err := tx.Query(ctx, `SELECT customer_id, partition, seq, entries_total, events, doc FROM `+pgx.Identifier{p.opts.Target}.Sanitize()+
		`.members WHERE customer_id = ANY($1)`, customers)
	if err != nil {
		return nil, fmt.Errorf("loyalty: load members: %w", err)
	}
	return scanStates(rows, make(map[string]*state, len(customers)))
}

// loadDue reads the partition's members due to advance at or before t that the batch
// does not hold yet, and returns every due member's id.
func (p *Projection) loadDue(ctx context.Context, tx pgx.Tx, partition int, t time.Time, have map[string]*state) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT customer_id, partition, seq, entries_total, events, doc FROM `+pgx.Identifier{p.opts.Target}.Sanitize()+
		`.members WHERE partition = $1 AND next_due <= $2`, partition, t)
	if err != nil {
		return nil, fmt.Errorf("loyalty: load due members: %w", err)
	}
	fresh, err := scanStates(rows, map[string]*state{})
	if err != nil {
		return nil, err
	}
	due := make([]string, 0, len(fresh))
	for c, st := range fresh {
		if _, ok := have[c]; !ok {
			have[c] = st
		}
		due = append(due, c)
	}
	for c, st := range have {
		if st.partition == partition && st.m.V != 0 && !slices.Contains(due, c) {
			if d := st.m.NextDue(p.opts.Rules); !d.IsZero() && !d.After(t) {
				due = append(due, c)
			}
		}
	}
	slices.Sort(due)
	return due, nil
}

func scanStates(rows pgx.Rows, out map[string]*state) (map[string]*state, error) {
	var c string
	var part, n int32
	var seq, evs int64
	var doc []byte
	_, err := pgx.ForEachRow(rows, []any{&c, &part, &seq, &n, &evs, &doc}, func() error {
		m, err := ledger.Decode(doc)
		if err != nil {
			return fmt.Errorf("member %s: %w", c, err)
		}
		out[c] = &state{m: m, partition: int(part), seq: uint64(seq), storedN: int(n), events: evs}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loyalty: load members: %w", err)
	}
	return out, nil
}

// store writes the batch's members (one upsert), their new ledger entries (one
// insert; a recomputed member's entries are replaced) and the activations met.
func (p *Projection) store(ctx context.Context, tx pgx.Tx, order []string, members map[string]*state, acts []struct {
	part int
	a    activation
}) error {
	q := pgx.Identifier{p.opts.Target}.Sanitize()
	loc := p.opts.Rules.Location()
	seen := make(map[string]bool, len(order))
	var (
		ids, tiers                []string
		parts, totals             []int32
		balances, overdrafts, seq []int64
		evCounts                  []int64
		nows                      []time.Time
		dues                      []*time.Time
		docs                      [][]byte
		replace                   []string
		eCust, eKind, eSrc, eID   []string
		eRules                    []string
		eN, eMonth, ePart         []int32
		ePoints                   []int64
		eAt                       []time.Time
	)
	for _, c := range order {
		st := members[c]
		if seen[c] || st == nil || st.m.V == 0 {
			continue
		}
		seen[c] = true
		doc, err := json.Marshal(st.m)
		if err != nil {
			return fmt.Errorf("loyalty: encode member %s: %w", c, err)
		}
		ids, parts, tiers = append(ids, c), append(parts, int32(st.partition)), append(tiers, st.m.Tier)
		balances, overdrafts = append(balances, st.m.Balance(st.m.Now)), append(overdrafts, st.m.Overdraft)
		nows, seq, totals, docs = append(nows, st.m.Now), append(seq, int64(st.seq)), append(totals, int32(len(st.m.Entries))), append(docs, doc)
		evCounts = append(evCounts, st.events)
		var due *time.Time
		if d := st.m.NextDue(p.opts.Rules); !d.IsZero() {
			due = &d
		}
		dues = append(dues, due)
		from := st.storedN
		if st.recomputed {
			replace, from = append(replace, c), 0
		}
		for n := from; n < len(st.m.Entries); n++ {
			e := st.m.Entries[n]
			eCust, eN, eKind, ePoints = append(eCust, c), append(eN, int32(n)), append(eKind, string(e.Kind)), append(ePoints, e.Points)
			eAt, eMonth, ePart = append(eAt, e.At), append(eMonth, int32(ledger.Month(e.At, loc))), append(ePart, int32(st.partition))
			eSrc, eID, eRules = append(eSrc, e.Event.Source), append(eID, e.Event.ID), append(eRules, e.Rules)
		}
	}
	if len(replace) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM `+q+`.entries WHERE customer_id = ANY($1)`, replace); err != nil {
			return fmt.Errorf("loyalty: replace entries: %w", err)
		}
	}
	if len(ids) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.members AS m (customer_id, partition, tier, balance, overdraft, now_at, next_due, entries_total, events, seq, doc)
			SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[], $8::int[], $9::bigint[], $10::bigint[], $11::bytea[])
			ON CONFLICT (customer_id) DO UPDATE SET tier = excluded.tier, balance = excluded.balance, overdraft = excluded.overdraft,
				now_at = excluded.now_at, next_due = excluded.next_due, entries_total = excluded.entries_total, events = excluded.events,
				seq = excluded.seq, doc = excluded.doc`,
			ids, parts, tiers, balances, overdrafts, nows, dues, totals, evCounts, seq, docs); err != nil {
			return fmt.Errorf("loyalty: store members: %w", err)
		}
	}
	if len(eCust) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.entries (customer_id, n, kind, points, at, month, event_source, event_id, rules, partition)
			SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::timestamptz[], $6::int[], $7::text[], $8::text[], $9::text[], $10::int[])`,
			eCust, eN, eKind, ePoints, eAt, eMonth, eSrc, eID, eRules, ePart); err != nil {
			return fmt.Errorf("loyalty: store entries: %w", err)
		}
	}
	if len(acts) > 0 {
		var ap []int32
		var as []int64
		var aid, aver []string
		var aeff []time.Time
		for _, a := range acts {
			ap, as, aid = append(ap, int32(a.part)), append(as, int64(a.a.seq)), append(aid, a.a.id)
			aver, aeff = append(aver, a.a.act.Version), append(aeff, a.a.act.Effective)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.activations (partition, seq, activation_id, version, effective_at)
			SELECT * FROM unnest($1::int[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[]) ON CONFLICT DO NOTHING`,
			ap, as, aid, aver, aeff); err != nil {
			return fmt.Errorf("loyalty: store activations: %w", err)
		}
	}
	return nil
}

// Settle marks redemption reservations settled once their points.redeemed is folded,
// in the folding transaction: from then on the ledger, not the reservation, holds the
// points back. Unknown ids are ignored; so is a database where the redemption service
// never ran (no reservations table).
func Settle(ctx context.Context, tx pgx.Tx, reservationIDs []string) error {
	if len(reservationIDs) == 0 {
		return nil
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('redeem.reservations') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("loyalty: settle reservations: %w", err)
	}
	if !exists {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE redeem.reservations SET status = 'settled', settled_at = now()
		WHERE id = ANY($1::text[]) AND status <> 'settled'`, reservationIDs); err != nil {
		return fmt.Errorf("loyalty: settle reservations: %w", err)
	}
	return nil
}

var _ projections.IndexDeferrer = (*Projection)(nil)
