package reporting

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/loyalty"
	"github.com/touchstream/touchstream/projections/servicelevel"
)

// Schema is the schema the views live in.
const Schema = "reporting"

// Role is the read-only role's conventional name (deploy/grafana/README.md).
const Role = "touchstream_reporting"

//go:embed views.sql
var viewsSQL string

// Projections are the projections the views read, each through its serving version;
// a projection with no serving version recorded is read in its first version
// (<name>_v1), as the projector starts it.
func Projections() []string {
	return []string{customer360.Name, loyalty.Name, churn.Name, servicelevel.Name}
}

// View is one view of the contract: its qualified name and its columns, in order.
type View struct {
	Name    string   // "reporting.customers_by_tier"
	Columns []Column // as declared in the view's header
	stmts   []string // CREATE OR REPLACE VIEW, then COMMENT ON statements, with placeholders
}

// Column is a view's column and its PostgreSQL type as format_type spells it
// ("bigint", "double precision", "timestamp with time zone" for timestamptz).
type Column struct {
	Name, Type string
}

// Views returns the views of the contract, in the order Refresh creates them.
func Views() ([]View, error) {
	return parse(viewsSQL)
}

var header = regexp.MustCompile(`^-- @view (reporting\.[a-z_][a-z0-9_]*) \((.+)\)$`)

// aliases are the type names a header may use for format_type's spelling.
var aliases = map[string]string{"timestamptz": "timestamp with time zone", "int": "integer", "bool": "boolean", "float8": "double precision"}

// parse splits the contract into views: a header line, then statements ending with
// ";" at the end of a line.
func parse(src string) ([]View, error) {
	var out []View
	var cur *View
	var stmt strings.Builder
	for i, line := range strings.Split(src, "\n") {
		if m := header.FindStringSubmatch(line); m != nil {
			if cur != nil && strings.TrimSpace(stmt.String()) != "" {
				return nil, fmt.Errorf("views.sql:%d: statement of %s not ended with ;", i+1, cur.Name)
			}
			out = append(out, View{Name: m[1]})
			cur = &out[len(out)-1]
			for _, c := range strings.Split(m[2], ",") {
				name, typ, ok := strings.Cut(strings.TrimSpace(c), " ")
				if !ok {
					return nil, fmt.Errorf("views.sql:%d: column %q: want <name> <type>", i+1, c)
				}
				typ = strings.TrimSpace(typ)
				if a, ok := aliases[typ]; ok {
					typ = a
				}
				cur.Columns = append(cur.Columns, Column{Name: name, Type: typ})
			}
			stmt.Reset()
			continue
		}
		if cur == nil || strings.HasPrefix(line, "--") || (stmt.Len() == 0 && strings.TrimSpace(line) == "") {
			continue
		}
		stmt.WriteString(line)
		stmt.WriteString("\n")
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			cur.stmts = append(cur.stmts, strings.TrimSuffix(strings.TrimSpace(stmt.String()), ";"))
			stmt.Reset()
		}
	}
	if cur != nil && strings.TrimSpace(stmt.String()) != "" {
		return nil, fmt.Errorf("views.sql: statement of %s not ended with ;", cur.Name)
	}
	for _, v := range out {
		if len(v.stmts) == 0 || !strings.HasPrefix(v.stmts[0], "CREATE OR REPLACE VIEW "+v.Name+" AS") {
			return nil, fmt.Errorf("views.sql: %s: the first statement must be CREATE OR REPLACE VIEW %s AS", v.Name, v.Name)
		}
	}
	return out, nil
}

// empty is the view's typed, empty stand-in.
func (v View) empty() string {
	cols := make([]string, len(v.Columns))
	for i, c := range v.Columns {
		cols[i] = "NULL::" + c.Type + " AS " + pgx.Identifier{c.Name}.Sanitize()
	}
	return "CREATE OR REPLACE VIEW " + v.Name + " AS SELECT " + strings.Join(cols, ", ") + " WHERE false"
}

var placeholder = regexp.MustCompile(`\{\{([a-z0-9_]+)\}\}`)

// expand replaces the placeholders of a statement.
func expand(stmt string, values map[string]string) (string, error) {
	var missing []string
	s := placeholder.ReplaceAllStringFunc(stmt, func(m string) string {
		k := m[2 : len(m)-2]
		v, ok := values[k]
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("unknown placeholders %s", strings.Join(missing, ", "))
	}
	return s, nil
}

// lockID serialises Refresh and EnsureRole across processes (views and grants are
// catalog rows: concurrent replaces fail with "tuple concurrently updated").
const lockID = 0x7265706f7274 // "report"

// Refresh creates or replaces the reporting views over the serving versions, in one
// transaction. It creates the projection runtime's tables first if missing (the
// views over lag and dead letters read them). A view whose version has no tables yet
// is created typed and empty; Refresh after the version is migrated replaces it.
// Refresh must run after every switch of a serving version: until then the views
// read the replaced version.
func Refresh(ctx context.Context, pool *pgxpool.Pool) error {
	views, err := Views()
	if err != nil {
		return fmt.Errorf("reporting views: %w", err)
	}
	if err := projections.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("refresh reporting views: %w", err)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockID)); err != nil {
			return fmt.Errorf("refresh reporting views: lock: %w", err)
		}
		serving, err := projections.ServingTargets(ctx, tx)
		if err != nil {
			return fmt.Errorf("refresh reporting views: %w", err)
		}
		values := map[string]string{"answer_target": strconv.FormatFloat(servicelevel.AnswerTarget, 'f', -1, 64)}
		for _, p := range Projections() {
			t := serving[p]
			if t == "" {
				t = p + "_v1"
			}
			values[p] = pgx.Identifier{t}.Sanitize()
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+Schema); err != nil {
			return fmt.Errorf("refresh reporting views: %w", err)
		}
		if _, err := tx.Exec(ctx, `COMMENT ON SCHEMA `+Schema+` IS 'Stable views over the serving read models: the SQL contract for dashboards (projections/reporting). Read it through the read-only role.'`); err != nil {
			return fmt.Errorf("refresh reporting views: %w", err)
		}
		for _, v := range views {
			if err := refreshView(ctx, tx, v, values); err != nil {
				return fmt.Errorf("refresh %s: %w", v.Name, err)
			}
		}
		return nil
	})
}

func refreshView(ctx context.Context, tx pgx.Tx, v View, values map[string]string) error {
	create, err := expand(v.stmts[0], values)
	if err != nil {
		return err
	}
	sp, err := tx.Begin(ctx) // a savepoint: a missing version rolls back to it
	if err != nil {
		return err
	}
	if _, err := sp.Exec(ctx, create); err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return rerr
		}
		if !undefinedTable(err) {
			return err
		}
		if _, err := tx.Exec(ctx, v.empty()); err != nil {
			return fmt.Errorf("empty stand-in: %w", err)
		}
	} else if err := sp.Commit(ctx); err != nil {
		return err
	}
	for _, s := range v.stmts[1:] {
		s, err := expand(s, values)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// undefinedTable: the version's tables (or its schema) do not exist.
func undefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
}

// EnsureRole creates the read-only role if missing (NOLOGIN: see the package
// documentation for a login in production) and grants it USAGE on schema reporting
// and SELECT on its views, present and future (default privileges of the role that
// runs EnsureRole, which must be the one that runs Refresh). It grants nothing else:
// the role cannot read the versioned schemas or the runtime's tables.
func EnsureRole(ctx context.Context, pool *pgxpool.Pool, role string) error {
	if role == "" {
		return errors.New("reporting role: name required")
	}
	id := pgx.Identifier{role}.Sanitize()
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockID)); err != nil {
			return fmt.Errorf("reporting role %s: lock: %w", role, err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
			return fmt.Errorf("reporting role %s: %w", role, err)
		}
		if !exists {
			// Roles are cluster-wide: another database's EnsureRole may create it
			// meanwhile, which is as good.
			sp, err := tx.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := sp.Exec(ctx, `CREATE ROLE `+id+` NOLOGIN`); err != nil {
				var pe *pgconn.PgError
				if rerr := sp.Rollback(ctx); rerr != nil {
					return rerr
				}
				if !errors.As(err, &pe) || pe.Code != "42710" { // duplicate_object
					return fmt.Errorf("reporting role %s: create: %w", role, err)
				}
			} else if err := sp.Commit(ctx); err != nil {
				return err
			}
		}
		for _, s := range []string{
			`CREATE SCHEMA IF NOT EXISTS ` + Schema,
			`GRANT USAGE ON SCHEMA ` + Schema + ` TO ` + id,
			`GRANT SELECT ON ALL TABLES IN SCHEMA ` + Schema + ` TO ` + id,
			`ALTER DEFAULT PRIVILEGES IN SCHEMA ` + Schema + ` GRANT SELECT ON TABLES TO ` + id,
		} {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("reporting role %s: %w", role, err)
			}
		}
		return nil
	})
}
