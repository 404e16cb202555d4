package projections

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// IndexDeferrer is implemented by projections whose tables carry secondary indexes
// that their own fold never reads (indexes for readers: search, sorting, filters).
// A rebuild drops them from the new version after its migrations, folds the log
// without maintaining them, and creates them again, each in one sorted pass, once the
// version has caught up and before it is marked built or switched: inserting millions
// of rows into a table with half a dozen B-trees costs the database several times
// what the rows cost alone. The live projector never defers anything.
//
// Unique indexes and primary keys are never deferred (they are constraints the fold
// relies on), nor an index the fold queries: name only indexes no statement of Apply
// can use.
type IndexDeferrer interface {
	// DeferredIndexes names indexes of Target() a rebuild may build at its end.
	DeferredIndexes() []string
}

// deferIndexes drops the named non-unique indexes of target and records their
// definitions with the rebuild, in one transaction: a crash leaves either both or
// neither. Indexes already dropped (a resumed rebuild) are already recorded.
func deferIndexes(ctx context.Context, pool *pgxpool.Pool, target string, names []string) (int, error) {
	dropped := 0
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT c.relname::text, pg_get_indexdef(i.indexrelid)
			FROM pg_index i
			JOIN pg_class c ON c.oid = i.indexrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = ANY($2) AND NOT i.indisunique AND NOT i.indisprimary
			ORDER BY c.relname`, target, names)
		if err != nil {
			return err
		}
		type index struct{ Name, Def string }
		found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[index])
		if err != nil {
			return err
		}
		for _, ix := range found {
			if _, err := tx.Exec(ctx, `UPDATE projections.rebuilds SET deferred_indexes = array_append(deferred_indexes, $2)
				WHERE target = $1 AND NOT ($2 = ANY (deferred_indexes))`, target, ix.Def); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DROP INDEX "+pgx.Identifier{target, ix.Name}.Sanitize()); err != nil {
				return err
			}
		}
		dropped = len(found)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rebuild %s: defer indexes: %w", target, err)
	}
	return dropped, nil
}

// createDeferredIndexes creates the indexes deferIndexes recorded for target, one
// statement each (IF NOT EXISTS: a resumed rebuild may have made some), with a
// generous maintenance_work_mem on its own connection, then forgets them. It returns
// how long it took and how many it created.
func createDeferredIndexes(ctx context.Context, pool *pgxpool.Pool, target string, report func(def string, took time.Duration)) (time.Duration, int, error) {
	start := time.Now()
	var defs []string
	if err := pool.QueryRow(ctx, `SELECT deferred_indexes FROM projections.rebuilds WHERE target = $1`, target).Scan(&defs); err != nil {
		return 0, 0, fmt.Errorf("rebuild %s: deferred indexes: %w", target, err)
	}
	if len(defs) == 0 {
		return 0, 0, nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET maintenance_work_mem = '256MB'`); err != nil {
		return 0, 0, fmt.Errorf("rebuild %s: deferred indexes: %w", target, err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `RESET maintenance_work_mem`) }()
	for _, def := range defs {
		t := time.Now()
		stmt, ok := strings.CutPrefix(def, "CREATE INDEX ")
		if !ok {
			return 0, 0, fmt.Errorf("rebuild %s: deferred index %q: not a CREATE INDEX statement", target, def)
		}
		if _, err := conn.Exec(ctx, "CREATE INDEX IF NOT EXISTS "+stmt); err != nil {
			return 0, 0, fmt.Errorf("rebuild %s: create deferred index (%s): %w", target, def, err)
		}
		if report != nil {
			report(def, time.Since(t))
		}
	}
	if _, err := conn.Exec(ctx, `UPDATE projections.rebuilds SET deferred_indexes = '{}' WHERE target = $1`, target); err != nil {
		return 0, 0, fmt.Errorf("rebuild %s: deferred indexes: %w", target, err)
	}
	return time.Since(start), len(defs), nil
}
