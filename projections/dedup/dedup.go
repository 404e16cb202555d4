// Package dedup is the durable idempotency index: dedup key -> (stream, sequence) for
// every event stored in the log within a configurable horizon (7 days by default). The
// stream's own duplicate window (minutes) catches quick retries; this index catches a
// channel re-sending a batch file days later. The gateway looks keys up before
// publishing; the index is written by the dedup projection, which folds the log like
// any read model, so it is complete even when a gateway crashes between the stream's
// acknowledgement and its answer, and it can be rebuilt from the log.
package dedup

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/projections/migrate"
)

// Schema is the PostgreSQL schema of the index.
const Schema = "dedup"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or upgrades the index tables.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "dedup", Schema, migrations, "migrations")
}

// Hit is where an already-stored event lives.
type Hit struct {
	Stream string
	Seq    uint64
}

// Querier is what Lookup needs: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Lookup returns the keys already in the index, with where they are stored.
func Lookup(ctx context.Context, db Querier, keys []string) (map[string]Hit, error) {
	out := make(map[string]Hit)
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, "SELECT dedup_key, stream, seq FROM dedup.dedup_index WHERE dedup_key = ANY($1)", keys)
	if err != nil {
		return nil, fmt.Errorf("dedup lookup: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var h Hit
		var seq int64
		if err := rows.Scan(&k, &h.Stream, &seq); err != nil {
			return nil, fmt.Errorf("dedup lookup: %w", err)
		}
		h.Seq = uint64(seq)
		out[k] = h
	}
	return out, rows.Err()
}

// Entry is one stored event in the index.
type Entry struct {
	Key      string
	Stream   string
	Seq      uint64
	StoredAt time.Time
}

// Execer runs statements: a transaction, typically, so entries land with the
// checkpoint that covers them.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Record adds entries with one multi-row statement. A key already present keeps its
// first position: the first stored copy is the event, later ones are not.
func Record(ctx context.Context, db Execer, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	keys := make([]string, len(entries))
	streams := make([]string, len(entries))
	seqs := make([]int64, len(entries))
	at := make([]time.Time, len(entries))
	for i, e := range entries {
		keys[i], streams[i], seqs[i], at[i] = e.Key, e.Stream, int64(e.Seq), e.StoredAt
	}
	_, err := db.Exec(ctx, `INSERT INTO dedup.dedup_index (dedup_key, stream, seq, stored_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[])
		ON CONFLICT (dedup_key) DO NOTHING`, keys, streams, seqs, at)
	if err != nil {
		return fmt.Errorf("dedup record %d entries: %w", len(entries), err)
	}
	return nil
}

// Prune removes entries stored before the horizon, in chunks of at most 10,000 rows
// per statement so no transaction grows large, and returns how many.
func Prune(ctx context.Context, db Execer, before time.Time) (int64, error) {
	var total int64
	for {
		tag, err := db.Exec(ctx, `DELETE FROM dedup.dedup_index WHERE dedup_key IN (
			SELECT dedup_key FROM dedup.dedup_index WHERE stored_at < $1 LIMIT 10000)`, before)
		if err != nil {
			return total, fmt.Errorf("dedup prune: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 10000 {
			return total, nil
		}
	}
}

// DefaultHorizon is how long the index remembers an event: channels re-send batch
// files days later.
const DefaultHorizon = 7 * 24 * time.Hour

// Pruner keeps the index to its horizon. The index is an aid for a bounded time, so
// pruning by the wall clock is right here: what the horizon forgets, the stream's
// duplicate window and the channels' late-arrival limits never needed.
type Pruner struct {
	Pool     *pgxpool.Pool
	Horizon  time.Duration // default DefaultHorizon
	Interval time.Duration // default 10 minutes
	Log      *slog.Logger
}

// Run prunes every Interval until ctx is cancelled.
func (p *Pruner) Run(ctx context.Context) error {
	horizon, every := p.Horizon, p.Interval
	if horizon <= 0 {
		horizon = DefaultHorizon
	}
	if every <= 0 {
		every = 10 * time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := Prune(ctx, p.Pool, time.Now().Add(-horizon))
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			p.Log.Warn("pruning the idempotency index failed; will retry", "error", err)
		case n > 0:
			p.Log.Info("idempotency index pruned", "removed", n, "horizon", horizon)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
