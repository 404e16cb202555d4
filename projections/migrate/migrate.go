// Package migrate applies a component's embedded SQL migrations, in order, exactly
// once per database. Each component (a projection, the key store, the runtime) owns
// its migrations: files named NNNN_description.sql in an fs.FS. Applying is safe from
// many processes at once: a transaction-scoped advisory lock serialises them, and every
// migration runs in the same transaction as the record of it.
package migrate

import (
	"context"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migration is one versioned SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Load reads NNNN_name.sql files from dir in fsys.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", out[i-1].Name, out[i].Name, out[i].Version)
		}
	}
	return out, nil
}

// Apply applies the component's migrations that the schema has not seen yet.
// Component names the owner (for example "customer360"); schema is the PostgreSQL
// schema its tables live in (one per projection version, so blue and green versions
// coexist). Migration SQL uses unqualified names: it runs with search_path set to the
// schema. Versions are counted per (component, schema).
func Apply(ctx context.Context, pool *pgxpool.Pool, component, schema string, fsys fs.FS, dir string) error {
	ms, err := Load(fsys, dir)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	h := fnv.New64a()
	h.Write([]byte("touchstream.migrate"))
	lockID := int64(h.Sum64())
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockID); err != nil {
			return fmt.Errorf("migrate %s: lock: %w", component, err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.touchstream_migrations (
			component text NOT NULL,
			schema_name text NOT NULL,
			version int NOT NULL,
			name text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (component, schema_name, version))`); err != nil {
			return fmt.Errorf("migrate %s: %w", component, err)
		}
		ident := pgx.Identifier{schema}.Sanitize()
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
			return fmt.Errorf("migrate %s: schema %s: %w", component, schema, err)
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", ident+", public"); err != nil {
			return fmt.Errorf("migrate %s: %w", component, err)
		}
		var have int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM public.touchstream_migrations WHERE component = $1 AND schema_name = $2", component, schema).Scan(&have); err != nil {
			return fmt.Errorf("migrate %s: %w", component, err)
		}
		for _, m := range ms {
			if m.Version <= have {
				continue
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migrate %s: %s: %w", component, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO public.touchstream_migrations (component, schema_name, version, name) VALUES ($1, $2, $3, $4)", component, schema, m.Version, m.Name); err != nil {
				return fmt.Errorf("migrate %s: record %s: %w", component, m.Name, err)
			}
		}
		return nil
	})
}
