package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Blue/green versions. Each projection has one serving version (a target schema such
// as customer360_v1) recorded in projections.serving; readers and the live projector
// follow it. A rebuild writes the next version beside it and switches the pointer in
// one statement (see Rebuild); the replaced version is kept until DropTarget.

// ErrServingMoved: a switch found another version serving than the one it replaces.
var ErrServingMoved = errors.New("the serving version changed meanwhile")

var versioned = regexp.MustCompile(`^([a-z][a-z0-9]*)_v([0-9]+)$`)

// TargetVersion splits a versioned target name ("customer360_v2") into the
// projection's name and its version number.
func TargetVersion(target string) (projection string, version int, ok bool) {
	m := versioned.FindStringSubmatch(target)
	if m == nil {
		return "", 0, false
	}
	v, err := strconv.Atoi(m[2])
	if err != nil || v < 1 {
		return "", 0, false
	}
	return m[1], v, true
}

// EnsureServing records defaults (projection → target) for the projections that have
// no serving version yet, and returns the serving version of every projection.
func EnsureServing(ctx context.Context, pool *pgxpool.Pool, defaults map[string]string) (map[string]string, error) {
	if err := Migrate(ctx, pool); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(defaults))
	targets := make([]string, 0, len(defaults))
	for p, t := range defaults {
		names, targets = append(names, p), append(targets, t)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO projections.serving (projection, target)
		SELECT p, t FROM unnest($1::text[], $2::text[]) AS u(p, t) ON CONFLICT (projection) DO NOTHING`, names, targets); err != nil {
		return nil, fmt.Errorf("record serving versions: %w", err)
	}
	return ServingTargets(ctx, pool)
}

// ServingTargets returns the serving version of every projection that has one.
func ServingTargets(ctx context.Context, q Querier) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT projection, target FROM projections.serving`)
	if err != nil {
		return nil, fmt.Errorf("read serving versions: %w", err)
	}
	out := map[string]string{}
	var p, t string
	_, err = pgx.ForEachRow(rows, []any{&p, &t}, func() error { out[p] = t; return nil })
	if err != nil {
		return nil, fmt.Errorf("read serving versions: %w", err)
	}
	return out, nil
}

// ErrServingBehind: the serving version has not yet folded as far as the version
// replacing it, so switching now would lose the signals of the events in between
// (the new version folded them without emitting). The live projector catches it up:
// retry shortly.
var ErrServingBehind = errors.New("the serving version is behind the new one")

// Switch makes to the serving version of projection in place of from, in one
// statement: readers that look the pointer up see one version or the other, never a
// mix. It fails with ErrServingMoved when from is no longer the serving version (from
// "" : the projection had none).
//
// Signals pass over exactly once. The serving row is locked first, so batches of the
// old version deciding whether to emit (Batch.Emitting) finish before the switch, and
// later ones see that they no longer serve. The old version emitted for every event up
// to its checkpoint; the new one, which a rebuild folded silently, emits only past it.
// So the old version must have folded at least as far as the new one in every
// partition, or the events in between would never be signalled: Switch fails with
// ErrServingBehind until the live projector has caught it up. The per-partition
// sequences at which emission passed are recorded and returned.
func Switch(ctx context.Context, tx pgx.Tx, projection, from, to string) (map[int]uint64, error) {
	var got string
	err := tx.QueryRow(ctx, `SELECT target FROM projections.serving WHERE projection = $1 FOR UPDATE`, projection).Scan(&got)
	switch {
	case errors.Is(err, pgx.ErrNoRows) && from == "":
		if _, err := tx.Exec(ctx, `INSERT INTO projections.serving (projection, target) VALUES ($1, $2)`, projection, to); err != nil {
			return nil, err
		}
	case errors.Is(err, pgx.ErrNoRows), err == nil && got != from:
		return nil, fmt.Errorf("switch %s from %s to %s: %w", projection, from, to, ErrServingMoved)
	case err != nil:
		return nil, fmt.Errorf("switch %s to %s: %w", projection, to, err)
	}
	next, err := LoadCheckpoints(ctx, tx, to, nil)
	if err != nil {
		return nil, err
	}
	seqs := make(map[int]uint64, len(next))
	for p, cp := range next {
		seqs[p] = cp.Seq
	}
	if from != "" {
		prev, err := LoadCheckpoints(ctx, tx, from, nil)
		if err != nil {
			return nil, err
		}
		var behind []int
		for p, cp := range prev {
			if cp.Seq < seqs[p] {
				behind = append(behind, p)
			}
			seqs[p] = cp.Seq
		}
		if len(behind) > 0 {
			return nil, fmt.Errorf("switch %s from %s to %s: partitions %s: %w", projection, from, to, FormatPartitions(behind), ErrServingBehind)
		}
	}
	js, err := json.Marshal(seqs)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE projections.serving SET target = $3, previous = nullif($2, ''), switched_at = now(), switch_seqs = $4
		WHERE projection = $1`, projection, from, to, js); err != nil {
		return nil, fmt.Errorf("switch %s to %s: %w", projection, to, err)
	}
	return seqs, nil
}

// DropTarget deletes a version that no longer serves: its schema, checkpoints, lag
// rows and dead letters, and its migration records. It refuses the serving version.
func DropTarget(ctx context.Context, pool *pgxpool.Pool, target string) error {
	if _, _, ok := TargetVersion(target); !ok {
		return fmt.Errorf("drop %q: not a versioned target such as customer360_v1", target)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var serving bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM projections.serving WHERE target = $1)`, target).Scan(&serving); err != nil {
			return fmt.Errorf("drop %s: %w", target, err)
		}
		if serving {
			return fmt.Errorf("drop %s: it is the serving version; rebuild and switch first", target)
		}
		var running bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM projections.rebuilds WHERE target = $1 AND status = 'running')`, target).Scan(&running); err != nil {
			return fmt.Errorf("drop %s: %w", target, err)
		}
		stmts := []string{
			"DROP SCHEMA IF EXISTS " + pgx.Identifier{target}.Sanitize() + " CASCADE",
			"DELETE FROM public.touchstream_migrations WHERE schema_name = $1",
			"DELETE FROM projections.checkpoints WHERE target = $1",
			"DELETE FROM projections.lag WHERE target = $1",
			"DELETE FROM projections.dead_letters WHERE target = $1",
			"UPDATE projections.rebuilds SET status = 'dropped', updated_at = now(), finished_at = coalesce(finished_at, now()) WHERE target = $1",
			"UPDATE projections.serving SET previous = NULL WHERE previous = $1",
		}
		for i, s := range stmts {
			var err error
			if i == 0 {
				_, err = tx.Exec(ctx, s)
			} else {
				_, err = tx.Exec(ctx, s, target)
			}
			if err != nil && !isUndefinedTable(err) {
				return fmt.Errorf("drop %s: %w", target, err)
			}
		}
		return nil
	})
}

// ServingCache answers "which version serves projection p" for readers, looking the
// pointer up at most once per TTL, so a switch reaches every reader within TTL.
type ServingCache struct {
	DB  Querier
	TTL time.Duration // default 1s

	mu      sync.Mutex
	at      time.Time
	targets map[string]string
}

// Target returns the serving version of projection, or fallback when none is recorded.
func (c *ServingCache) Target(ctx context.Context, projection, fallback string) (string, error) {
	ttl := c.TTL
	if ttl <= 0 {
		ttl = time.Second
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.targets == nil || time.Since(c.at) >= ttl {
		ts, err := ServingTargets(ctx, c.DB)
		if err != nil {
			if isUndefinedTable(err) {
				ts = map[string]string{}
			} else if c.targets == nil {
				return "", err
			} else {
				ts = c.targets // keep answering with what we knew
			}
		}
		c.targets, c.at = ts, time.Now()
	}
	if t, ok := c.targets[projection]; ok {
		return t, nil
	}
	return fallback, nil
}

// isUndefinedTable: the runtime's tables (or a target's schema) do not exist yet.
func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
}

// emission decides, inside a batch's transaction, whether a target emits signals.
type emission struct {
	projection, target string

	read      bool
	serving   bool
	switchSeq map[int]uint64
}

// emission returns the emission state of a batch of p (nil when the runner never
// emits).
func (r *Runner) emission(p Projection) *emission {
	if r.cfg.NoSignals {
		return nil
	}
	return &emission{projection: p.Name(), target: p.Target()}
}

func (em *emission) emitting(ctx context.Context, tx pgx.Tx, e *Envelope) (bool, error) {
	if !em.read {
		var target string
		var seqs []byte
		err := tx.QueryRow(ctx, `SELECT target, switch_seqs FROM projections.serving WHERE projection = $1 FOR SHARE`, em.projection).Scan(&target, &seqs)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// One version, never switched: it serves.
			em.serving = true
		case err != nil:
			return false, fmt.Errorf("serving version of %s: %w", em.projection, err)
		default:
			em.serving = target == em.target
			if em.serving && len(seqs) > 0 {
				if err := json.Unmarshal(seqs, &em.switchSeq); err != nil {
					return false, fmt.Errorf("switch sequences of %s: %w", em.projection, err)
				}
			}
		}
		em.read = true
	}
	return em.serving && e.Seq > em.switchSeq[e.Partition], nil
}
