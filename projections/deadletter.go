package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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
	Status      string
	ParkedAt    time.Time
}

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
	rows, err := db.Query(ctx, `SELECT id, target, partition, stream, seq, coalesce(event_source, ''), coalesce(event_id, ''),
			coalesce(event_type, ''), coalesce(customer_id, ''), error, attempts, status, parked_at
		FROM projections.dead_letters WHERE ($1 = '' OR target = $1) ORDER BY id DESC LIMIT $2`, target, limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Parked, error) {
		var p Parked
		var part int32
		var seq int64
		err := r.Scan(&p.ID, &p.Target, &part, &p.Stream, &seq, &p.EventSource, &p.EventID, &p.EventType, &p.Customer,
			&p.Error, &p.Attempts, &p.Status, &p.ParkedAt)
		p.Partition, p.Seq = int(part), uint64(seq)
		return p, err
	})
}
