package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/dedup"
)

// The schemas backed up by default, by phase (see the package documentation for why
// each is on its side of the log).
var (
	// DefaultBeforeLog: the idempotency index, with its checkpoints.
	DefaultBeforeLog = []string{dedup.Schema}
	// DefaultAfterLog: the key store, the churn model store and the access audit log.
	DefaultAfterLog = []string{"keystore", "churn_models", "access_audit"}
)

// Phases of a schema.
const (
	PhaseBeforeLog = "before_log"
	PhaseAfterLog  = "after_log"
)

// Progress is how far a long step is.
type Progress struct {
	Step  string // "snapshot TOUCHPOINTS", "restore TOUCHPOINTS", "dump keystore", ...
	Done  int64  // bytes done
	Total int64  // bytes expected (an estimate for snapshots: the stream's stored bytes); 0 unknown
}

// Config configures a backup.
type Config struct {
	// Dir is the backup directory: created, or empty.
	Dir string
	// BeforeLog and AfterLog are the PostgreSQL schemas dumped before and after the
	// stream snapshots. A declared schema that is absent is reported, not an error.
	// Nil: DefaultBeforeLog, DefaultAfterLog.
	BeforeLog, AfterLog []string
	// DeployDir is the deploy directory whose configuration files (*.json: channels
	// and their hashed API keys, access, streams, rules, ...) are copied. Required.
	DeployDir string
	// PGDump is the pg_dump binary ("pg_dump": found on PATH).
	PGDump string
	// Progress, when set, is called as long steps advance.
	Progress func(Progress)
}

func (c *Config) setDefaults() {
	if c.BeforeLog == nil {
		c.BeforeLog = DefaultBeforeLog
	}
	if c.AfterLog == nil {
		c.AfterLog = DefaultAfterLog
	}
	if c.PGDump == "" {
		c.PGDump = "pg_dump"
	}
}

// Validate checks the configuration (after defaults).
func (c *Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("backup: Dir: required"))
	} else if entries, err := os.ReadDir(c.Dir); err == nil && len(entries) > 0 {
		errs = append(errs, fmt.Errorf("backup: Dir %q: not empty (a backup never overwrites another)", c.Dir))
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("backup: Dir %q: %w", c.Dir, err))
	}
	if st, err := os.Stat(c.DeployDir); c.DeployDir == "" || err != nil || !st.IsDir() {
		errs = append(errs, fmt.Errorf("backup: DeployDir %q: not a directory", c.DeployDir))
	}
	seen := map[string]bool{}
	for _, s := range slices.Concat(c.BeforeLog, c.AfterLog) {
		if !validSchema(s) {
			errs = append(errs, fmt.Errorf("backup: schema %q: must be a lowercase identifier", s))
		}
		if seen[s] {
			errs = append(errs, fmt.Errorf("backup: schema %q: declared twice", s))
		}
		seen[s] = true
	}
	return errors.Join(errs...)
}

func validSchema(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Deps are a backup's or a restore's connections.
type Deps struct {
	NATS *nats.Conn
	Pool *pgxpool.Pool
	// DatabaseURL is the pool's database, for pg_dump and pg_restore.
	DatabaseURL string
	// Streams is the definition of the log (deploy/streams.json) and of SIGNALS. For a
	// restore, only SIGNALS' name is used: the log streams are the backup's.
	Streams streams.Definition
	Log     *slog.Logger
}

func (d *Deps) validate() error {
	var errs []error
	if d.NATS == nil {
		errs = append(errs, errors.New("deps.NATS: required"))
	}
	if d.Pool == nil {
		errs = append(errs, errors.New("deps.Pool: required"))
	}
	if d.DatabaseURL == "" {
		errs = append(errs, errors.New("deps.DatabaseURL: required"))
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

// Backup takes a backup into cfg.Dir, in the order the package documentation gives,
// and returns its manifest (also written, last, as manifest.json).
func Backup(ctx context.Context, cfg Config, deps Deps) (*Manifest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.validate(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := deps.Streams.Validate(); err != nil {
		return nil, fmt.Errorf("backup: streams: %w", err)
	}
	tools, err := newPGTools(cfg.PGDump, "", deps.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	b := &backupRun{cfg: cfg, deps: deps, tools: tools, log: deps.Log,
		m: &Manifest{Format: Format, Version: Version(), StartedAt: time.Now().UTC(), Layout: deps.Streams.Layout}}
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"postgres before the log: " + strings.Join(cfg.BeforeLog, ", ") + ", serving versions and checkpoints", b.beforeLog},
		{"log: stream snapshots", b.snapshotLog},
		{"signals: stream snapshot", b.snapshotSignals},
		{"postgres after the log: " + strings.Join(cfg.AfterLog, ", "), b.afterLog},
		{"deploy: configuration files", b.copyDeploy},
	}
	for _, s := range steps {
		start := time.Now().UTC()
		b.log.Info("backup step", "step", s.name)
		if err := s.run(ctx); err != nil {
			return nil, fmt.Errorf("backup: %s: %w", s.name, err)
		}
		b.m.Steps = append(b.m.Steps, Step{Name: s.name, StartedAt: start, FinishedAt: time.Now().UTC()})
	}
	b.m.CompletedAt = time.Now().UTC()
	if err := writeManifest(cfg.Dir, b.m); err != nil {
		return nil, fmt.Errorf("backup: manifest: %w", err)
	}
	return b.m, nil
}

type backupRun struct {
	cfg   Config
	deps  Deps
	tools *pgTools
	log   *slog.Logger
	m     *Manifest
}

func (b *backupRun) progress(step string, total int64) func(int64) {
	if b.cfg.Progress == nil {
		return nil
	}
	return func(done int64) { b.cfg.Progress(Progress{Step: step, Done: done, Total: total}) }
}

// dumpPhase dumps the schemas of a phase that exist in the snapshot, records the
// absent ones, and returns the present ones.
func (b *backupRun) dumpPhase(ctx context.Context, snap *snapshotTx, phase string, schemas []string) ([]string, error) {
	var present []string
	for _, s := range schemas {
		ok, err := snap.schemaExists(ctx, s)
		if err != nil {
			return nil, err
		}
		if !ok {
			b.log.Warn("declared schema absent: not backed up", "schema", s)
			b.m.Schemas = append(b.m.Schemas, SchemaBackup{Name: s, Phase: phase, Absent: true})
			continue
		}
		tables, err := tableRows(ctx, snap.tx, s)
		if err != nil {
			return nil, err
		}
		rel := "postgres/" + s + ".dump"
		if b.cfg.Progress != nil {
			b.cfg.Progress(Progress{Step: "dump " + s})
		}
		if err := b.tools.dumpSchema(ctx, snap.id, s, filepath.Join(b.cfg.Dir, filepath.FromSlash(rel))); err != nil {
			return nil, fmt.Errorf("dump %s: %w", s, err)
		}
		f, err := hashFile(b.cfg.Dir, rel)
		if err != nil {
			return nil, err
		}
		b.m.Files = append(b.m.Files, f)
		b.m.Schemas = append(b.m.Schemas, SchemaBackup{Name: s, Phase: phase, File: rel, Tables: tables})
		present = append(present, s)
	}
	return present, nil
}

// beforeLog dumps the idempotency index with its checkpoints, and records the serving
// versions and their checkpoints, all in one database snapshot taken before the log's:
// everything they say is in the log snapshotted next.
func (b *backupRun) beforeLog(ctx context.Context) error {
	return b.phase(ctx, PhaseBeforeLog, b.cfg.BeforeLog, stateBeforeFile, func(snap *snapshotTx, present []string, st *dbState) error {
		var err error
		st.Serving, st.Checkpoints, err = snap.servingState(ctx, present)
		return err
	})
}

// afterLog dumps the add-only stores (keys, models, audit) in one snapshot taken after
// the log's: every key and model an event of the snapshot needs is in it.
func (b *backupRun) afterLog(ctx context.Context) error {
	return b.phase(ctx, PhaseAfterLog, b.cfg.AfterLog, stateAfterFile, func(snap *snapshotTx, present []string, st *dbState) error {
		if !slices.Contains(present, "keystore") {
			return nil
		}
		if ok, err := snap.tableExists(ctx, "keystore.keks"); err != nil || !ok {
			return err
		}
		err := snap.tx.QueryRow(ctx, `SELECT coalesce((SELECT kek_id FROM keystore.keks WHERE state = 'current'), ''),
			(SELECT count(*) FROM keystore.data_keys)`).Scan(&st.KEK, &st.DataKeys)
		if err != nil {
			return fmt.Errorf("key store: %w", err)
		}
		b.m.KEK = st.KEK
		return nil
	})
}

// phase dumps the present schemas of a phase from one exported database snapshot and
// writes, as file, the runtime state read in that same snapshot (the dumped schemas'
// migration records, and what more reads).
func (b *backupRun) phase(ctx context.Context, phase string, schemas []string, file string, more func(*snapshotTx, []string, *dbState) error) error {
	snap, err := beginSnapshot(ctx, b.deps.Pool)
	if err != nil {
		return err
	}
	defer snap.end(ctx)
	present, err := b.dumpPhase(ctx, snap, phase, schemas)
	if err != nil {
		return err
	}
	var st dbState
	if st.Migrations, err = snap.migrations(ctx, present); err != nil {
		return err
	}
	if err := more(snap, present, &st); err != nil {
		return err
	}
	f, err := writeJSONFile(b.cfg.Dir, file, st)
	if err != nil {
		return err
	}
	b.m.Files = append(b.m.Files, f)
	return nil
}

// snapshotLog snapshots every stream of the layout, without consumers (the
// projectors' are ephemeral: their position is their checkpoints).
func (b *backupRun) snapshotLog(ctx context.Context) error {
	for _, s := range b.deps.Streams.Layout.Streams {
		if err := b.snapshot(ctx, s.Name, true, false); err != nil {
			return err
		}
	}
	return nil
}

// snapshotSignals snapshots SIGNALS with its consumers: the notifier's durable
// consumers and how far each webhook was delivered.
func (b *backupRun) snapshotSignals(ctx context.Context) error {
	return b.snapshot(ctx, b.deps.Streams.SignalsConfig().Name, false, true)
}

func (b *backupRun) snapshot(ctx context.Context, name string, log, consumers bool) error {
	rel := "streams/" + name + ".snapshot"
	w, err := createFile(b.cfg.Dir, rel)
	if err != nil {
		return err
	}
	// The stream's size is the estimate: the snapshot is compressed, so usually less.
	var total int64
	step := "snapshot " + name
	snap, err := snapshotStream(ctx, b.deps.NATS, name, consumers, w, func(n int64) {
		if p := b.progress(step, total); p != nil {
			p(n)
		}
	}, func(st streamState) { total = int64(st.Bytes) })
	f, cerr := w.close()
	if err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	b.m.Files = append(b.m.Files, f)
	b.m.Streams = append(b.m.Streams, StreamBackup{Name: name, File: rel, Log: log, Consumers: consumers,
		Messages: snap.state.Messages, Bytes: snap.state.Bytes, FirstSeq: snap.state.FirstSeq, LastSeq: snap.state.LastSeq,
		Config: snap.Config, State: snap.State})
	b.log.Info("stream snapshotted", "stream", name, "messages", snap.state.Messages, "last_seq", snap.state.LastSeq, "bytes", f.Size)
	return nil
}

// copyDeploy copies the deploy directory's configuration files (*.json, top level).
func (b *backupRun) copyDeploy(ctx context.Context) error {
	entries, err := os.ReadDir(b.cfg.DeployDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		src, err := os.Open(filepath.Join(b.cfg.DeployDir, e.Name()))
		if err != nil {
			return err
		}
		w, err := createFile(b.cfg.Dir, "deploy/"+e.Name())
		if err != nil {
			src.Close()
			return err
		}
		_, err = io.Copy(w, src)
		src.Close()
		f, cerr := w.close()
		if err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", e.Name(), err)
		}
		b.m.Files = append(b.m.Files, f)
		b.m.Deploy = append(b.m.Deploy, e.Name())
	}
	return nil
}
