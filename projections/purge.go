package projections

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Purger is implemented by the projections that keep personal data, sealed, or
// anything derived from it (a search hash). The erasure command finds it by a type
// assertion on each version's Projection and calls it for every version present (the
// serving one, old ones kept after a switch, rebuilds in progress); a projection
// without personal data does not implement it. The projection's fold applies the same
// purge when it meets customer.erased, so a replay or rebuild after an erasure ends
// without the customer's personal data too.
type Purger interface {
	// Purge removes, inside tx, what the target keeps of the customer's personal data,
	// and returns how many rows it changed (0: nothing was left). It is idempotent.
	Purge(ctx context.Context, tx pgx.Tx, customer string) (int64, error)
}

// Roles of a version, as Versions reports them.
const (
	RoleServing    = "serving"    // readers and the live projector use it
	RoleRebuilding = "rebuilding" // a rebuild or replay is folding it (running, or failed and resumable)
	RoleKept       = "kept"       // replaced by a switch, or built for inspection: kept until dropped
)

// Version is one version (target schema) of a projection present in the database.
type Version struct {
	Target     string `json:"target"`
	Projection string `json:"projection"`
	Role       string `json:"role"`
}

// Versions lists every version of every projection whose schema exists, by
// projection and version number: whatever may hold read-model rows. It reads
// pg_namespace, projections.serving and projections.rebuilds (absent on a database
// the runtime never migrated: then every version found is "kept").
func Versions(ctx context.Context, q Querier) ([]Version, error) {
	rows, err := q.Query(ctx, `SELECT nspname::text,
			CASE WHEN to_regclass('projections.serving') IS NULL THEN false
				ELSE EXISTS (SELECT 1 FROM projections.serving s WHERE s.target = n.nspname::text) END,
			CASE WHEN to_regclass('projections.rebuilds') IS NULL THEN false
				ELSE EXISTS (SELECT 1 FROM projections.rebuilds r WHERE r.target = n.nspname::text AND r.status IN ('running', 'failed')) END
		FROM pg_namespace n WHERE nspname ~ '^[a-z][a-z0-9]*_v[0-9]+$'`)
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	var out []Version
	var target string
	var serving, rebuilding bool
	_, err = pgx.ForEachRow(rows, []any{&target, &serving, &rebuilding}, func() error {
		name, _, ok := TargetVersion(target)
		if !ok {
			return nil
		}
		v := Version{Target: target, Projection: name, Role: RoleKept}
		switch {
		case serving:
			v.Role = RoleServing
		case rebuilding:
			v.Role = RoleRebuilding
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	slices.SortFunc(out, func(a, b Version) int {
		an, av, _ := TargetVersion(a.Target)
		bn, bv, _ := TargetVersion(b.Target)
		if an != bn {
			if an < bn {
				return -1
			}
			return 1
		}
		return av - bv
	})
	return out, nil
}

// ErasedError is what a dead letter of an erased customer says in place of its error.
const ErasedError = "error text removed: the customer's personal data was erased"

// PurgeDeadLetters removes what the dead-letter table may hold of the customer's
// personal data: the error text of each of the customer's dead letters (an error
// must not quote personal data, but an erasure does not rely on it). The rows keep
// their ids, sequences and status, so a dead letter can still be redriven or
// discarded; the parked event itself is in the log, sealed. It returns the rows
// changed per target.
func PurgeDeadLetters(ctx context.Context, tx pgx.Tx, customer string) (map[string]int64, error) {
	out := map[string]int64{}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('projections.dead_letters') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("purge dead letters of %s: %w", customer, err)
	}
	if !exists {
		return out, nil // never migrated: no dead letters
	}
	rows, err := tx.Query(ctx, `UPDATE projections.dead_letters SET error = $2
		WHERE customer_id = $1 AND error <> $2 RETURNING target`, customer, ErasedError)
	if err != nil {
		return nil, fmt.Errorf("purge dead letters of %s: %w", customer, err)
	}
	var target string
	_, err = pgx.ForEachRow(rows, []any{&target}, func() error { out[target]++; return nil })
	if err != nil {
		return nil, fmt.Errorf("purge dead letters of %s: %w", customer, err)
	}
	return out, nil
}
