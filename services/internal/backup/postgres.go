package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The files of the runtime state read with each phase's dump, in its snapshot.
const (
	stateBeforeFile = "postgres/state-before-log.json"
	stateAfterFile  = "postgres/state-after-log.json"
)

// dbState is the runtime state a backup keeps beside the schema dumps, read in the
// same database snapshot as the dumps of its phase.
type dbState struct {
	// Migrations are the records (public.touchstream_migrations) of the schemas
	// dumped in the phase: restored with them, so no migration runs twice.
	Migrations []migrationRow `json:"migrations"`
	// Serving is projections.serving: which version of each projection serves.
	Serving []servingRow `json:"serving,omitempty"`
	// Checkpoints are the checkpoints of the serving versions (signals were emitted up
	// to them) and of the idempotency index (its rows are in the dump beside them).
	Checkpoints []checkpointRow `json:"checkpoints,omitempty"`
	// KEK is the key store's current key-encryption key (fingerprint).
	KEK string `json:"kek_id,omitempty"`
	// DataKeys counts the key store's data keys.
	DataKeys int64 `json:"data_keys,omitempty"`
}

type migrationRow struct {
	Component string    `json:"component"`
	Schema    string    `json:"schema"`
	Version   int       `json:"version"`
	Name      string    `json:"name"`
	AppliedAt time.Time `json:"applied_at"`
}

type servingRow struct {
	Projection string `json:"projection"`
	Target     string `json:"target"`
}

type checkpointRow struct {
	Target        string     `json:"target"`
	Partition     int        `json:"partition"`
	Stream        string     `json:"stream"`
	Seq           int64      `json:"seq"`
	Applied       int64      `json:"applied"`
	PartitionTime *time.Time `json:"partition_time,omitempty"`
	LastStoredAt  *time.Time `json:"last_stored_at,omitempty"`
}

// snapshotTx is a read-only repeatable-read transaction whose snapshot is exported,
// so that pg_dump processes read exactly what it reads.
type snapshotTx struct {
	tx pgx.Tx
	id string
}

func beginSnapshot(ctx context.Context, pool *pgxpool.Pool) (*snapshotTx, error) {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	var id string
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&id); err != nil {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("export snapshot: %w", err)
	}
	return &snapshotTx{tx: tx, id: id}, nil
}

func (s *snapshotTx) end(ctx context.Context) { _ = s.tx.Rollback(context.WithoutCancel(ctx)) }

// schemaExists reports whether schema exists in the snapshot.
func (s *snapshotTx) schemaExists(ctx context.Context, schema string) (bool, error) {
	var ok bool
	err := s.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&ok)
	return ok, err
}

// tableExists reports whether schema.table exists in the snapshot.
func (s *snapshotTx) tableExists(ctx context.Context, qualified string) (bool, error) {
	var ok bool
	err := s.tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, qualified).Scan(&ok)
	return ok, err
}

// tableRows counts the rows of every table of schema (partitioned tables counted
// once, through their parent).
func tableRows(ctx context.Context, q pgx.Tx, schema string) (map[string]int64, error) {
	rows, err := q.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname`, schema)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(names))
	for _, n := range names {
		var c int64
		if err := q.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, n}.Sanitize()).Scan(&c); err != nil {
			return nil, fmt.Errorf("count %s.%s: %w", schema, n, err)
		}
		out[n] = c
	}
	return out, nil
}

// migrations reads the migration records of schemas.
func (s *snapshotTx) migrations(ctx context.Context, schemas []string) ([]migrationRow, error) {
	ok, err := s.tableExists(ctx, "public.touchstream_migrations")
	if err != nil || !ok {
		return nil, err
	}
	rows, err := s.tx.Query(ctx, `SELECT component, schema_name, version, name, applied_at FROM public.touchstream_migrations
		WHERE schema_name = ANY($1) ORDER BY schema_name, component, version`, schemas)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (migrationRow, error) {
		var m migrationRow
		err := r.Scan(&m.Component, &m.Schema, &m.Version, &m.Name, &m.AppliedAt)
		return m, err
	})
}

// servingState reads the serving versions and the checkpoints of those versions and
// of extra targets (the idempotency index).
func (s *snapshotTx) servingState(ctx context.Context, extra []string) ([]servingRow, []checkpointRow, error) {
	var serving []servingRow
	targets := append([]string(nil), extra...)
	if ok, err := s.tableExists(ctx, "projections.serving"); err != nil {
		return nil, nil, err
	} else if ok {
		rows, err := s.tx.Query(ctx, `SELECT projection, target FROM projections.serving ORDER BY projection`)
		if err != nil {
			return nil, nil, fmt.Errorf("read serving versions: %w", err)
		}
		if serving, err = pgx.CollectRows(rows, pgx.RowToStructByPos[servingRow]); err != nil {
			return nil, nil, fmt.Errorf("read serving versions: %w", err)
		}
		for _, r := range serving {
			targets = append(targets, r.Target)
		}
	}
	if ok, err := s.tableExists(ctx, "projections.checkpoints"); err != nil || !ok {
		return serving, nil, err
	}
	rows, err := s.tx.Query(ctx, `SELECT target, partition, stream, seq, applied, partition_time, last_stored_at
		FROM projections.checkpoints WHERE target = ANY($1) ORDER BY target, partition`, targets)
	if err != nil {
		return nil, nil, fmt.Errorf("read checkpoints: %w", err)
	}
	cps, err := pgx.CollectRows(rows, pgx.RowToStructByPos[checkpointRow])
	if err != nil {
		return nil, nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return serving, cps, nil
}

// pgTools runs pg_dump and pg_restore against one database.
type pgTools struct {
	dump, restore string
	dbURL         string   // without its password
	env           []string // PGPASSWORD when the URL had one
}

func newPGTools(dump, restore, dbURL string) (*pgTools, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	t := &pgTools{dump: dump, restore: restore, env: os.Environ()}
	// The password goes through the environment, never the command line (ps shows it).
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			t.env = append(t.env, "PGPASSWORD="+pw)
			u.User = url.User(u.User.Username())
		}
	}
	t.dbURL = u.String()
	return t, nil
}

// dumpSchema writes schema, as the exported snapshot sees it, to path in pg_dump's
// custom format (compressed; pg_restore reads it).
func (t *pgTools) dumpSchema(ctx context.Context, snapshot, schema, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return run(ctx, t.env, t.dump, "--format=custom", "--no-owner", "--no-privileges", "--schema="+schema,
		"--snapshot="+snapshot, "--file="+path, "--dbname="+t.dbURL)
}

// restoreFile loads a dump in one transaction, stopping at the first error.
func (t *pgTools) restoreFile(ctx context.Context, path string) error {
	return run(ctx, t.env, t.restore, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
		"--dbname="+t.dbURL, path)
}

func run(ctx context.Context, env []string, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s: %w: %s", filepath.Base(bin), err, strings.TrimSpace(truncate(stderr.Bytes(), 2000)))
		}
		return fmt.Errorf("%s: %w", filepath.Base(bin), err)
	}
	return nil
}

// marshalSeqs is a version's checkpoints as projections.serving.switch_seqs:
// partition → stream sequence.
func marshalSeqs(cps []checkpointRow, target string) ([]byte, bool) {
	seqs := map[int]int64{}
	for _, c := range cps {
		if c.Target == target {
			seqs[c.Partition] = c.Seq
		}
	}
	if len(seqs) == 0 {
		return nil, false
	}
	b, _ := json.Marshal(seqs)
	return b, true
}
