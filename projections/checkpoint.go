package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Checkpoint is where a target stands in a partition.
type Checkpoint struct {
	Target        string
	Partition     int
	Stream        string
	Seq           uint64 // last stream sequence consumed (applied, skipped or parked)
	Applied       uint64 // events consumed since the target was created
	PartitionTime time.Time
	LastStoredAt  time.Time
}

// errFenced: a checkpoint did not hold the expected value when a batch tried to
// advance it. Another writer advanced it; the runner reloads and resumes.
var errFenced = errors.New("checkpoint fence: another writer advanced the partition")

// ensureCheckpoints creates the rows of every partition of a target.
func ensureCheckpoints(ctx context.Context, pool *pgxpool.Pool, target string, streams map[int]string) error {
	parts := make([]int32, 0, len(streams))
	names := make([]string, 0, len(streams))
	for p, s := range streams {
		parts = append(parts, int32(p))
		names = append(names, s)
	}
	_, err := pool.Exec(ctx, `INSERT INTO projections.checkpoints (target, partition, stream)
		SELECT $1, p, s FROM unnest($2::int[], $3::text[]) AS u(p, s)
		ON CONFLICT (target, partition) DO NOTHING`, target, parts, names)
	if err != nil {
		return fmt.Errorf("ensure checkpoints of %s: %w", target, err)
	}
	return nil
}

// LoadCheckpoints reads a target's checkpoints for the given partitions (all when nil).
func LoadCheckpoints(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, target string, partitions []int) (map[int]Checkpoint, error) {
	var filter []int32
	for _, p := range partitions {
		filter = append(filter, int32(p))
	}
	rows, err := db.Query(ctx, `SELECT partition, stream, seq, applied, partition_time, last_stored_at
		FROM projections.checkpoints WHERE target = $1 AND ($2::int[] IS NULL OR partition = ANY($2))`, target, filter)
	if err != nil {
		return nil, fmt.Errorf("load checkpoints of %s: %w", target, err)
	}
	defer rows.Close()
	out := make(map[int]Checkpoint)
	for rows.Next() {
		var c Checkpoint
		var p int32
		var seq, applied int64
		var pt, ls *time.Time
		if err := rows.Scan(&p, &c.Stream, &seq, &applied, &pt, &ls); err != nil {
			return nil, fmt.Errorf("load checkpoints of %s: %w", target, err)
		}
		c.Target, c.Partition, c.Seq, c.Applied = target, int(p), uint64(seq), uint64(applied)
		if pt != nil {
			c.PartitionTime = *pt
		}
		if ls != nil {
			c.LastStoredAt = *ls
		}
		out[c.Partition] = c
	}
	return out, rows.Err()
}

// advance moves checkpoints forward inside tx, each only from its expected previous
// sequence. It takes the rows' locks first thing in the transaction, so a concurrent
// writer of the same partitions waits and then fails its own fence.
func advance(ctx context.Context, tx pgx.Tx, target string, from, to map[int]Checkpoint) error {
	n := len(to)
	parts := make([]int32, 0, n)
	expected := make([]int64, 0, n)
	seqs := make([]int64, 0, n)
	applied := make([]int64, 0, n)
	ptimes := make([]*time.Time, 0, n)
	stored := make([]*time.Time, 0, n)
	for p, c := range to {
		parts = append(parts, int32(p))
		expected = append(expected, int64(from[p].Seq))
		seqs = append(seqs, int64(c.Seq))
		applied = append(applied, int64(c.Applied))
		ptimes = append(ptimes, timePtr(c.PartitionTime))
		stored = append(stored, timePtr(c.LastStoredAt))
	}
	tag, err := tx.Exec(ctx, `UPDATE projections.checkpoints c
		SET seq = u.seq, applied = u.applied, partition_time = u.ptime, last_stored_at = u.stored, updated_at = now()
		FROM unnest($2::int[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[])
			AS u(partition, expected, seq, applied, ptime, stored)
		WHERE c.target = $1 AND c.partition = u.partition AND c.seq = u.expected`,
		target, parts, expected, seqs, applied, ptimes, stored)
	if err != nil {
		return fmt.Errorf("advance checkpoints of %s: %w", target, err)
	}
	if int(tag.RowsAffected()) != n {
		return fmt.Errorf("%s: %w", target, errFenced)
	}
	return nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
