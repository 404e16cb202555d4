package timeline_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/conformance"
	"github.com/touchstream/touchstream/projections/timeline"
)

type row struct {
	Customer, Type, Source, ID, Data, Reason string
	Seq, RetractedBy                         int64
}

func subject() conformance.Subject {
	return conformance.Subject{
		New: func(t *testing.T, target string, _ events.KeySource) projections.Projection {
			return timeline.New(target)
		},
		Snapshot: func(ctx context.Context, pool *pgxpool.Pool, target string) (any, error) {
			rows, err := pool.Query(ctx, `SELECT customer_id, type, source, event_id, convert_from(data, 'UTF8'), coalesce(retraction_reason, ''),
				seq, coalesce(retracted_by, 0) FROM `+pgx.Identifier{target, "events"}.Sanitize()+` ORDER BY seq`)
			if err != nil {
				return nil, err
			}
			return pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		},
		PerCustomer: perCustomer,
	}
}

func perCustomer(ctx context.Context, pool *pgxpool.Pool, target string) (map[string]int64, error) {
	rows, err := pool.Query(ctx, `SELECT customer_id, count(*) FROM `+pgx.Identifier{target, "events"}.Sanitize()+` GROUP BY 1`)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for rows.Next() {
		var c string
		var n int64
		if err := rows.Scan(&c, &n); err != nil {
			return nil, err
		}
		out[c] = n
	}
	return out, rows.Err()
}

func TestConformance(t *testing.T) { conformance.Run(t, subject()) }
