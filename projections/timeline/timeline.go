// Package timeline is the timeline read model: every event of every customer, newest
// first, paged by cursor and filterable by type, source (channel) and time range.
//
// It is also the customer index of the log: the stream sequences of a customer's
// events, which audit history and per-customer recomputation read before fetching the
// messages directly (Index implements projections.SequenceIndex). The index answers
// only once the timeline has consumed the asked sequence in the customer's partition,
// so a recomputation never misses an event.
//
// Personal fields never reach this table: each row keeps the payload without them. A
// retraction marks the withdrawn event (retracted_by, retraction_reason) and is itself
// a row: the timeline keeps both.
package timeline

import (
	"context"
	"embed"
	"fmt"
	"strings"

	json "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/migrate"
)

// Name is the projection's name.
const Name = "timeline"

//go:embed migrations/*.sql
var migrations embed.FS

// Projection folds the log into the timeline.
type Projection struct {
	target string
	table  string
}

var _ projections.Projection = (*Projection)(nil)

// New returns the timeline projection writing the schema target (e.g. "timeline_v1").
func New(target string) *Projection {
	return &Projection{target: target, table: pgx.Identifier{target, "events"}.Sanitize()}
}

func (p *Projection) Name() string   { return Name }
func (p *Projection) Target() string { return p.target }

// Migrate creates the tables.
func (p *Projection) Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, Name, p.target, migrations, "migrations")
}

var columns = []string{"customer_id", "event_time", "seq", "stream", "partition", "stored_at", "type", "source", "event_id", "data"}

// Apply appends the batch's customer events with COPY, then marks retracted events.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	rows := make([][]any, 0, len(b.Events))
	var rCust, rSource, rID, rReason []string
	retracted := map[[3]string]bool{} // the first retraction of an event in the batch wins
	var rSeq []int64
	for _, e := range b.Events {
		if e.PartitionWide() {
			continue
		}
		data, err := withoutPersonal(e)
		if err != nil {
			return projections.Poison(e, err)
		}
		rows = append(rows, []any{e.Subject, e.Time, int64(e.Seq), e.Stream, int32(e.Partition), e.StoredAt, e.Type, e.Source, e.ID, []byte(data)})
		if e.Type == events.TypeEventRetracted {
			var r events.EventRetracted
			if err := events.DecodeData(&e.Event, &r); err != nil {
				return projections.Poison(e, err)
			}
			k := [3]string{e.Subject, r.Target.Source, r.Target.ID}
			if retracted[k] {
				continue
			}
			retracted[k] = true
			rCust, rSource, rID = append(rCust, e.Subject), append(rSource, r.Target.Source), append(rID, r.Target.ID)
			rReason, rSeq = append(rReason, r.Reason), append(rSeq, int64(e.Seq))
		}
	}
	if len(rows) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{p.target, "events"}, columns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("timeline copy %d rows: %w", len(rows), err)
		}
	}
	if len(rCust) > 0 {
		// A retraction names its target by source and id; it is the same customer's
		// event, earlier in the stream. The first retraction of an event wins.
		if _, err := tx.Exec(ctx, `UPDATE `+p.table+` t SET retracted_by = u.seq, retraction_reason = u.reason
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS u(c, src, id, reason, seq)
			WHERE t.customer_id = u.c AND t.source = u.src AND t.event_id = u.id AND t.seq < u.seq
				AND t.retracted_by IS NULL`, rCust, rSource, rID, rReason, rSeq); err != nil {
			return fmt.Errorf("timeline retractions: %w", err)
		}
	}
	return nil
}

// withoutPersonal returns the payload with every personal field removed.
func withoutPersonal(e *projections.Envelope) (json.RawMessage, error) {
	if !e.Schema.HasPersonal() {
		return e.Data, nil
	}
	if out, ok := e.Schema.AppendWithoutPersonal(nil, e.Data); ok {
		return out, nil
	}
	var doc map[string]any
	if err := json.Unmarshal(e.Data, &doc); err != nil {
		return nil, fmt.Errorf("timeline: data: %w", err)
	}
	for _, ptr := range e.Schema.Personal {
		deletePointer(doc, ptr)
	}
	return json.Marshal(doc)
}

func deletePointer(doc map[string]any, ptr string) {
	toks := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	cur := doc
	for _, t := range toks[:len(toks)-1] {
		next, ok := cur[t].(map[string]any)
		if !ok {
			return
		}
		cur = next
	}
	delete(cur, toks[len(toks)-1])
}
