package servicelevel

import (
	"container/heap"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/migrate"
	"github.com/touchstream/touchstream/projections/outbox"
)

// Name is the projection's name; its versions are servicelevel_v1, servicelevel_v2, ...
const Name = "servicelevel"

//go:embed migrations/*.sql
var migrations embed.FS

// Signal types the projection raises.
const (
	// SignalComplaintBreached: a complaint missed its promised deadline.
	SignalComplaintBreached = "servicelevel.complaint_breached"
	// SignalBreachWithdrawn: a breach already signalled no longer holds (the
	// complaint's opening was retracted).
	SignalBreachWithdrawn = "servicelevel.complaint_breach_withdrawn"
)

// Service-level targets.
const (
	// AnswerWithinSeconds: an inbound call counts as answered in time when answered with
	// a wait of at most this many seconds.
	AnswerWithinSeconds = 20
	// AnswerTarget is the share of inbound calls to answer in time.
	AnswerTarget = 0.85
)

// Breach reasons, in complaints.breach_reason and the signals' data.
const (
	ReasonDeadlinePassed = "deadline_passed"
	ReasonResolvedLate   = "resolved_late"
	// ReasonOpeningRetracted is the reason of a withdrawal.
	ReasonOpeningRetracted = "opening_retracted"
)

// Options configure the projection.
type Options struct {
	// Target is the schema this version writes (servicelevel_v1).
	Target string
	// Outbox: signals also go to the transactional outbox (forwarded to the SIGNALS
	// stream), in the batch's transaction. They are always recorded in the version's
	// signals table.
	Outbox bool
	// Location is the operator's zone, in which calls are bucketed by hour. Default
	// Asia/Shanghai (UTC+8 when the zone database is missing: no daylight saving).
	Location *time.Location
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	if o.Target == "" {
		errs = append(errs, errors.New("target: required"))
	}
	return errors.Join(errs...)
}

// Projection folds the log into the service-level read model.
type Projection struct {
	opts Options
	q    string // the target schema, quoted
}

var _ projections.Projection = (*Projection)(nil)

// New returns the projection.
func New(opts Options) (*Projection, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("servicelevel: %w", err)
	}
	if opts.Location == nil {
		loc, err := time.LoadLocation("Asia/Shanghai")
		if err != nil {
			loc = time.FixedZone("CST", 8*3600)
		}
		opts.Location = loc
	}
	return &Projection{opts: opts, q: pgx.Identifier{opts.Target}.Sanitize()}, nil
}

func (p *Projection) Name() string   { return Name }
func (p *Projection) Target() string { return p.opts.Target }

// Migrate creates the tables (and the outbox's, when signals go there).
func (p *Projection) Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if p.opts.Outbox {
		if err := outbox.Migrate(ctx, pool); err != nil {
			return err
		}
	}
	return migrate.Apply(ctx, pool, Name, p.opts.Target, migrations, "migrations")
}

// Hour is the start of the operator's local hour holding t.
func (p *Projection) Hour(t time.Time) time.Time {
	l := t.In(p.opts.Location)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), 0, 0, 0, p.opts.Location)
}

// call is a call.completed folded (or loaded to be retracted).
type call struct {
	ref             events.EventRef
	customer, queue string
	hour            time.Time
	inbound         bool
	answered        bool
	within          bool
	wait, handling  int
	retracted       bool
	isNew, dirty    bool
}

// counters are one (queue, hour) row's additive counters.
type counters struct {
	offered, answered, within, abandoned, wait, handling, outbound int64
}

type hourKey struct {
	queue string
	hour  int64 // unix seconds of the hour's start
}

// add adds the call to c (sign +1) or takes it away (-1).
func (cl *call) add(sign int64, c *counters) {
	if !cl.inbound {
		c.outbound += sign
		return
	}
	c.offered += sign
	c.wait += sign * int64(cl.wait)
	if !cl.answered {
		c.abandoned += sign
		return
	}
	c.answered += sign
	c.handling += sign * int64(cl.handling)
	if cl.within {
		c.within += sign
	}
}

type complaintKey struct{ customer, id string }

// complaint is a complaint's row being folded. Zero times stand for NULL.
type complaint struct {
	complaintKey
	partition                                  int
	openedAt, promisedBy, resolvedAt, breached time.Time
	enterprise, isBreached                     bool
	reason                                     string
	opened, resolved                           events.EventRef
	deleted, dirty                             bool
}

// open: opened, not resolved, not yet breached: a deadline still to watch.
func (c *complaint) open() bool {
	return !c.deleted && !c.promisedBy.IsZero() && c.resolvedAt.IsZero() && !c.isBreached
}

// due is a min-heap of open complaints of one partition by deadline (lazy: entries
// whose complaint changed since are skipped when popped).
type due []dueEntry

type dueEntry struct {
	c  *complaint
	by time.Time
}

func (d due) Len() int           { return len(d) }
func (d due) Less(i, j int) bool { return d[i].by.Before(d[j].by) }
func (d due) Swap(i, j int)      { d[i], d[j] = d[j], d[i] }
func (d *due) Push(x any)        { *d = append(*d, x.(dueEntry)) }
func (d *due) Pop() any {
	old := *d
	x := old[len(old)-1]
	*d = old[:len(old)-1]
	return x
}

// item is an event of the batch with its decoded payload (nil for types the model
// does not read).
type item struct {
	e       *projections.Envelope
	payload events.Payload
}

// fold is one batch being folded.
type fold struct {
	p          *Projection
	b          *projections.Batch
	calls      map[events.EventRef]*call
	hourly     map[hourKey]*counters
	complaints map[complaintKey]*complaint
	refs       map[events.EventRef]complaintKey // complaint openings and resolutions by event
	enterprise map[string]bool
	entSet     map[string]bool // enterprise status set by this batch
	evCount    map[string]int64
	custOrder  []string
	now        map[int]time.Time
	due        map[int]*due
	sigs       []outbox.Signal
}

// Apply folds a batch: every event in stream order, each partition's time advancing
// with its events.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	t := time.Now()
	f := &fold{p: p, b: b, calls: map[events.EventRef]*call{}, hourly: map[hourKey]*counters{},
		complaints: map[complaintKey]*complaint{}, refs: map[events.EventRef]complaintKey{},
		enterprise: map[string]bool{}, entSet: map[string]bool{}, evCount: map[string]int64{},
		now: map[int]time.Time{}, due: map[int]*due{}}
	items := make([]item, 0, len(b.Events))
	var (
		callRefs, retracted []events.EventRef
		keys                []complaintKey
		maxTime             = map[int]time.Time{}
	)
	for _, e := range b.Events {
		if _, ok := f.now[e.Partition]; !ok {
			f.now[e.Partition] = b.PartitionTime(e.Partition)
			maxTime[e.Partition] = f.now[e.Partition]
		}
		if e.Time.After(maxTime[e.Partition]) {
			maxTime[e.Partition] = e.Time
		}
		it := item{e: e}
		switch e.Type {
		case events.TypeCallCompleted, events.TypeComplaintOpened, events.TypeComplaintResolved,
			events.TypeCustomerRegistered, events.TypeEventRetracted:
			payload, err := e.Payload()
			if err != nil {
				return projections.Poison(e, err)
			}
			it.payload = payload
			switch d := payload.(type) {
			case *events.CallCompleted:
				callRefs = append(callRefs, e.Ref())
			case *events.ComplaintOpened:
				keys = append(keys, complaintKey{e.Customer(), d.ComplaintID})
			case *events.ComplaintResolved:
				keys = append(keys, complaintKey{e.Customer(), d.ComplaintID})
			case *events.EventRetracted:
				retracted = append(retracted, d.Target)
			}
		}
		items = append(items, it)
	}
	if err := f.loadCalls(ctx, tx, append(callRefs, retracted...)); err != nil {
		return err
	}
	if err := f.loadComplaints(ctx, tx, keys, retracted, maxTime); err != nil {
		return err
	}
	customers := map[string]bool{}
	for _, e := range b.Events {
		if c := e.Customer(); c != "" {
			customers[c] = true
		}
	}
	for k := range f.complaints {
		customers[k.customer] = true
	}
	if err := f.loadEnterprise(ctx, tx, customers); err != nil {
		return err
	}
	b.Stage("load", t)

	t = time.Now()
	for _, it := range items {
		if err := f.apply(ctx, it); err != nil {
			return err
		}
	}
	b.Stage("fold", t)

	t = time.Now()
	if err := f.store(ctx, tx); err != nil {
		return err
	}
	if err := outbox.Record(ctx, tx, p.opts.Target, p.opts.Outbox, f.sigs...); err != nil {
		return err
	}
	b.Stage("store", t)
	return nil
}

// apply folds one event: its partition's time moves to its event time, the event
// changes what it names, then every open complaint of the partition whose deadline the
// partition's time has passed is breached, caused by this event.
func (f *fold) apply(ctx context.Context, it item) error {
	e := it.e
	part := e.Partition
	if e.Time.After(f.now[part]) {
		f.now[part] = e.Time
	}
	if c := e.Customer(); c != "" {
		if _, ok := f.evCount[c]; !ok {
			f.custOrder = append(f.custOrder, c)
		}
		f.evCount[c]++
	}
	switch d := it.payload.(type) {
	case *events.CallCompleted:
		f.call(e, d)
	case *events.ComplaintOpened:
		if err := f.opened(ctx, e, d); err != nil {
			return err
		}
	case *events.ComplaintResolved:
		if err := f.resolved(ctx, e, d); err != nil {
			return err
		}
	case *events.CustomerRegistered:
		f.enterprise[e.Customer()] = d.CustomerType == "enterprise"
		f.entSet[e.Customer()] = true
	case *events.EventRetracted:
		if err := f.retract(ctx, e, d.Target); err != nil {
			return err
		}
	}
	// Deadlines the partition's time has passed.
	h := f.due[part]
	for h != nil && h.Len() > 0 && f.now[part].After((*h)[0].by) {
		de := heap.Pop(h).(dueEntry)
		if !de.c.open() || !de.c.promisedBy.Equal(de.by) {
			continue
		}
		if err := f.breach(ctx, de.c, e, ReasonDeadlinePassed, f.now[part]); err != nil {
			return err
		}
	}
	return nil
}

func (f *fold) call(e *projections.Envelope, d *events.CallCompleted) {
	ref := e.Ref()
	if _, ok := f.calls[ref]; ok {
		return // the same event again (re-sent past the dedup window): folded once
	}
	cl := &call{ref: ref, customer: e.Customer(), queue: d.Queue, hour: f.p.Hour(e.Time),
		inbound: d.Direction != "outbound", answered: d.Answered, wait: d.WaitSeconds, isNew: true}
	if cl.inbound && cl.answered {
		cl.handling = d.HandlingSeconds
		cl.within = d.WaitSeconds <= AnswerWithinSeconds
	}
	f.calls[ref] = cl
	cl.add(1, f.counters(cl))
}

func (f *fold) counters(cl *call) *counters {
	k := hourKey{cl.queue, cl.hour.Unix()}
	c := f.hourly[k]
	if c == nil {
		c = &counters{}
		f.hourly[k] = c
	}
	return c
}

func (f *fold) complaint(e *projections.Envelope, id string) *complaint {
	k := complaintKey{e.Customer(), id}
	c := f.complaints[k]
	if c == nil {
		c = &complaint{complaintKey: k, partition: e.Partition, deleted: true}
		f.complaints[k] = c
	}
	return c
}

func (f *fold) watch(c *complaint) {
	if !c.open() {
		return
	}
	h := f.due[c.partition]
	if h == nil {
		h = &due{}
		f.due[c.partition] = h
	}
	heap.Push(h, dueEntry{c: c, by: c.promisedBy})
}

func (f *fold) opened(ctx context.Context, e *projections.Envelope, d *events.ComplaintOpened) error {
	c := f.complaint(e, d.ComplaintID)
	if !c.promisedBy.IsZero() {
		return nil // opened again (another channel): the first opening holds
	}
	c.deleted, c.dirty = false, true
	c.openedAt, c.promisedBy, c.opened = e.Time, d.PromisedBy, e.Ref()
	c.enterprise = f.enterprise[c.customer]
	f.refs[c.opened] = c.complaintKey
	if !c.resolvedAt.IsZero() {
		// The resolution was folded first (out of order across channels).
		if c.resolvedAt.After(c.promisedBy) && !c.isBreached {
			return f.breach(ctx, c, e, ReasonResolvedLate, c.resolvedAt)
		}
		return nil
	}
	f.watch(c)
	return nil
}

func (f *fold) resolved(ctx context.Context, e *projections.Envelope, d *events.ComplaintResolved) error {
	c := f.complaint(e, d.ComplaintID)
	if !c.resolvedAt.IsZero() {
		return nil // resolved again: the first resolution holds
	}
	c.deleted, c.dirty = false, true
	c.resolvedAt, c.resolved = e.Time, e.Ref()
	f.refs[c.resolved] = c.complaintKey
	if !c.promisedBy.IsZero() && !c.isBreached && c.resolvedAt.After(c.promisedBy) {
		return f.breach(ctx, c, e, ReasonResolvedLate, c.resolvedAt)
	}
	return nil
}

// retract undoes the event named by a retraction of the same customer: a call is
// subtracted from its hour, a complaint's opening or resolution is removed. Anything
// else (unknown, another customer's, already retracted, another type) is ignored.
func (f *fold) retract(ctx context.Context, e *projections.Envelope, target events.EventRef) error {
	if cl, ok := f.calls[target]; ok {
		if cl.retracted || cl.customer != e.Customer() {
			return nil
		}
		cl.retracted, cl.dirty = true, true
		cl.add(-1, f.counters(cl))
		return nil
	}
	k, ok := f.refs[target]
	if !ok || k.customer != e.Customer() {
		return nil
	}
	c := f.complaints[k]
	delete(f.refs, target)
	c.dirty = true
	switch target {
	case c.opened:
		if c.isBreached {
			// A breach already signalled is followed by its withdrawal.
			if err := f.signal(ctx, SignalBreachWithdrawn, c, e, ReasonOpeningRetracted); err != nil {
				return err
			}
		}
		c.openedAt, c.promisedBy, c.opened = time.Time{}, time.Time{}, events.EventRef{}
		c.isBreached, c.breached, c.reason, c.enterprise = false, time.Time{}, "", false
		if c.resolvedAt.IsZero() {
			c.deleted = true
		}
	case c.resolved:
		c.resolvedAt, c.resolved = time.Time{}, events.EventRef{}
		if c.promisedBy.IsZero() {
			c.deleted = true
		}
		f.watch(c) // open again: the partition's time may already be past its deadline
	}
	return nil
}

// breach marks c breached at the given time, caused by e, and signals it once.
func (f *fold) breach(ctx context.Context, c *complaint, e *projections.Envelope, reason string, at time.Time) error {
	c.isBreached, c.breached, c.reason, c.dirty = true, at, reason, true
	c.enterprise = f.enterprise[c.customer]
	return f.signal(ctx, SignalComplaintBreached, c, e, reason)
}

// BreachData is the data of a breach signal: ids, deadlines and flags, no personal
// data.
type BreachData struct {
	ComplaintID string     `json:"complaint_id"`
	OpenedAt    *time.Time `json:"opened_at,omitempty"`
	PromisedBy  *time.Time `json:"promised_by,omitempty"`
	BreachedAt  *time.Time `json:"breached_at,omitempty"`
	Reason      string     `json:"reason"`
	// EnterpriseSLA: the customer is an enterprise (group) customer, whose deadline is
	// a contractual SLA (compensation may be due).
	EnterpriseSLA bool `json:"enterprise_sla"`
}

func (f *fold) signal(ctx context.Context, typ string, c *complaint, e *projections.Envelope, reason string) error {
	emit, err := f.b.Emitting(ctx, e)
	if err != nil || !emit {
		return err
	}
	data := BreachData{ComplaintID: c.id, OpenedAt: ptr(c.openedAt), PromisedBy: ptr(c.promisedBy), BreachedAt: ptr(c.breached),
		Reason: reason, EnterpriseSLA: f.enterprise[c.customer]}
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("servicelevel: signal data: %w", err)
	}
	f.sigs = append(f.sigs, outbox.Signal{ID: outbox.NewID(typ, e.Ref(), c.customer+"/"+c.id), Type: typ, Customer: c.customer,
		Partition: e.Partition, Time: e.Time, Seq: e.Seq, CausedBy: e.Ref(), Target: f.p.opts.Target, Data: raw})
	return nil
}

func ptr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
