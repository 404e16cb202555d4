package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
)

// Projection folds the log into a read model. A Projection value is bound to one
// version of its tables: the PostgreSQL schema named by Target (for example
// "customer360_v1"), so a new version can be built beside the serving one.
//
// Apply must be a pure function of the batch and the rows it reads from its own
// schema: it never reads another projection's tables, never looks at the wall clock
// (use Envelope.Time and Batch.PartitionTime), and must write with set-based statements
// (one multi-row statement per table per batch), not one statement per event.
type Projection interface {
	// Name is the projection's stable name ("customer360").
	Name() string
	// Target is the schema this instance writes.
	Target() string
	// Migrate creates or upgrades the tables in Target.
	Migrate(ctx context.Context, pool *pgxpool.Pool) error
	// Apply folds a batch inside tx, the transaction that also advances the checkpoints
	// of every partition in the batch. Return a *PoisonError to park events that can
	// never be applied; any other error is treated as transient and retried.
	Apply(ctx context.Context, tx pgx.Tx, b *Batch) error
}

// Envelope is one event read from the log, decoded and validated against the stored
// form of its schema.
type Envelope struct {
	events.Event
	Schema    *events.Schema
	Stream    string
	Seq       uint64 // stream sequence
	Partition int
	StoredAt  time.Time // when the log stored it

	// The decoded payload, kept for the other projections of the group (Payload).
	payload     events.Payload
	payloadErr  error
	payloadDone bool
}

// Payload decodes the event's data (events.Decode, upcast to the current version) the
// first time it is asked for and returns the same value to every projection of the
// group after that: a group of five projections decodes each event once, not five
// times. The payload is shared: a projection must not modify it. Projections of one
// group apply a batch one after the other, never at the same time.
func (e *Envelope) Payload() (events.Payload, error) {
	if !e.payloadDone {
		e.payload, e.payloadErr = events.Decode(&e.Event)
		e.payloadDone = true
	}
	return e.payload, e.payloadErr
}

// Customer is the customer the event concerns, "" for partition-wide events.
func (e *Envelope) Customer() string { return e.Subject }

// Batch is what a projection folds in one transaction: events from one or more
// partitions, in stream order (so each customer's events are in their order).
type Batch struct {
	Events []*Envelope
	// partitionTime is each partition's "now" before the batch: the highest event time
	// applied so far.
	partitionTime map[int]time.Time
	history       History
	tx            pgx.Tx
	stage         func(name string, start time.Time)
	// emission: who decides whether signals are emitted (nil: never, as in a rebuild).
	emission *emission
}

// Emitting reports whether derived signals caused by e (tier changes, alerts,
// breaches) are to be emitted by this batch. Only the serving version of a projection
// emits, and a version that took over at a switch only for events past the stream
// sequence its partition took over at; a rebuild or a replay never emits. The answer
// is read inside the batch's transaction, holding the serving row (FOR SHARE), so a
// switch waits for the batch and then hands emission over past what this batch did:
// no signal is doubled or lost across a switch. Emit signals through the transactional
// outbox in the same transaction.
func (b *Batch) Emitting(ctx context.Context, e *Envelope) (bool, error) {
	if b == nil || b.emission == nil {
		return false, nil
	}
	return b.emission.emitting(ctx, b.tx, e)
}

// Stage accounts the time since start to a named step of the projection's fold
// (touchstream_projection_stage_seconds_total{stage="<target>/<name>"}), so operators
// see where a projection spends its time.
func (b *Batch) Stage(name string, start time.Time) {
	if b != nil && b.stage != nil {
		b.stage(name, start)
	}
}

// PartitionTime is the partition's "now" before this batch: the highest event time it
// had applied. Zero for a partition that has applied nothing.
func (b *Batch) PartitionTime(p int) time.Time { return b.partitionTime[p] }

// ByCustomer groups the customer events of the batch, each customer's in stream order,
// and returns the customers in order of first appearance.
func (b *Batch) ByCustomer() (order []string, byCustomer map[string][]*Envelope) {
	byCustomer = make(map[string][]*Envelope)
	for _, e := range b.Events {
		c := e.Customer()
		if c == "" {
			continue
		}
		if _, ok := byCustomer[c]; !ok {
			order = append(order, c)
		}
		byCustomer[c] = append(byCustomer[c], e)
	}
	return order, byCustomer
}

// History returns a customer's events from the log with stream sequence at most upTo,
// in stream order, through the per-customer index (never a scan of the log). A
// projection calls it to recompute a customer whose fold cannot be undone
// incrementally (after a retraction). It fails with ErrNoHistory when the runner has no
// index, and with an error matching ErrIndexBehind (transient) while the index has not
// yet caught up to upTo.
func (b *Batch) History(ctx context.Context, customer string, upTo uint64) ([]*Envelope, error) {
	if b.history == nil {
		return nil, ErrNoHistory
	}
	return b.history.History(ctx, b.tx, customer, upTo)
}

// History reads a customer's events from the log. q is the batch's transaction, so
// that an index written earlier in the same transaction (the timeline, when it runs in
// the same group) is seen.
type History interface {
	History(ctx context.Context, q Querier, customer string, upTo uint64) ([]*Envelope, error)
}

// Querier runs queries: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	// ErrNoHistory: the runner was built without a customer index.
	ErrNoHistory = errors.New("no customer history index configured")
	// ErrIndexBehind: the customer index has not yet applied the sequence asked for.
	// Transient: the batch is retried.
	ErrIndexBehind = errors.New("customer index is behind")
)

// PoisonError parks events that can never be applied. The runner rolls the batch back,
// records each event in the dead-letter table with the error, and applies the rest.
type PoisonError struct {
	Events []*Envelope
	Err    error
}

func (e *PoisonError) Error() string {
	if len(e.Events) == 1 {
		ev := e.Events[0]
		return fmt.Sprintf("poison event seq=%d type=%s: %v", ev.Seq, ev.Type, e.Err)
	}
	return fmt.Sprintf("%d poison events: %v", len(e.Events), e.Err)
}

func (e *PoisonError) Unwrap() error { return e.Err }

// Poison marks one event as impossible to apply.
func Poison(e *Envelope, err error) error { return &PoisonError{Events: []*Envelope{e}, Err: err} }
