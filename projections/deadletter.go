package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Parked is an event a target could not apply, as recorded in the dead-letter table.
type Parked struct {
	ID          int64
	Target      string
	Partition   int
	Stream      string
	Seq         uint64
	EventSource string
	EventID     string
	EventType   string
	Customer    string
	Error       string
	Attempts    int
	Status      string // parked, redriven or discarded
	ParkedAt    time.Time
	ResolvedAt  *time.Time // when it was redriven or discarded
}

// Dead-letter statuses.
const (
	StatusParked    = "parked"
	StatusRedriven  = "redriven"
	StatusDiscarded = "discarded"
)

// parkedEvent is an event to park in the current transaction.
type parkedEvent struct {
	partition int
	stream    string
	seq       uint64
	source    string
	id        string
	typ       string
	customer  string
	err       string
	attempts  int
}

func parkEnvelope(e *Envelope, err error, attempts int) parkedEvent {
	return parkedEvent{partition: e.Partition, stream: e.Stream, seq: e.Seq, source: e.Source, id: e.ID,
		typ: e.Type, customer: e.Subject, err: err.Error(), attempts: attempts}
}

func parkDecodeError(de *DecodeError) parkedEvent {
	pe := parkedEvent{partition: de.Partition, stream: de.Stream, seq: de.Seq, err: de.Error(), attempts: 1}
	if de.Event != nil {
		pe.source, pe.id, pe.typ, pe.customer = de.Event.Source, de.Event.ID, de.Event.Type, de.Event.Subject
	}
	return pe
}

// park records events in the dead-letter table with one statement. Errors are stored
// as the projection reported them; they must not carry personal data.
func park(ctx context.Context, tx pgx.Tx, target string, ps []parkedEvent) error {
	if len(ps) == 0 {
		return nil
	}
	n := len(ps)
	parts := make([]int32, n)
	streams := make([]string, n)
	seqs := make([]int64, n)
	sources := make([]string, n)
	ids := make([]string, n)
	types := make([]string, n)
	customers := make([]string, n)
	errs := make([]string, n)
	attempts := make([]int32, n)
	for i, p := range ps {
		parts[i], streams[i], seqs[i] = int32(p.partition), p.stream, int64(p.seq)
		sources[i], ids[i], types[i], customers[i] = p.source, p.id, p.typ, p.customer
		errs[i], attempts[i] = truncateError(p.err), int32(p.attempts)
	}
	_, err := tx.Exec(ctx, `INSERT INTO projections.dead_letters
			(target, partition, stream, seq, event_source, event_id, event_type, customer_id, error, attempts)
		SELECT $1, u.p, u.s, u.q, nullif(u.src, ''), nullif(u.id, ''), nullif(u.t, ''), nullif(u.c, ''), u.e, u.a
		FROM unnest($2::int[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::int[])
			AS u(p, s, q, src, id, t, c, e, a)
		ON CONFLICT (target, stream, seq) DO UPDATE
			SET error = excluded.error, attempts = projections.dead_letters.attempts + excluded.attempts,
				status = 'parked', resolved_at = NULL`,
		target, parts, streams, seqs, sources, ids, types, customers, errs, attempts)
	if err != nil {
		return fmt.Errorf("park %d events of %s: %w", n, target, err)
	}
	return nil
}

func truncateError(s string) string {
	const max = 2000
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// DeadLetters lists parked events of a target (all targets when target is ""), newest
// first.
func DeadLetters(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, target string, limit int) ([]Parked, error) {
	return ListDeadLetters(ctx, db, DeadLetterFilter{Target: target, Limit: limit})
}

// DeadLetterFilter selects dead letters. Zero fields select everything.
type DeadLetterFilter struct {
	Target   string
	Status   string // parked, redriven or discarded
	Customer string
	Limit    int   // default 100, at most 10000
	BeforeID int64 // only ids below this one (paging, newest first); 0: from the newest
}

// ErrDeadLetterNotFound: no dead letter has the id asked for.
var ErrDeadLetterNotFound = errors.New("dead letter not found")

const deadLetterColumns = `id, target, partition, stream, seq, coalesce(event_source, ''), coalesce(event_id, ''),
	coalesce(event_type, ''), coalesce(customer_id, ''), error, attempts, status, parked_at, resolved_at`

func scanParked(r pgx.CollectableRow) (Parked, error) {
	var p Parked
	var part int32
	var seq int64
	err := r.Scan(&p.ID, &p.Target, &part, &p.Stream, &seq, &p.EventSource, &p.EventID, &p.EventType, &p.Customer,
		&p.Error, &p.Attempts, &p.Status, &p.ParkedAt, &p.ResolvedAt)
	p.Partition, p.Seq = int(part), uint64(seq)
	return p, err
}

// ListDeadLetters lists dead letters, newest first.
func ListDeadLetters(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, f DeadLetterFilter) ([]Parked, error) {
	if f.Status != "" && f.Status != StatusParked && f.Status != StatusRedriven && f.Status != StatusDiscarded {
		return nil, fmt.Errorf("list dead letters: status %q: must be parked, redriven or discarded", f.Status)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 10000)
	rows, err := db.Query(ctx, `SELECT `+deadLetterColumns+` FROM projections.dead_letters
		WHERE ($1 = '' OR target = $1) AND ($2 = '' OR status = $2) AND ($3 = '' OR customer_id = $3) AND ($4 = 0 OR id < $4)
		ORDER BY id DESC LIMIT $5`, f.Target, f.Status, f.Customer, f.BeforeID, limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanParked)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// GetDeadLetter returns one dead letter; the error matches ErrDeadLetterNotFound when
// there is none with that id.
func GetDeadLetter(ctx context.Context, db Querier, id int64) (Parked, error) {
	rows, err := db.Query(ctx, `SELECT `+deadLetterColumns+` FROM projections.dead_letters WHERE id = $1`, id)
	if err != nil {
		return Parked{}, fmt.Errorf("dead letter %d: %w", id, err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, scanParked)
	if errors.Is(err, pgx.ErrNoRows) {
		return Parked{}, fmt.Errorf("dead letter %d: %w", id, ErrDeadLetterNotFound)
	}
	if err != nil {
		return Parked{}, fmt.Errorf("dead letter %d: %w", id, err)
	}
	return p, nil
}

// DeadLetterCount is how many dead letters a target has in a status.
type DeadLetterCount struct {
	Target string `json:"target"`
	Status string `json:"status"`
	Count  int64  `json:"count"`
}

// CountDeadLetters counts dead letters per target and status.
func CountDeadLetters(ctx context.Context, db Querier) ([]DeadLetterCount, error) {
	rows, err := db.Query(ctx, `SELECT target, status, count(*) FROM projections.dead_letters GROUP BY target, status ORDER BY target, status`)
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[DeadLetterCount])
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	return out, nil
}

// ErrNotParked: the dead letter was already redriven or discarded.
var ErrNotParked = errors.New("dead letter is not parked")

// ErrNoCustomer: the parked event names no customer (it never decoded, or it is a
// partition-wide event), so it cannot be redriven by recomputing a customer, nor be
// discarded by a customer event.
var ErrNoCustomer = errors.New("dead letter names no customer")

// ErrStillFailing: a redrive ran the projection again and it still could not apply
// the event. The dead letter stays parked with one more attempt and the new error.
var ErrStillFailing = errors.New("the projection still cannot apply the event")

// Redrive applies a parked event by recomputing its customer in the target that
// parked it (one of projs), from the customer's events in the log up to the target's
// checkpoint: later events of the customer were folded already, so the recompute is
// what keeps their order. The recompute and the status change ('redriven', with any
// other dead letters of the customer that the recompute applied) commit in one
// transaction. If the projection still fails (a permanent error), nothing of the
// recompute is kept and the dead letter stays parked with attempts+1 and the new
// error; the returned error matches ErrStillFailing. Transient failures (database, NATS,
// the index behind) are returned as they are, without counting an attempt.
func (r *Recomputer) Redrive(ctx context.Context, id int64, projs ...Projection) (Recomputed, error) {
	if r.Pool == nil {
		return Recomputed{}, errors.New("redrive: Recomputer.Pool: required")
	}
	tx, err := r.Pool.Begin(ctx)
	if err != nil {
		return Recomputed{}, fmt.Errorf("redrive dead letter %d: %w", id, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM projections.dead_letters WHERE id = $1 FOR UPDATE`, id); err != nil {
		return Recomputed{}, fmt.Errorf("redrive dead letter %d: %w", id, err)
	}
	d, err := GetDeadLetter(ctx, tx, id)
	if err != nil {
		return Recomputed{}, fmt.Errorf("redrive: %w", err)
	}
	if d.Status != StatusParked {
		return Recomputed{}, fmt.Errorf("redrive dead letter %d: status is %s: %w", id, d.Status, ErrNotParked)
	}
	if d.Customer == "" {
		return Recomputed{}, fmt.Errorf("redrive dead letter %d (seq=%d): %w: discard it, or fix the projection and rebuild the target", id, d.Seq, ErrNoCustomer)
	}
	i := slices.IndexFunc(projs, func(p Projection) bool { return p.Target() == d.Target })
	if i < 0 {
		return Recomputed{}, fmt.Errorf("redrive dead letter %d: target %s: no projection configured for it", id, d.Target)
	}
	res, err := r.RecomputeTx(ctx, tx, d.Customer, projs[i])
	if err == nil && !slices.Contains(res[0].Redriven, id) {
		err = fmt.Errorf("event seq=%d is not in the customer's history: it does not decode; discard it", d.Seq)
	}
	if err != nil {
		if isTransient(err) || errors.Is(err, ErrNotRecomputable) || ctx.Err() != nil {
			return Recomputed{}, fmt.Errorf("redrive dead letter %d: %w", id, err)
		}
		_ = tx.Rollback(ctx)
		if _, uerr := r.Pool.Exec(ctx, `UPDATE projections.dead_letters SET attempts = attempts + 1, error = $2
			WHERE id = $1 AND status = 'parked'`, id, truncateError("redrive: "+err.Error())); uerr != nil {
			return Recomputed{}, fmt.Errorf("redrive dead letter %d: %w (and recording the attempt failed: %v)", id, err, uerr)
		}
		return Recomputed{}, fmt.Errorf("redrive dead letter %d: %w: %w", id, ErrStillFailing, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Recomputed{}, fmt.Errorf("redrive dead letter %d: commit: %w", id, err)
	}
	return res[0], nil
}

// MarkDiscarded marks a parked dead letter 'discarded'. Call it after the discard was
// recorded in the log (a deadletter.discarded event): the log is the record, the row
// its state.
func MarkDiscarded(ctx context.Context, db interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, id int64) error {
	tag, err := db.Exec(ctx, `UPDATE projections.dead_letters SET status = 'discarded', resolved_at = now()
		WHERE id = $1 AND status = 'parked'`, id)
	if err != nil {
		return fmt.Errorf("discard dead letter %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("discard dead letter %d: %w", id, ErrNotParked)
	}
	return nil
}

// targetPoison is a PoisonError raised by one target of a runner's group: only that
// target parks the events; the others apply them.
type targetPoison struct {
	target string
	pe     *PoisonError
}

func (t *targetPoison) Error() string { return t.target + ": " + t.pe.Error() }
func (t *targetPoison) Unwrap() error { return t.pe }

// poisonTarget is the target that raised a poison error, "" when unknown.
func poisonTarget(err error) string {
	var tp *targetPoison
	if errors.As(err, &tp) {
		return tp.target
	}
	return ""
}
