package churn

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/migrate"
	"github.com/touchstream/touchstream/projections/outbox"
	"github.com/touchstream/touchstream/projections/valuetier"
)

// Name is the projection's name; its versions are churn_v1, churn_v2, ...
const Name = "churn"

//go:embed migrations/*.sql
var migrations embed.FS

// Options configure the projection.
type Options struct {
	// Target is the schema this version writes (churn_v1).
	Target string
	// Rules is the rule scorer (deploy/churn-rules.json): it scores before any
	// churn.model_activated is in force, and whenever the log activates its version.
	Rules *features.Scorer
	// Pin scores the whole history with one scorer ("rules:<version>" or a trained
	// model's "sha256:<hex>"), for a what-if or a corrected rebuild; "": the scorers
	// the log activates, each from its effective time.
	Pin string
	// Policy: hysteresis, cool-down and reasons kept per alert.
	Policy Policy
	// Tiers is the value tier table (valuetier.Default when zero).
	Tiers valuetier.Config
	// Outbox: alert transitions also go to the transactional outbox (forwarded to
	// the SIGNALS stream), in the batch's transaction. They are always recorded in
	// the version's signals table.
	Outbox bool
}

// Projection folds the log into churn features, scores and alerts.
type Projection struct {
	opts    Options
	q       string // the target schema, quoted
	scorers *scorers
}

// New returns the projection.
func New(opts Options) (*Projection, error) {
	var errs []error
	if opts.Rules == nil {
		errs = append(errs, errors.New("Options.Rules: required (deploy/churn-rules.json)"))
	}
	if opts.Target == "" {
		errs = append(errs, errors.New("Options.Target: required"))
	}
	opts.Policy.setDefaults()
	if err := opts.Policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Options.Policy: %w", err))
	}
	if len(opts.Tiers.Tiers) == 0 {
		opts.Tiers = valuetier.Default()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("churn: %w", err)
	}
	return &Projection{opts: opts, q: pgx.Identifier{opts.Target}.Sanitize(), scorers: newScorers(opts.Rules)}, nil
}

func (p *Projection) Name() string   { return Name }
func (p *Projection) Target() string { return p.opts.Target }

// Migrate creates the tables (and the model store, which scorers are loaded from).
func (p *Projection) Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if p.opts.Outbox {
		if err := outbox.Migrate(ctx, pool); err != nil {
			return err
		}
	}
	if err := MigrateModels(ctx, pool); err != nil {
		return err
	}
	return migrate.Apply(ctx, pool, Name, p.opts.Target, migrations, "migrations")
}

// record is one customer's stored document.
type record struct {
	F         features.State  `json:"features"`
	L         lifecycle       `json:"lifecycle"`
	Score     *features.Score `json:"score,omitempty"`
	ScoredAt  time.Time       `json:"scored_at,omitzero"`
	Region    string          `json:"region,omitempty"`
	Segment   string          `json:"segment,omitempty"`
	SnapMonth int             `json:"snap_month,omitempty"` // the last local month snapshotted
	Logged    float64         `json:"logged,omitempty"`     // the score last written to history
}

// state is a customer being folded in a batch.
type state struct {
	r         record
	partition int
	seq       uint64
	events    int64
	dirty     bool
	snaps     []snapshot
	history   []historyRow
	value     int64 // monthly value as of the last score (valued: computed in this batch)
	valued    bool
}

type snapshot struct {
	month int
	asOf  time.Time
	vals  []float64
}

type historyRow struct {
	at    time.Time
	seq   uint64
	score float64
	model string
}

// decoded lists the event types whose payload the fold reads; the others only move
// the customer's time on.
var decoded = map[string]bool{
	events.TypeRechargeCompleted: true, events.TypeBillIssued: true, events.TypeBillPaid: true,
	events.TypeUsageSummarized: true, events.TypeCallCompleted: true, events.TypeComplaintOpened: true,
	events.TypeComplaintResolved: true, events.TypeNetworkIncident: true, events.TypeSurveyAnswered: true,
	events.TypePlanChanged: true, events.TypeCustomerRegistered: true, events.TypeCustomerUpdated: true,
	events.TypeDeviceChanged: true, events.TypePortOutRequested: true, events.TypeSubscriptionTerminated: true,
	events.TypeAlertAcknowledged: true, events.TypeAlertClosed: true, events.TypeOfferPresented: true,
	events.TypeOfferAccepted: true, events.TypeEventRetracted: true,
}

// batchCtx is what a batch's fold needs besides the customers.
type batchCtx struct {
	b     *projections.Batch
	tx    pgx.Tx
	books *books
	sigs  []outbox.Signal
	alert map[string]*Alert // alerts changed in the batch, by id
}

// Apply folds a batch in stream order: each customer event into its customer's
// record, each clock tick into every live customer of its partition; after each, the
// customer is scored again and its alert lifecycle moves.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	order, _ := b.ByCustomer()
	parts := map[int]bool{}
	tickParts := map[int]bool{}
	var acts []struct {
		part int
		a    activation
	}
	for _, e := range b.Events {
		parts[e.Partition] = true
		switch e.Type {
		case events.TypeClockTicked:
			tickParts[e.Partition] = true
		case events.TypeChurnModelActivated:
			payload, err := events.Decode(&e.Event)
			if err != nil {
				return projections.Poison(e, err)
			}
			d := payload.(*events.ChurnModelActivated)
			if _, err := p.scorers.get(ctx, tx, d.Model); err != nil {
				var unknown *errUnknownScorer
				if errors.As(err, &unknown) {
					return projections.Poison(e, err)
				}
				return err
			}
			acts = append(acts, struct {
				part int
				a    activation
			}{e.Partition, activation{seq: e.Seq, id: e.ID, model: d.Model, effective: d.EffectiveAt}})
		}
	}
	t := time.Now()
	bc := &batchCtx{b: b, tx: tx, alert: map[string]*Alert{}}
	var err error
	if bc.books, err = p.loadBooks(ctx, tx, parts); err != nil {
		return err
	}
	custs, err := p.load(ctx, tx, order, tickParts)
	if err != nil {
		return err
	}
	b.Stage("load", t)
	t = time.Now()
	for _, e := range b.Events {
		switch c := e.Customer(); {
		case c != "":
			st := custs[c]
			if st == nil {
				st = &state{partition: e.Partition}
				custs[c] = st
			}
			if e.Seq <= st.seq {
				return fmt.Errorf("churn: seq=%d after %d for one customer: out of order", e.Seq, st.seq)
			}
			if err := p.applyEvent(ctx, bc, c, st, e); err != nil {
				return err
			}
		case e.Type == events.TypeClockTicked:
			for _, c := range live(custs, e) {
				if err := p.tick(ctx, bc, c, custs[c], e); err != nil {
					return err
				}
			}
		case e.Type == events.TypeChurnModelActivated:
			for _, ba := range acts {
				if ba.a.seq == e.Seq && ba.part == e.Partition {
					bc.books.acts[e.Partition] = append(bc.books.acts[e.Partition], ba.a)
				}
			}
		}
	}
	b.Stage("fold", t)
	t = time.Now()
	if err := p.store(ctx, tx, custs, acts, bc.alert); err != nil {
		return err
	}
	if err := outbox.Record(ctx, tx, p.opts.Target, p.opts.Outbox, bc.sigs...); err != nil {
		return err
	}
	b.Stage("store", t)
	return nil
}

// live lists, in a stable order, the customers of the tick's partition the tick
// reaches: known before it in the stream and not terminated.
func live(custs map[string]*state, tick *projections.Envelope) []string {
	var out []string
	for c, st := range custs {
		if st.partition == tick.Partition && !st.r.L.Terminated && st.seq != 0 && st.seq < tick.Seq {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// applyEvent folds one customer event and scores the customer after it.
func (p *Projection) applyEvent(ctx context.Context, bc *batchCtx, c string, st *state, e *projections.Envelope) error {
	var payload any
	if decoded[e.Type] {
		var err error
		if payload, err = e.Payload(); err != nil {
			return projections.Poison(e, err)
		}
	}
	st.seq, st.dirty = e.Seq, true
	st.events++
	if r, ok := payload.(*events.EventRetracted); ok {
		return p.retract(ctx, bc, c, st, e, r)
	}
	p.snapshotMonths(st, e.Time)
	if err := st.r.F.Apply(features.FromEnvelope(&e.Event, payload)); err != nil {
		return projections.Poison(e, err)
	}
	switch d := payload.(type) {
	case *events.CustomerRegistered:
		st.r.Region, st.r.Segment = d.Region, d.Segment
	case *events.CustomerUpdated:
		if d.Region != "" {
			st.r.Region = d.Region
		}
		if d.Segment != "" {
			st.r.Segment = d.Segment
		}
	case *events.SubscriptionTerminated:
		if tr := st.r.L.terminated(e.Time); tr != nil {
			if err := p.transition(ctx, bc, c, e, tr); err != nil {
				return err
			}
		}
	case *events.AlertAcknowledged:
		return p.desk(ctx, bc, c, st, e, d.AlertID, d)
	case *events.AlertClosed:
		return p.desk(ctx, bc, c, st, e, d.AlertID, d)
	case *events.OfferPresented:
		if err := p.desk(ctx, bc, c, st, e, d.AlertID, d); err != nil {
			return err
		}
	case *events.OfferAccepted:
		if err := p.desk(ctx, bc, c, st, e, d.AlertID, d); err != nil {
			return err
		}
	}
	return p.score(ctx, bc, c, st, e)
}

func (p *Projection) desk(ctx context.Context, bc *batchCtx, c string, st *state, e *projections.Envelope, alertID string, d any) error {
	if tr := st.r.L.desk(alertID, e.Time, e.Ref(), d); tr != nil {
		return p.transition(ctx, bc, c, e, tr)
	}
	return nil
}

// tick moves a silent customer's time to the tick and scores it again.
func (p *Projection) tick(ctx context.Context, bc *batchCtx, c string, st *state, e *projections.Envelope) error {
	if !e.Time.After(st.r.F.Now) {
		return nil
	}
	p.snapshotMonths(st, e.Time)
	if err := st.r.F.Apply(features.Event{Ref: e.Ref(), Time: e.Time}); err != nil {
		return projections.Poison(e, err)
	}
	st.seq, st.dirty = max(st.seq, e.Seq), true
	return p.score(ctx, bc, c, st, e)
}

// snapshotMonths stores the features as of the end of every local month the state
// leaves by moving to t (what was known then), up to two years back.
func (p *Projection) snapshotMonths(st *state, t time.Time) {
	now := st.r.F.Now
	if now.IsZero() || !t.After(now) {
		return
	}
	from, to := int(p.opts.Tiers.MonthOf(now)), int(p.opts.Tiers.MonthOf(t))
	from = max(from, st.r.SnapMonth+1, to-24)
	if st.r.SnapMonth == 0 {
		from = max(int(p.opts.Tiers.MonthOf(now)), to-24)
	}
	for m := from; m < to; m++ {
		asOf := monthStart(m+1, p.opts.Tiers.Location()).Add(-time.Nanosecond)
		if st.r.F.Terminated.Time.Before(asOf) && !st.r.F.Terminated.Time.IsZero() {
			break
		}
		v := st.r.F.Snapshot(asOf)
		vals := make([]float64, len(v.Features))
		for i, f := range v.Features {
			vals[i] = f.Value
		}
		st.snaps = append(st.snaps, snapshot{month: m, asOf: asOf, vals: vals})
		st.r.SnapMonth = m
	}
}

func monthStart(m int, loc *time.Location) time.Time {
	return time.Date(m/12, time.Month(m%12+1), 1, 0, 0, 0, 0, loc)
}

// score scores the customer as of its state's time with the scorer in force for e,
// and moves its alert lifecycle.
func (p *Projection) score(ctx context.Context, bc *batchCtx, c string, st *state, e *projections.Envelope) error {
	if st.r.L.Terminated {
		return nil
	}
	name := p.opts.Pin
	if name == "" {
		name = bc.books.name(e.Partition, e.Seq, e.Time, p.scorers.rules.Version())
	}
	sc, err := p.scorers.get(ctx, bc.tx, name)
	if err != nil {
		var unknown *errUnknownScorer
		if errors.As(err, &unknown) {
			return projections.Poison(e, err)
		}
		return err
	}
	v := st.r.F.Snapshot(st.r.F.Now)
	s := sc.Score(v)
	st.value, st.valued = valueFen(v), true
	st.r.Score, st.r.ScoredAt = &s, st.r.F.Now
	if math.Abs(s.Probability-st.r.Logged) >= 0.01 || st.r.Logged == 0 {
		st.history = append(st.history, historyRow{at: st.r.F.Now, seq: e.Seq, score: s.Probability, model: s.Version})
		st.r.Logged = s.Probability
	}
	if tr := st.r.L.scored(p.opts.Policy, c, e.Ref(), e.Time, s, sc.Threshold(), st.value); tr != nil {
		return p.transition(ctx, bc, c, e, tr)
	}
	return nil
}

// valueFen is what the customer brings a month: its spend baseline, or the last 30
// days' spend when it has no baseline yet.
func valueFen(v features.Vector) int64 {
	base, _ := v.Value(features.SpendBaseline30d)
	if base <= 0 {
		base, _ = v.Value(features.Spend30d)
	}
	return int64(math.Round(max(base, 0) * 100))
}

// transition records an alert change and, where the batch may emit, its signal.
func (p *Projection) transition(ctx context.Context, bc *batchCtx, c string, e *projections.Envelope, tr *transition) error {
	a := *tr.alert
	a.Reasons = slices.Clone(a.Reasons)
	a.Actions = slices.Clone(a.Actions)
	bc.alert[a.ID] = &a
	emit, err := bc.b.Emitting(ctx, e)
	if err != nil || !emit {
		return err
	}
	data, err := json.Marshal(signalData(&a))
	if err != nil {
		return fmt.Errorf("churn: signal %s: %w", tr.typ, err)
	}
	bc.sigs = append(bc.sigs, outbox.Signal{ID: outbox.NewID(tr.typ, e.Ref(), a.ID), Type: tr.typ, Customer: c, Partition: e.Partition,
		Time: e.Time, Seq: e.Seq, CausedBy: e.Ref(), Target: p.opts.Target, Data: data})
	return nil
}

// SignalData is the data of an alert signal: ids, scores, reasons and the desk's
// progress, never personal data.
type SignalData struct {
	AlertID  string            `json:"alert_id"`
	State    string            `json:"state"`
	Outcome  string            `json:"outcome,omitempty"`
	Score    float64           `json:"score"`
	Model    string            `json:"model"`
	ValueFen int64             `json:"value_fen"`
	Reasons  []features.Reason `json:"reasons"`
	Actions  int               `json:"actions,omitempty"`
}

func signalData(a *Alert) SignalData {
	return SignalData{AlertID: a.ID, State: a.State, Outcome: a.Outcome, Score: a.Score, Model: a.Model,
		ValueFen: a.ValueFen, Reasons: a.Reasons, Actions: len(a.Actions)}
}
