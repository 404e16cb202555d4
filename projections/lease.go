package projections

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// leaser holds this instance's share of a group's partitions. Every heartbeat it
// records itself as a live member, renews the leases it holds, gives back leases above
// its fair share (ceil(partitions / live members)) and takes free or lapsed leases up
// to that share. A lease lapses LeaseTTL after its owner's last renewal, so the
// partitions of a dead instance are taken over within LeaseTTL plus a heartbeat.
//
// Leases keep writers from wasting work on the same partition; correctness does not
// rest on them: the checkpoint fence refuses a stale writer's commit.
type leaser struct {
	pool       *pgxpool.Pool
	group      string
	instance   string
	partitions int
	ttl        time.Duration
}

func (l *leaser) ensure(ctx context.Context) error {
	_, err := l.pool.Exec(ctx, `INSERT INTO projections.leases (grp, partition)
		SELECT $1, p FROM generate_series(0, $2 - 1) AS p
		ON CONFLICT (grp, partition) DO NOTHING`, l.group, l.partitions)
	if err != nil {
		return fmt.Errorf("ensure leases of %s: %w", l.group, err)
	}
	return nil
}

// tick runs one heartbeat and returns the partitions this instance holds now.
func (l *leaser) tick(ctx context.Context) ([]int, error) {
	var owned []int
	ttl := l.ttl.Seconds()
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		owned = owned[:0]
		if _, err := tx.Exec(ctx, `INSERT INTO projections.members (grp, instance, seen_at) VALUES ($1, $2, now())
			ON CONFLICT (grp, instance) DO UPDATE SET seen_at = now()`, l.group, l.instance); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM projections.members
			WHERE grp = $1 AND seen_at < now() - make_interval(secs => $2 * 10)`, l.group, ttl); err != nil {
			return err
		}
		var live int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM projections.members
			WHERE grp = $1 AND seen_at > now() - make_interval(secs => $2)`, l.group, ttl).Scan(&live); err != nil {
			return err
		}
		share := (l.partitions + max(live, 1) - 1) / max(live, 1)
		mine, err := collectInts(tx.Query(ctx, `UPDATE projections.leases SET expires_at = now() + make_interval(secs => $3)
			WHERE grp = $1 AND owner = $2 AND expires_at > now() RETURNING partition`, l.group, l.instance, ttl))
		if err != nil {
			return err
		}
		slices.Sort(mine)
		if len(mine) > share {
			extra := mine[share:]
			mine = mine[:share]
			if _, err := tx.Exec(ctx, `UPDATE projections.leases SET owner = NULL, expires_at = '-infinity'
				WHERE grp = $1 AND owner = $2 AND partition = ANY($3)`, l.group, l.instance, toInt32(extra)); err != nil {
				return err
			}
		}
		if len(mine) < share {
			got, err := collectInts(tx.Query(ctx, `UPDATE projections.leases SET owner = $2, epoch = epoch + 1,
					expires_at = now() + make_interval(secs => $4)
				WHERE grp = $1 AND partition IN (
					SELECT partition FROM projections.leases
					WHERE grp = $1 AND (owner IS NULL OR expires_at <= now() OR owner = $2)
						AND NOT (partition = ANY($5))
					ORDER BY partition LIMIT $3 FOR UPDATE SKIP LOCKED)
				RETURNING partition`, l.group, l.instance, share-len(mine), ttl, toInt32(mine)))
			if err != nil {
				return err
			}
			mine = append(mine, got...)
		}
		owned = mine
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lease heartbeat of %s: %w", l.group, err)
	}
	slices.Sort(owned)
	return owned, nil
}

// release gives back every lease and leaves the group, so that other instances take
// the partitions over at once rather than after the lease lapses.
func (l *leaser) release(ctx context.Context) error {
	return pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE projections.leases SET owner = NULL, expires_at = '-infinity'
			WHERE grp = $1 AND owner = $2`, l.group, l.instance); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM projections.members WHERE grp = $1 AND instance = $2`, l.group, l.instance)
		return err
	})
}

func collectInts(rows pgx.Rows, err error) ([]int, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (int, error) {
		var v int32
		err := r.Scan(&v)
		return int(v), err
	})
}

func toInt32(v []int) []int32 {
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = int32(x)
	}
	return out
}
