package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/backup"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
)

const backupUsage = `usage: touchstream backup --to DIR [flags]

Backs up the log and the state that is not in the log into DIR (new, or empty), in
this order (ADR 31): the idempotency index with its checkpoints and the serving
versions' checkpoints (one PostgreSQL snapshot); a JetStream snapshot of every stream
of the layout (deploy/streams.json) and of SIGNALS; the key store, the churn model
store and the access audit log (one PostgreSQL snapshot, with pg_dump); the deploy
directory's configuration files. A declared schema that does not exist is reported,
not an error. manifest.json is written last: sizes, sha256 of every file, stream
sequences, touchstream version. Read models are not backed up: they are rebuilt from
the log after a restore. Services keep running meanwhile.

The master key is not in the backup: keep it apart (with it, the backup's data keys
can be unwrapped).

flags:
`

// runBackup runs `touchstream backup`.
func runBackup(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("backup", stdout)
	fs.Usage = func() { fmt.Fprint(fs.Output(), backupUsage); fs.PrintDefaults() }
	var c config.Common
	c.Register(fs, env)
	to := fs.String("to", "", "the backup directory (created; must be empty if it exists)")
	before := fs.String("schemas-before-log", strings.Join(backup.DefaultBeforeLog, ","), "PostgreSQL schemas dumped before the stream snapshots (comma separated)")
	after := fs.String("schemas-after-log", strings.Join(backup.DefaultAfterLog, ","), "PostgreSQL schemas dumped after the stream snapshots (comma separated)")
	pgDump := fs.String("pg-dump", "pg_dump", "the pg_dump binary (PostgreSQL client tools, same major version as the server or newer)")
	asJSON := fs.Bool("json", false, "print the manifest as JSON instead of a table")
	quiet := fs.Bool("quiet", false, "no progress on standard error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: backup: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *to == "" {
		return fmt.Errorf("%w: backup: --to: required (the backup directory)", errUsage)
	}
	cfg := backup.Config{Dir: *to, DeployDir: c.DeployDir, BeforeLog: splitList(*before), AfterLog: splitList(*after), PGDump: *pgDump}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	deps, closeAll, err := connectBackup(ctx, &c, "backup", false)
	if err != nil {
		return err
	}
	defer closeAll()
	finish := func() {}
	if !*quiet {
		cfg.Progress, finish = backupProgress(os.Stderr)
	}
	m, err := backup.Backup(ctx, cfg, deps)
	finish()
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, m)
	}
	printManifest(stdout, *to, m)
	return nil
}

// connectBackup connects a backup or a restore: the database (created if missing, for
// a restore), NATS, and the log's definition (for a restore, only SIGNALS' name is
// used, and a deploy directory without streams.json takes the defaults).
func connectBackup(ctx context.Context, c *config.Common, name string, restoring bool) (backup.Deps, func(), error) {
	if err := c.Validate(); err != nil {
		return backup.Deps{}, nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if c.NATSURL == "" {
		return backup.Deps{}, nil, fmt.Errorf("%w: --nats-url (TOUCHSTREAM_NATS_URL) is required", errUsage)
	}
	log := c.Logger().With("service", name)
	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil && restoring {
		if _, serr := os.Stat(c.DeployFile("streams.json")); os.IsNotExist(serr) {
			def, err = streams.Default(), nil
		}
	}
	if err != nil {
		return backup.Deps{}, nil, err
	}
	pool, err := pgsetup.Open(ctx, c.DatabaseURL, 4, restoring)
	if err != nil {
		return backup.Deps{}, nil, err
	}
	nc, err := natsconn.Dial(natsconn.For(c, name), log)
	if err != nil {
		pool.Close()
		return backup.Deps{}, nil, err
	}
	return backup.Deps{NATS: nc, Pool: pool, DatabaseURL: c.DatabaseURL, Streams: def, Log: log},
		func() { nc.Close(); pool.Close() }, nil
}

func splitList(s string) []string {
	out := []string{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// backupProgress prints long steps on one line rewritten at most twice a second.
func backupProgress(w io.Writer) (progress func(backup.Progress), finish func()) {
	var last time.Time
	var step string
	progress = func(p backup.Progress) {
		if p.Step == step && time.Since(last) < 500*time.Millisecond {
			return
		}
		if p.Step != step && step != "" {
			fmt.Fprintln(w)
		}
		last, step = time.Now(), p.Step
		switch {
		case p.Total > 0:
			fmt.Fprintf(w, "\r%s: %s of about %s (%.0f%%)   ", p.Step, mib(p.Done), mib(p.Total), min(100, 100*float64(p.Done)/float64(p.Total)))
		case p.Done > 0:
			fmt.Fprintf(w, "\r%s: %s   ", p.Step, mib(p.Done))
		default:
			fmt.Fprintf(w, "\r%s ...", p.Step)
		}
	}
	finish = func() {
		if step != "" {
			fmt.Fprintln(w)
		}
	}
	return progress, finish
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func printManifest(w io.Writer, dir string, m *backup.Manifest) {
	var total int64
	for _, f := range m.Files {
		total += f.Size
	}
	fmt.Fprintf(w, "backup %s: %d files, %s, in %.1fs (touchstream %s)\n\n", dir, len(m.Files), mib(total),
		m.CompletedAt.Sub(m.StartedAt).Seconds(), m.Version)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSECONDS")
	for i, s := range m.Steps {
		fmt.Fprintf(tw, "%d. %s\t%.1f\n", i+1, s.Name, s.FinishedAt.Sub(s.StartedAt).Seconds())
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tFIRST SEQ\tLAST SEQ\tSTORED\tSNAPSHOT")
	sizes := map[string]int64{}
	for _, f := range m.Files {
		sizes[f.Path] = f.Size
	}
	for _, s := range m.Streams {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.Messages, s.FirstSeq, s.LastSeq, mib(int64(s.Bytes)), mib(sizes[s.File]))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEMA\tPHASE\tDUMP\tROWS")
	for _, s := range m.Schemas {
		if s.Absent {
			fmt.Fprintf(tw, "%s\t%s\tABSENT (declared, not in the database)\t-\n", s.Name, s.Phase)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Phase, mib(sizes[s.File]), tableCounts(s.Tables))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nconfiguration files: %s\n", dash(strings.Join(m.Deploy, ", ")))
	if m.KEK != "" {
		fmt.Fprintf(w, "data keys wrapped under kek %s: the master key is not in the backup, keep it apart\n", m.KEK)
	}
}

// tableCounts prints "table=rows, ..." in name order.
func tableCounts(t map[string]int64) string {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s=%d", n, t[n])
	}
	return dash(strings.Join(parts, ", "))
}
