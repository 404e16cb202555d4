package dedup

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/projections"
)

// Projection writes the index from the log. Its target is fixed (Schema): the index
// has one version, rebuildable by resetting its checkpoints.
type Projection struct{}

var _ projections.Projection = Projection{}

func (Projection) Name() string   { return "dedup" }
func (Projection) Target() string { return Schema }

// Migrate creates the index table.
func (Projection) Migrate(ctx context.Context, pool *pgxpool.Pool) error { return Migrate(ctx, pool) }

// Apply records the dedup key of every event in the batch.
func (Projection) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	entries := make([]Entry, len(b.Events))
	for i, e := range b.Events {
		entries[i] = Entry{Key: e.DedupKey(), Stream: e.Stream, Seq: e.Seq, StoredAt: e.StoredAt}
	}
	return Record(ctx, tx, entries)
}
