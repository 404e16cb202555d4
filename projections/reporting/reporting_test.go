package reporting_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/loyalty"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/projections/reporting"
	"github.com/touchstream/touchstream/projections/servicelevel"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/testkit"
)

// migrateVersion creates the tables of one version of every read model the views read.
func migrateVersion(t *testing.T, pool *pgxpool.Pool, v string) {
	t.Helper()
	rs, err := ledger.Load("../../deploy/loyalty.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../deploy/churn-rules.json")
	if err != nil {
		t.Fatal(err)
	}
	scorer, err := features.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	c360, err := customer360.New(customer360.Options{Target: "customer360_" + v, Tiers: valuetier.Default()})
	if err != nil {
		t.Fatal(err)
	}
	loy, err := loyalty.New(loyalty.Options{Target: "loyalty_" + v, Rules: rs})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := churn.New(churn.Options{Target: "churn_" + v, Rules: scorer})
	if err != nil {
		t.Fatal(err)
	}
	sl, err := servicelevel.New(servicelevel.Options{Target: "servicelevel_" + v})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []projections.Projection{c360, loy, ch, sl} {
		if err := p.Migrate(t.Context(), pool); err != nil {
			t.Fatalf("migrate %s: %v", p.Target(), err)
		}
	}
}

// viewColumns is every reporting view's columns and types, as PostgreSQL has them.
func viewColumns(t *testing.T, q projections.Querier) map[string][]reporting.Column {
	t.Helper()
	rows, err := q.Query(t.Context(), `SELECT 'reporting.' || c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE c.relnamespace = 'reporting'::regnamespace AND c.relkind = 'v' AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY c.relname, a.attnum`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]reporting.Column{}
	var view string
	var c reporting.Column
	if _, err := pgx.ForEachRow(rows, []any{&view, &c.Name, &c.Type}, func() error { out[view] = append(out[view], c); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// contract is the views' columns as views.sql declares them.
func contract(t *testing.T) map[string][]reporting.Column {
	t.Helper()
	views, err := reporting.Views()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]reporting.Column{}
	for _, v := range views {
		out[v.Name] = v.Columns
	}
	return out
}

// sources is, per view, the schemas of the relations it reads.
func sources(t *testing.T, pool *pgxpool.Pool) map[string][]string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT DISTINCT 'reporting.' || v.relname, n.nspname
		FROM pg_rewrite r
		JOIN pg_class v ON v.oid = r.ev_class
		JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
		JOIN pg_class s ON s.oid = d.refobjid AND s.oid <> v.oid
		JOIN pg_namespace n ON n.oid = s.relnamespace
		WHERE v.relnamespace = 'reporting'::regnamespace
		ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	var view, schema string
	if _, err := pgx.ForEachRow(rows, []any{&view, &schema}, func() error { out[view] = append(out[view], schema); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantSources(v string) map[string][]string {
	return map[string][]string{
		"reporting.customers_by_tier":  {"customer360_" + v},
		"reporting.loyalty_monthly":    {"loyalty_" + v},
		"reporting.loyalty_tiers":      {"loyalty_" + v},
		"reporting.churn_scores":       {"churn_" + v},
		"reporting.churn_alerts":       {"churn_" + v},
		"reporting.answer_rate_hourly": {"servicelevel_" + v},
		"reporting.complaint_breaches": {"servicelevel_" + v},
		"reporting.projection_lag":     {"projections"},
		"reporting.dead_letters":       {"projections"},
		"reporting.serving_versions":   {"projections"},
	}
}

// answerAll selects a row of every view, as role ("" : the owner).
func answerAll(t *testing.T, pool *pgxpool.Pool, role string) {
	t.Helper()
	views, err := reporting.Views()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		err := asRole(t.Context(), pool, role, func(tx pgx.Tx) error {
			rows, err := tx.Query(t.Context(), `SELECT * FROM `+v.Name+` LIMIT 1`)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		})
		if err != nil {
			t.Errorf("SELECT * FROM %s as %q: %v", v.Name, role, err)
		}
	}
}

// asRole runs f in a transaction as role ("" : the pool's user), rolled back.
func asRole(ctx context.Context, pool *pgxpool.Pool, role string, f func(pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read only
	if role != "" {
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+pgx.Identifier{role}.Sanitize()); err != nil {
			return err
		}
	}
	return f(tx)
}

// newRole is a role name of this test, dropped at its end (roles are cluster-wide).
func newRole(t *testing.T, pool *pgxpool.Pool) string {
	role := "reporting_test_" + testkit.Unique()
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := pool.Exec(ctx, `DROP OWNED BY `+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop owned by %s: %v", role, err)
		}
		if _, err := pool.Exec(ctx, `DROP ROLE IF EXISTS `+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	return role
}

func TestViewsParse(t *testing.T) {
	got := map[string]int{}
	for name, cols := range contract(t) {
		got[name] = len(cols)
	}
	want := map[string]int{
		"reporting.customers_by_tier": 4, "reporting.loyalty_monthly": 8, "reporting.loyalty_tiers": 4,
		"reporting.churn_scores": 8, "reporting.churn_alerts": 10, "reporting.answer_rate_hourly": 9,
		"reporting.complaint_breaches": 8, "reporting.projection_lag": 8, "reporting.dead_letters": 6,
		"reporting.serving_versions": 4,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("views (-want +got):\n%s", diff)
	}
}

// TestRefresh: before the read models exist every view answers (empty), with the
// contract's columns; once migrated, the views read the serving versions; a switch
// and a Refresh point them at the new version.
func TestRefresh(t *testing.T) {
	ctx := t.Context()
	pool, _ := testkit.Pool(t)
	role := newRole(t, pool)

	// The role first: views created later are granted by default privileges.
	if err := reporting.EnsureRole(ctx, pool, role); err != nil {
		t.Fatal(err)
	}
	if err := reporting.Refresh(ctx, pool); err != nil {
		t.Fatalf("refresh, nothing migrated: %v", err)
	}
	if diff := cmp.Diff(contract(t), viewColumns(t, pool)); diff != "" {
		t.Errorf("empty stand-ins' columns (-contract +got):\n%s", diff)
	}
	answerAll(t, pool, "")
	answerAll(t, pool, role)

	migrateVersion(t, pool, "v1")
	if err := reporting.Refresh(ctx, pool); err != nil {
		t.Fatalf("refresh v1: %v", err)
	}
	if diff := cmp.Diff(contract(t), viewColumns(t, pool)); diff != "" {
		t.Errorf("v1 views' columns (-contract +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSources("v1"), sources(t, pool)); diff != "" {
		t.Errorf("v1 views' sources (-want +got):\n%s", diff)
	}
	answerAll(t, pool, role)

	// Rows in v1 and v2 tell them apart; the switch makes v2 serve.
	migrateVersion(t, pool, "v2")
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for _, s := range []struct{ schema, tier string }{{"customer360_v1", "bronze"}, {"customer360_v2", "gold"}} {
		if _, err := pool.Exec(ctx, `INSERT INTO `+s.schema+`.profiles (customer_id, partition, tier, lifecycle, events_total, last_event_time, seq, doc)
			VALUES ('C-1', 0, $1, 'active', 1, $2, 1, '{}')`, s.tier, at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO servicelevel_v2.calls_hourly (queue, hour, offered, answered, within_20s, abandoned)
		VALUES ('billing', $1, 10, 9, 8, 1)`, at); err != nil {
		t.Fatal(err)
	}
	if _, err := projections.EnsureServing(ctx, pool, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, p := range reporting.Projections() {
			if _, err := projections.Switch(ctx, tx, p, "", p+"_v1"); err != nil {
				return err
			}
			if _, err := projections.Switch(ctx, tx, p, p+"_v1", p+"_v2"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := reporting.Refresh(ctx, pool); err != nil {
		t.Fatalf("refresh v2: %v", err)
	}
	if diff := cmp.Diff(wantSources("v2"), sources(t, pool)); diff != "" {
		t.Errorf("v2 views' sources (-want +got):\n%s", diff)
	}
	var tier string
	var customers int64
	if err := pool.QueryRow(ctx, `SELECT tier, customers FROM reporting.customers_by_tier`).Scan(&tier, &customers); err != nil {
		t.Fatal(err)
	}
	if tier != "gold" || customers != 1 {
		t.Errorf("customers_by_tier after the switch: %s %d, want gold 1 (v2)", tier, customers)
	}
	var rate, target float64
	if err := pool.QueryRow(ctx, `SELECT answer_rate, target FROM reporting.answer_rate_hourly WHERE queue = 'billing'`).Scan(&rate, &target); err != nil {
		t.Fatal(err)
	}
	if rate != 0.8 || target != servicelevel.AnswerTarget {
		t.Errorf("answer rate %v target %v, want 0.8 and %v", rate, target, servicelevel.AnswerTarget)
	}
	answerAll(t, pool, role)

	// The role reads the views, nothing else.
	for _, table := range []string{"customer360_v2.profiles", "churn_v2.customers", "loyalty_v2.members", "servicelevel_v2.complaints", "projections.dead_letters", "projections.serving"} {
		err := asRole(ctx, pool, role, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `SELECT 1 FROM `+table+` LIMIT 1`)
			return err
		})
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("SELECT %s as %s: %v, want insufficient_privilege (42501)", table, role, err)
		}
	}
	err = asRole(ctx, pool, role, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `CREATE VIEW reporting.mine AS SELECT 1`)
		return err
	})
	if err == nil {
		t.Errorf("the read-only role created a view in reporting")
	}
}

// TestEnsureRoleTwice: EnsureRole on an existing role only (re)grants.
func TestEnsureRoleTwice(t *testing.T) {
	pool, _ := testkit.Pool(t)
	role := newRole(t, pool)
	if err := reporting.Refresh(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := reporting.EnsureRole(t.Context(), pool, role); err != nil {
			t.Fatal(err)
		}
	}
	answerAll(t, pool, role)
	if err := reporting.EnsureRole(t.Context(), pool, ""); err == nil {
		t.Error("EnsureRole with no name: want an error")
	}
}
