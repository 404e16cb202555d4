package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Freshness says how current a target is in one partition: the last stream sequence it
// reflects and how far behind the log it was when last measured.
type Freshness struct {
	Target       string    `json:"target"`
	Partition    int       `json:"partition"`
	Seq          uint64    `json:"seq"`
	LastStoredAt time.Time `json:"last_stored_at,omitzero"` // log time of the last event reflected
	LagEvents    int64     `json:"lag_events"`
	LagSeconds   float64   `json:"lag_seconds"`
	MeasuredAt   time.Time `json:"lag_measured_at,omitzero"`
}

// ReadFreshness reads a target's freshness in a partition.
func ReadFreshness(ctx context.Context, q Querier, target string, partition int) (Freshness, error) {
	f := Freshness{Target: target, Partition: partition}
	var seq int64
	var stored, measured *time.Time
	var lagEvents *int64
	var lagSecs *float64
	err := q.QueryRow(ctx, `SELECT c.seq, c.last_stored_at, l.lag_events, l.lag_seconds, l.measured_at
		FROM projections.checkpoints c
		LEFT JOIN projections.lag l ON l.target = c.target AND l.partition = c.partition
		WHERE c.target = $1 AND c.partition = $2`, target, partition).Scan(&seq, &stored, &lagEvents, &lagSecs, &measured)
	if errors.Is(err, pgx.ErrNoRows) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("freshness of %s/%d: %w", target, partition, err)
	}
	f.Seq = uint64(seq)
	if stored != nil {
		f.LastStoredAt = *stored
	}
	if lagEvents != nil {
		f.LagEvents = *lagEvents
	}
	if lagSecs != nil {
		f.LagSeconds = *lagSecs
	}
	if measured != nil {
		f.MeasuredAt = *measured
	}
	return f, nil
}
