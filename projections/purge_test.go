package projections_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/testkit"
)

// TestVersionsAndDeadLetterPurge: Versions lists every version whose schema exists,
// with its role (serving, rebuilding, kept), and PurgeDeadLetters removes the error
// text of one customer's dead letters in every target, keeping the rows.
func TestVersionsAndDeadLetterPurge(t *testing.T) {
	ctx := t.Context()
	pool, _ := testkit.Pool(t)
	if err := projections.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE SCHEMA customer360_v1`, `CREATE SCHEMA customer360_v2`, `CREATE SCHEMA customer360_v3`, `CREATE SCHEMA timeline_v1`,
		`CREATE SCHEMA keystore`, `CREATE SCHEMA notify`,
		`INSERT INTO projections.serving (projection, target, previous) VALUES ('customer360', 'customer360_v2', 'customer360_v1'), ('timeline', 'timeline_v1', NULL)`,
		`INSERT INTO projections.rebuilds (target, projection, status) VALUES ('customer360_v2', 'customer360', 'switched'), ('customer360_v3', 'customer360', 'running')`,
		`INSERT INTO projections.dead_letters (target, partition, stream, seq, customer_id, error) VALUES
			('customer360_v1', 0, 'TOUCHPOINTS', 10, 'C1', 'bad plan for 王芳'), ('customer360_v2', 0, 'TOUCHPOINTS', 10, 'C1', 'bad plan'),
			('customer360_v2', 0, 'TOUCHPOINTS', 11, 'C2', 'bad plan')`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	got, err := projections.Versions(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	want := []projections.Version{
		{Target: "customer360_v1", Projection: "customer360", Role: projections.RoleKept},
		{Target: "customer360_v2", Projection: "customer360", Role: projections.RoleServing},
		{Target: "customer360_v3", Projection: "customer360", Role: projections.RoleRebuilding},
		{Target: "timeline_v1", Projection: "timeline", Role: projections.RoleServing},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Versions (-want +got):\n%s", diff)
	}

	purge := func() map[string]int64 {
		t.Helper()
		var n map[string]int64
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var err error
			n, err = projections.PurgeDeadLetters(ctx, tx, "C1")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if diff := cmp.Diff(map[string]int64{"customer360_v1": 1, "customer360_v2": 1}, purge()); diff != "" {
		t.Errorf("first purge (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{}, purge()); diff != "" {
		t.Errorf("second purge (-want +got):\n%s", diff)
	}
	var texts []string
	rows, _ := pool.Query(ctx, `SELECT error FROM projections.dead_letters ORDER BY id`)
	texts, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{projections.ErasedError, projections.ErasedError, "bad plan"}, texts); diff != "" {
		t.Errorf("dead-letter errors (-want +got):\n%s", diff)
	}
}
