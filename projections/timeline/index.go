package timeline

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
)

// Index maps customers to the stream sequences of their events, from a timeline
// target.
type Index struct {
	Target string
	Layout events.Layout
}

var _ projections.SequenceIndex = (*Index)(nil)

// Sequences implements projections.SequenceIndex.
func (ix *Index) Sequences(ctx context.Context, q projections.Querier, customer string, upTo uint64) (string, []uint64, error) {
	p := ix.Layout.PartitionOf(customer)
	stream := ix.Layout.Stream(p)
	var at int64
	if err := q.QueryRow(ctx, `SELECT seq FROM projections.checkpoints WHERE target = $1 AND partition = $2`,
		ix.Target, p).Scan(&at); err != nil {
		return "", nil, fmt.Errorf("timeline index %s: checkpoint of partition %d: %w", ix.Target, p, err)
	}
	if uint64(at) < upTo {
		return "", nil, fmt.Errorf("timeline index %s at seq %d in partition %d, asked for %d: %w", ix.Target, at, p, upTo, projections.ErrIndexBehind)
	}
	rows, err := q.Query(ctx, `SELECT seq FROM `+pgx.Identifier{ix.Target, "events"}.Sanitize()+`
		WHERE customer_id = $1 AND seq <= $2 ORDER BY seq`, customer, int64(upTo))
	if err != nil {
		return "", nil, fmt.Errorf("timeline index %s: %w", ix.Target, err)
	}
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (uint64, error) {
		var s int64
		err := r.Scan(&s)
		return uint64(s), err
	})
	if err != nil {
		return "", nil, fmt.Errorf("timeline index %s: %w", ix.Target, err)
	}
	return stream, seqs, nil
}
