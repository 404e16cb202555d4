package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/touchstream/touchstream/services/internal/backup"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/keystore"
)

const restoreUsage = `usage: touchstream restore --from DIR [flags]

Restores a backup made by touchstream backup into an empty NATS and database (the
database is created if it does not exist). Before it touches anything it checks the
manifest (every file's size and sha256), the master key (--master-key-file: the one the
backup's data keys are wrapped under) and the target: it refuses when any of the
backup's streams, any touchstream schema or a differing configuration file exists,
unless --force, which deletes and drops them first. --dry-run stops after the checks.

Then: the streams with their sequences, the PostgreSQL schemas and runtime state
(idempotency index checkpoints; serving versions, which emit signals only past what
they had emitted at backup time), the configuration files (--deploy-to), and last the
erasures recorded in the log re-applied to the key store. Read models are not
restored: start the projector, which rebuilds them from the restored log, then check
with touchstream verify.

flags:
`

// runRestore runs `touchstream restore`.
func runRestore(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("restore", stdout)
	fs.Usage = func() { fmt.Fprint(fs.Output(), restoreUsage); fs.PrintDefaults() }
	var c config.Common
	c.Register(fs, env)
	from := fs.String("from", "", "the backup directory")
	deployTo := fs.String("deploy-to", "", "write the backup's configuration files into this directory (default: none written)")
	force := fs.Bool("force", false, "replace what the target holds: delete the backup's streams, drop touchstream's schemas, overwrite differing files")
	dryRun := fs.Bool("dry-run", false, "check the backup, the master key and the target; change nothing")
	pgRestore := fs.String("pg-restore", "pg_restore", "the pg_restore binary (PostgreSQL client tools)")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of a table")
	quiet := fs.Bool("quiet", false, "no progress on standard error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: restore: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *from == "" {
		return fmt.Errorf("%w: restore: --from: required (the backup directory)", errUsage)
	}
	if st, err := os.Stat(*from); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: restore: --from %q: not a directory", errUsage, *from)
	}
	deps, closeAll, err := connectBackup(ctx, &c, "restore", true)
	if err != nil {
		return err
	}
	defer closeAll()
	cfg := backup.RestoreConfig{Dir: *from, DeployTo: *deployTo, Force: *force, DryRun: *dryRun, PGRestore: *pgRestore,
		MasterKey: func() (*keystore.MasterKey, error) { return keystore.LoadMasterKey(c.MasterKeyFile()) }}
	finish := func() {}
	if !*quiet {
		cfg.Progress, finish = backupProgress(os.Stderr)
	}
	rep, err := backup.Restore(ctx, cfg, deps)
	finish()
	if rep != nil && (err == nil || errors.Is(err, backup.ErrNotEmpty)) {
		if *asJSON {
			if werr := writeJSON(stdout, rep); werr != nil {
				return werr
			}
		} else {
			printRestore(stdout, rep)
		}
	}
	return err
}

func printRestore(w io.Writer, rep *backup.RestoreReport) {
	fmt.Fprintf(w, "backup %s (touchstream %s, taken %s to %s): %d files, %s, sha256 checked\n", rep.Dir, rep.Version,
		stamp(rep.BackupStart), stamp(rep.BackupEnd), rep.CheckedFiles, mib(rep.CheckedBytes))
	if len(rep.Occupied) > 0 {
		fmt.Fprintf(w, "the target already holds: %s\n", strings.Join(rep.Occupied, ", "))
	}
	if rep.DryRun {
		fmt.Fprintln(w, "dry run: nothing changed")
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tFIRST SEQ\tLAST SEQ\tSTORED")
	for _, s := range rep.Streams {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", s.Name, s.Messages, s.FirstSeq, s.LastSeq, mib(int64(s.Bytes)))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEMA\tPHASE\tROWS")
	for _, s := range rep.Schemas {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Phase, tableCounts(s.Tables))
	}
	for _, a := range rep.Absent {
		fmt.Fprintf(tw, "%s\t-\tABSENT from the backup (the schema did not exist)\n", a)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nidempotency index checkpoints restored: %d\n", rep.Checkpoints)
	for _, s := range rep.Serving {
		fmt.Fprintf(w, "serving %s: %s, emits signals only past the sequences it had emitted up to (highest %d)\n", s.Projection, s.Target, s.EmitsAfter)
	}
	for _, d := range rep.Deploy {
		fmt.Fprintf(w, "configuration %s: %s\n", d.Name, d.Action)
	}
	if rep.Erasures != nil {
		fmt.Fprintf(w, "key store: %d data keys; the log's erasures re-applied: %d customer.erased events, %d customers, %d erased again (%d keys)\n",
			rep.DataKeys, rep.Erasures.Events, rep.Erasures.Customers, rep.Erasures.Erased, rep.Erasures.Keys)
	}
	fmt.Fprintf(w, "restored in %.1fs; next:\n", rep.Seconds)
	for i, n := range rep.Next {
		fmt.Fprintf(w, "  %d. %s\n", i+1, n)
	}
}
