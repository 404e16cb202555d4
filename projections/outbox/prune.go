package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// pruneChunk bounds the rows one DELETE removes.
const pruneChunk = 10000

// Prune deletes the outbox rows that group has forwarded and that were emitted more
// than olderThan ago, and returns how many. Rows not yet forwarded are never deleted.
// The Forwarder prunes on its own (Retention); Prune is for operations and tests.
func Prune(ctx context.Context, pool *pgxpool.Pool, group string, olderThan time.Duration) (int64, error) {
	var total int64
	for {
		tag, err := pool.Exec(ctx, `DELETE FROM outbox.signals WHERE ctid IN (
			SELECT s.ctid FROM outbox.signals s, outbox.signals_offsets o
			WHERE o.consumer_group = $1
			  AND (s.transaction_id < o.last_processed_transaction_id
			       OR (s.transaction_id = o.last_processed_transaction_id AND s."offset" <= o.offset_acked))
			  AND s.created_at <= LOCALTIMESTAMP - $2::interval
			LIMIT $3)`, group, olderThan, pruneChunk)
		if err != nil {
			return total, fmt.Errorf("prune outbox group=%s: %w", group, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneChunk {
			return total, nil
		}
	}
}
