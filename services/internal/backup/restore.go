package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/services/internal/keystore"
)

// RestoreConfig configures a restore.
type RestoreConfig struct {
	// Dir is the backup directory.
	Dir string
	// DeployTo is the directory the backup's configuration files are written to; "":
	// not written.
	DeployTo string
	// Force replaces what the target already holds: the backup's streams are deleted,
	// touchstream's schemas dropped, differing configuration files overwritten.
	// Without it a non-empty target is refused (ErrNotEmpty).
	Force bool
	// DryRun checks the backup and the target and changes nothing.
	DryRun bool
	// MasterKey loads the key store's master key. Required when the backup holds a
	// key store, and called only then: the key must be the one its data keys are
	// wrapped under (Manifest.KEK), and the restore ends by re-applying the log's
	// erasures to the key store with it.
	MasterKey func() (*keystore.MasterKey, error)
	// PGRestore is the pg_restore binary ("pg_restore": found on PATH).
	PGRestore string
	// Progress, when set, is called as long steps advance.
	Progress func(Progress)
}

// ErrNotEmpty: the restore target already holds some of what the backup would
// restore, and Force was not given.
var ErrNotEmpty = errors.New("restore target is not empty")

// ErrWrongMasterKey: the master key given is not the one the backup's data keys are
// wrapped under.
var ErrWrongMasterKey = errors.New("wrong master key for this backup")

// RestoreReport says what a restore found and did.
type RestoreReport struct {
	Dir         string    `json:"dir"`
	Version     string    `json:"backup_touchstream_version"`
	BackupStart time.Time `json:"backup_started_at"`
	BackupEnd   time.Time `json:"backup_completed_at"`
	// Checked is the number of files and bytes whose sha256 matched the manifest.
	CheckedFiles int   `json:"checked_files"`
	CheckedBytes int64 `json:"checked_bytes"`
	DryRun       bool  `json:"dry_run"`
	// Occupied is what the target already held (refused without Force; replaced with
	// it).
	Occupied []string         `json:"occupied,omitempty"`
	Streams  []RestoredStream `json:"streams"`
	Schemas  []RestoredSchema `json:"schemas"`
	// Absent are the declared schemas the backup does not hold (absent at backup).
	Absent []string `json:"absent,omitempty"`
	// Checkpoints restored with the idempotency index.
	Checkpoints int `json:"checkpoints"`
	// Serving are the serving versions recorded, each emitting signals only past the
	// sequences it had emitted up to at backup time.
	Serving []RestoredServing `json:"serving"`
	Deploy  []RestoredFile    `json:"deploy"`
	// DataKeys is the number of data keys in the restored key store (after the
	// erasures were re-applied).
	DataKeys int64 `json:"data_keys"`
	// Erasures is what re-applying the log's customer.erased events did.
	Erasures *Erasures `json:"erasures,omitempty"`
	Seconds  float64   `json:"seconds"`
	// Next are the steps that remain for the operator.
	Next []string `json:"next"`
}

// RestoredStream is one stream restored, with its state after the restore (checked
// equal to the backup's).
type RestoredStream struct {
	Name     string `json:"name"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
}

// RestoredSchema is one schema restored, with the rows of each table after it.
type RestoredSchema struct {
	Name   string           `json:"name"`
	Phase  string           `json:"phase"`
	Tables map[string]int64 `json:"tables"`
}

// RestoredServing is a serving version recorded by the restore.
type RestoredServing struct {
	Projection string `json:"projection"`
	Target     string `json:"target"`
	// EmitsAfter is the highest sequence, over partitions, up to which the version had
	// emitted its signals before the backup: the rebuilt version emits only past each
	// partition's.
	EmitsAfter int64 `json:"emits_after_max_seq"`
}

// RestoredFile is one configuration file.
type RestoredFile struct {
	Name   string `json:"name"`
	Action string `json:"action"` // written, unchanged, replaced
}

// Erasures is what re-applying the log's erasures did to the restored key store.
type Erasures struct {
	Events    int `json:"events"`
	Customers int `json:"customers"`
	Erased    int `json:"customers_erased_again"`
	Keys      int `json:"keys_erased_again"`
}

// Restore checks the backup in cfg.Dir against its manifest, then the target, and
// restores it: the streams (with their sequences), the PostgreSQL schemas and runtime
// state, the configuration files, and last re-applies the log's erasures to the key
// store. The read models are not restored: the projector rebuilds them from the log.
func Restore(ctx context.Context, cfg RestoreConfig, deps Deps) (*RestoreReport, error) {
	start := time.Now()
	if cfg.Dir == "" {
		return nil, errors.New("restore: Dir: required")
	}
	if cfg.PGRestore == "" {
		cfg.PGRestore = "pg_restore"
	}
	if err := deps.validate(); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if cfg.Progress != nil {
		cfg.Progress(Progress{Step: "check " + cfg.Dir})
	}
	m, err := Check(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	rep := &RestoreReport{Dir: cfg.Dir, Version: m.Version, BackupStart: m.StartedAt, BackupEnd: m.CompletedAt, DryRun: cfg.DryRun}
	for _, f := range m.Files {
		rep.CheckedFiles++
		rep.CheckedBytes += f.Size
	}
	var kek *keystore.MasterKey
	if hasKeyStore(m) {
		if cfg.MasterKey == nil {
			return nil, fmt.Errorf("restore: the backup holds a key store: its master key is required (kek %s)", m.KEK)
		}
		if kek, err = cfg.MasterKey(); err != nil {
			return nil, fmt.Errorf("restore: the backup holds a key store (kek %s): master key: %w", m.KEK, err)
		}
		if m.KEK != "" && kek.ID() != m.KEK {
			return nil, fmt.Errorf("restore: %w: the backup's data keys are wrapped under kek %s, the master key given is kek %s", ErrWrongMasterKey, m.KEK, kek.ID())
		}
	}
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	r := &restoreRun{cfg: cfg, deps: deps, m: m, js: js, rep: rep, kek: kek}
	if r.tools, err = newPGTools("", cfg.PGRestore, deps.DatabaseURL); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	occupied, dropStreams, dropSchemas, err := r.occupied(ctx)
	if err != nil {
		return nil, fmt.Errorf("restore: inspect the target: %w", err)
	}
	rep.Occupied = occupied
	if len(occupied) > 0 && !cfg.Force {
		return rep, fmt.Errorf("restore: %w: %v (use --force to replace)", ErrNotEmpty, occupied)
	}
	for _, s := range m.Schemas {
		if s.Absent {
			rep.Absent = append(rep.Absent, s.Name)
		}
	}
	if cfg.DryRun {
		rep.Seconds = time.Since(start).Seconds()
		return rep, nil
	}
	if err := r.drop(ctx, dropStreams, dropSchemas); err != nil {
		return rep, fmt.Errorf("restore: replace the target: %w", err)
	}
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"streams", r.streams},
		{"postgres", r.postgres},
		{"deploy", r.deploy},
		{"erasures", r.erasures},
	}
	for _, s := range steps {
		deps.Log.Info("restore step", "step", s.name)
		if err := s.run(ctx); err != nil {
			return rep, fmt.Errorf("restore: %s: %w", s.name, err)
		}
	}
	rep.Next = []string{
		"start the projector: every read model is rebuilt from the restored log (the idempotency index resumes from its restored checkpoints)",
		"touchstream status: wait until no target lags",
		"touchstream verify: the serving customer360 against the restored log",
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

type restoreRun struct {
	cfg   RestoreConfig
	deps  Deps
	m     *Manifest
	js    jetstream.JetStream
	tools *pgTools
	rep   *RestoreReport
	kek   *keystore.MasterKey
}

func hasKeyStore(m *Manifest) bool {
	return slices.ContainsFunc(m.Schemas, func(s SchemaBackup) bool { return s.Name == "keystore" && !s.Absent })
}

// occupied lists what the target already holds of what the restore writes: streams
// of the backup, touchstream schemas (any migrated schema, the runtime's, the
// backup's), configuration files that differ.
func (r *restoreRun) occupied(ctx context.Context) (occ, streams, schemas []string, err error) {
	for _, s := range r.m.Streams {
		_, err := r.js.Stream(ctx, s.Name)
		switch {
		case err == nil:
			occ = append(occ, "stream "+s.Name)
			streams = append(streams, s.Name)
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, nil, nil, fmt.Errorf("stream %s: %w", s.Name, err)
		}
	}
	candidates := []string{"projections"}
	for _, s := range r.m.Schemas {
		candidates = append(candidates, s.Name)
	}
	var migrated bool
	if err := r.deps.Pool.QueryRow(ctx, `SELECT to_regclass('public.touchstream_migrations') IS NOT NULL`).Scan(&migrated); err != nil {
		return nil, nil, nil, err
	}
	if migrated {
		rows, err := r.deps.Pool.Query(ctx, `SELECT DISTINCT schema_name FROM public.touchstream_migrations`)
		if err != nil {
			return nil, nil, nil, err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, nil, nil, err
		}
		candidates = append(candidates, names...)
	}
	rows, err := r.deps.Pool.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname = ANY($1) ORDER BY nspname`, candidates)
	if err != nil {
		return nil, nil, nil, err
	}
	if schemas, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, nil, nil, err
	}
	for _, s := range schemas {
		occ = append(occ, "schema "+s)
	}
	if migrated {
		occ = append(occ, "table public.touchstream_migrations")
	}
	if r.cfg.DeployTo != "" {
		for _, d := range r.m.Deploy {
			have, err := os.ReadFile(filepath.Join(r.cfg.DeployTo, d))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, nil, nil, err
			}
			want, err := os.ReadFile(filepath.Join(r.cfg.Dir, "deploy", d))
			if err != nil {
				return nil, nil, nil, err
			}
			if !bytes.Equal(have, want) {
				occ = append(occ, "file "+filepath.Join(r.cfg.DeployTo, d)+" (differs)")
			}
		}
	}
	return occ, streams, schemas, nil
}

// drop deletes what Force replaces.
func (r *restoreRun) drop(ctx context.Context, streams, schemas []string) error {
	for _, s := range streams {
		if err := r.js.DeleteStream(ctx, s); err != nil {
			return fmt.Errorf("delete stream %s: %w", s, err)
		}
		r.deps.Log.Warn("stream deleted to be replaced by the backup's", "stream", s)
	}
	if len(schemas) == 0 && !slices.Contains(r.rep.Occupied, "table public.touchstream_migrations") {
		return nil
	}
	return pgx.BeginFunc(ctx, r.deps.Pool, func(tx pgx.Tx) error {
		for _, s := range schemas {
			if _, err := tx.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
				return fmt.Errorf("drop schema %s: %w", s, err)
			}
			r.deps.Log.Warn("schema dropped to be replaced by the backup (or rebuilt from the log)", "schema", s)
		}
		_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS public.touchstream_migrations`)
		return err
	})
}

// streams restores every stream of the backup and checks its state against the
// manifest's.
func (r *restoreRun) streams(ctx context.Context) error {
	for _, s := range r.m.Streams {
		f, err := os.Open(filepath.Join(r.cfg.Dir, filepath.FromSlash(s.File)))
		if err != nil {
			return err
		}
		var size int64
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		var progress func(int64)
		if r.cfg.Progress != nil {
			progress = func(n int64) { r.cfg.Progress(Progress{Step: "restore " + s.Name, Done: n, Total: size}) }
		}
		got, err := restoreStream(ctx, r.deps.NATS, s.Name, s.Config, s.State, f, progress)
		f.Close()
		if err != nil {
			return err
		}
		// An empty stream's first sequence is reported 0 or 1, depending on who asks.
		if got.Messages != s.Messages || got.LastSeq != s.LastSeq || s.Messages > 0 && got.FirstSeq != s.FirstSeq {
			return fmt.Errorf("stream %s restored with %d messages, sequences %d-%d; the backup has %d, %d-%d",
				s.Name, got.Messages, got.FirstSeq, got.LastSeq, s.Messages, s.FirstSeq, s.LastSeq)
		}
		r.rep.Streams = append(r.rep.Streams, RestoredStream{Name: s.Name, Messages: got.Messages, Bytes: got.Bytes, FirstSeq: got.FirstSeq, LastSeq: got.LastSeq})
		r.deps.Log.Info("stream restored", "stream", s.Name, "messages", got.Messages, "last_seq", got.LastSeq)
	}
	return nil
}

// postgres loads the schema dumps, then the runtime state around them: migration
// records, the idempotency index's checkpoints, the serving versions with the
// sequences up to which they had emitted.
func (r *restoreRun) postgres(ctx context.Context) error {
	pool := r.deps.Pool
	if err := projections.Migrate(ctx, pool); err != nil {
		return err
	}
	var before, after dbState
	if err := readJSON(r.cfg.Dir, stateBeforeFile, &before); err != nil {
		return err
	}
	if err := readJSON(r.cfg.Dir, stateAfterFile, &after); err != nil {
		return err
	}
	var restored []SchemaBackup
	for _, s := range r.m.Schemas {
		if s.Absent {
			continue
		}
		if r.cfg.Progress != nil {
			r.cfg.Progress(Progress{Step: "load " + s.Name})
		}
		if err := r.tools.restoreFile(ctx, filepath.Join(r.cfg.Dir, filepath.FromSlash(s.File))); err != nil {
			return fmt.Errorf("load %s: %w", s.Name, err)
		}
		restored = append(restored, s)
	}
	beforeTargets := map[string]bool{}
	for _, s := range r.m.Schemas {
		if s.Phase == PhaseBeforeLog && !s.Absent {
			beforeTargets[s.Name] = true
		}
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, mr := range slices.Concat(before.Migrations, after.Migrations) {
			if _, err := tx.Exec(ctx, `INSERT INTO public.touchstream_migrations (component, schema_name, version, name, applied_at)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, mr.Component, mr.Schema, mr.Version, mr.Name, mr.AppliedAt); err != nil {
				return fmt.Errorf("record migration %s/%s %d: %w", mr.Component, mr.Schema, mr.Version, err)
			}
		}
		for _, c := range before.Checkpoints {
			if !beforeTargets[c.Target] {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO projections.checkpoints (target, partition, stream, seq, applied, partition_time, last_stored_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
				c.Target, c.Partition, c.Stream, c.Seq, c.Applied, c.PartitionTime, c.LastStoredAt); err != nil {
				return fmt.Errorf("checkpoint %s/%d: %w", c.Target, c.Partition, err)
			}
			r.rep.Checkpoints++
		}
		for _, s := range before.Serving {
			seqs, ok := marshalSeqs(before.Checkpoints, s.Target)
			if !ok {
				seqs = nil
			}
			if _, err := tx.Exec(ctx, `INSERT INTO projections.serving (projection, target, switch_seqs) VALUES ($1, $2, $3)
				ON CONFLICT (projection) DO NOTHING`, s.Projection, s.Target, seqs); err != nil {
				return fmt.Errorf("serving %s: %w", s.Projection, err)
			}
			var top int64
			for _, c := range before.Checkpoints {
				if c.Target == s.Target {
					top = max(top, c.Seq)
				}
			}
			r.rep.Serving = append(r.rep.Serving, RestoredServing{Projection: s.Projection, Target: s.Target, EmitsAfter: top})
		}
		for _, s := range restored {
			tables, err := tableRows(ctx, tx, s.Name)
			if err != nil {
				return err
			}
			r.rep.Schemas = append(r.rep.Schemas, RestoredSchema{Name: s.Name, Phase: s.Phase, Tables: tables})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range r.rep.Schemas {
		want := r.schema(s.Name).Tables
		for t, n := range want {
			if s.Tables[t] != n {
				return fmt.Errorf("schema %s: table %s has %d rows after the load, the backup's snapshot had %d", s.Name, t, s.Tables[t], n)
			}
		}
	}
	return nil
}

func (r *restoreRun) schema(name string) SchemaBackup {
	for _, s := range r.m.Schemas {
		if s.Name == name {
			return s
		}
	}
	return SchemaBackup{}
}

// deploy writes the configuration files into DeployTo.
func (r *restoreRun) deploy(ctx context.Context) error {
	if r.cfg.DeployTo == "" {
		return nil
	}
	if err := os.MkdirAll(r.cfg.DeployTo, 0o755); err != nil {
		return err
	}
	names := slices.Clone(r.m.Deploy)
	sort.Strings(names)
	for _, d := range names {
		want, err := os.ReadFile(filepath.Join(r.cfg.Dir, "deploy", d))
		if err != nil {
			return err
		}
		dst := filepath.Join(r.cfg.DeployTo, d)
		action := "written"
		if have, err := os.ReadFile(dst); err == nil {
			action = "replaced"
			if bytes.Equal(have, want) {
				r.rep.Deploy = append(r.rep.Deploy, RestoredFile{Name: d, Action: "unchanged"})
				continue
			}
		}
		if err := os.WriteFile(dst, want, 0o644); err != nil {
			return err
		}
		r.rep.Deploy = append(r.rep.Deploy, RestoredFile{Name: d, Action: action})
	}
	return nil
}

// erasures re-applies the log's customer.erased events to the restored key store, as
// the key service does at start: an erasure recorded in the log wins over a key the
// backup still held.
func (r *restoreRun) erasures(ctx context.Context) error {
	if r.kek == nil {
		return nil
	}
	pool := r.deps.Pool
	if err := keystore.Migrate(ctx, pool); err != nil {
		return err
	}
	store, err := keystore.Open(ctx, pool, r.kek)
	if err != nil {
		return err
	}
	if r.cfg.Progress != nil {
		r.cfg.Progress(Progress{Step: "re-apply the log's erasures"})
	}
	res, err := keystore.Reapply(ctx, store, keystore.ErasureLog{JS: r.js, Layout: r.m.Layout}, r.deps.Log)
	if err != nil {
		return err
	}
	r.rep.Erasures = &Erasures{Events: res.Events, Customers: res.Customers, Erased: len(res.Erased), Keys: res.Keys()}
	return pool.QueryRow(ctx, `SELECT count(*) FROM keystore.data_keys`).Scan(&r.rep.DataKeys)
}
