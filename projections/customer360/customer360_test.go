package customer360_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/conformance"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/valuetier"
)

var phoneKey = []byte("0123456789abcdef0123456789abcdef")

func newProjection(t *testing.T, target string, keys events.KeySource) projections.Projection {
	t.Helper()
	p, err := customer360.New(customer360.Options{Target: target, Tiers: valuetier.Default(), Keys: keys, PhoneKey: phoneKey})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type row struct {
	Customer, Tier, Lifecycle, Region, Doc string
	Hash                                   []byte
	Spend3M, Total, Seq                    int64
}

func subject() conformance.Subject {
	return conformance.Subject{
		New: newProjection,
		Snapshot: func(ctx context.Context, pool *pgxpool.Pool, target string) (any, error) {
			rows, err := pool.Query(ctx, `SELECT customer_id, tier, lifecycle, region, doc::text, phone_hash, spend_3m_fen,
				events_total, seq FROM `+pgx.Identifier{target, "profiles"}.Sanitize()+` ORDER BY customer_id`)
			if err != nil {
				return nil, err
			}
			return pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		},
		PerCustomer: func(ctx context.Context, pool *pgxpool.Pool, target string) (map[string]int64, error) {
			rows, err := pool.Query(ctx, `SELECT customer_id, events_total FROM `+pgx.Identifier{target, "profiles"}.Sanitize())
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
		},
	}
}

func TestConformance(t *testing.T) { conformance.Run(t, subject()) }
