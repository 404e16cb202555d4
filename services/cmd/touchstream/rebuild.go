package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/loyalty"
	"github.com/touchstream/touchstream/projections/servicelevel"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/config"
)

const rebuildUsage = `usage:
  touchstream rebuild <projection> [flags]             build a new version from the log, then switch readers
  touchstream rebuild loyalty --pin 2026-10            ... with the whole history under one rule version
  touchstream rebuild <projection> --customer ID ...   recompute customers in place in the serving version
  touchstream rebuild list [--json]                    rebuilds, running and finished
  touchstream rebuild switch <target>                  make a version built with --no-switch the serving one
  touchstream rebuild drop <target>                    delete a version that no longer serves

Projections: customer360, timeline, loyalty, churn, servicelevel. A rebuild folds the whole log into the next version
(customer360_v2, ...) while the serving version keeps answering; it shows progress
with rate and ETA, survives interruption (run the same command again: it resumes from
its checkpoints), then switches readers in one statement. The live projector follows
the switch and continues the new version. The replaced version is kept until dropped.
Derived signals are never re-sent by a rebuild.

flags:
`

const replayUsage = `usage: touchstream replay <projection> (--from-seq N | --from-time T) [--to-seq M | --to-time T]
       touchstream replay <projection> --customers ID,ID,...

Replays a range of the log into a NEW version of the projection, for inspection or
comparison (it never serves and nothing is re-applied onto the live version), or
recomputes the listed customers from their own events in the serving version.
Times are RFC 3339 (2026-11-01T00:00:00+08:00); a time selects the first event stored
at or after it.

flags:
`

// foldDeps are what rebuild and replay need: the connections and the projector's
// configuration (value tiers, phone index key, key service).
type foldDeps struct {
	*toolConn
	projDep projectorDeps
}

func connectFold(ctx context.Context, c config.Common, name string) (*foldDeps, error) {
	tiers, phoneKey, _, err := loadProjectorDeps(&c, projectorFlags{}, false)
	if err != nil {
		return nil, err
	}
	club, err := loadLoyaltyRules(&c)
	if err != nil {
		return nil, err
	}
	churnRules, err := loadChurnRules(&c)
	if err != nil {
		return nil, err
	}
	tc, err := connectTool(ctx, &c, name, 8)
	if err != nil {
		return nil, err
	}
	return &foldDeps{toolConn: tc, projDep: projectorDeps{pool: tc.pool, nc: tc.nc, js: tc.js, layout: tc.def.Layout, cat: tc.cat,
		tiers: tiers, phoneKey: phoneKey, keys: events.NewKeyClient(tc.nc, rebuildKeys), log: tc.log, loyalty: club, churn: churnRules}}, nil
}

// rebuildKeys configures the key client of a rebuild or replay without a cache: the
// fold asks for a customer's key once per window, so caching a million keys would
// only churn the cache (and an erasure meanwhile takes effect at once).
var rebuildKeys = events.KeyClientConfig{CacheTTL: -1}

// runtimeDeps are the runner's dependencies, with the customer index over the serving
// timeline (customer 360 reads it to recompute a customer after a retraction).
func (d *foldDeps) runtimeDeps(ctx context.Context) (projections.Deps, error) {
	serving, err := projections.EnsureServing(ctx, d.pool, defaultServing())
	if err != nil {
		return projections.Deps{}, err
	}
	return projections.Deps{Pool: d.pool, JS: d.js, Layout: d.def.Layout, Catalog: d.projDep.cat, Log: d.projDep.log,
		History: d.history(serving[timeline.Name])}, nil
}

func (d *foldDeps) history(timelineTarget string) *projections.LogHistory {
	return &projections.LogHistory{
		Index:   &timeline.Index{Target: timelineTarget, Layout: d.def.Layout},
		JS:      d.js,
		Decoder: projections.NewDecoder(d.def.Layout, d.projDep.cat),
	}
}

// churnPin is what a churn rebuild can be pinned to (churn.model_activated's model).
var churnPin = regexp.MustCompile(`^(rules:[A-Za-z0-9][A-Za-z0-9._-]{0,63}|sha256:[0-9a-f]{64})$`)

// newVersion binds a versioned projection to a target, under a pinned rule version
// for loyalty.
func (d *foldDeps) newVersion(projection, pin string) (func(string) (projections.Projection, error), error) {
	switch projection {
	case customer360.Name, timeline.Name, servicelevel.Name:
		if pin != "" {
			return nil, fmt.Errorf("%w: --pin: %s has no rule versions (only %s and %s have)", errUsage, projection, loyalty.Name, churn.Name)
		}
	case churn.Name:
		if pin != "" && !churnPin.MatchString(pin) {
			return nil, fmt.Errorf("%w: --pin: %q: want rules:<version> (deploy/churn-rules.json) or a trained model's sha256:<hex> (touchstream churn models)", errUsage, pin)
		}
	case loyalty.Name:
		if pin != "" {
			if _, err := d.projDep.loyalty.Version(pin); err != nil {
				return nil, fmt.Errorf("%w: --pin: %w", errUsage, err)
			}
		}
	default:
		return nil, fmt.Errorf("%w: unknown projection %q: one of %s, %s, %s, %s, %s (dedup is an index, not versioned)", errUsage, projection,
			customer360.Name, timeline.Name, loyalty.Name, churn.Name, servicelevel.Name)
	}
	return func(t string) (projections.Projection, error) { return projectionFor(t, pin, d.projDep) }, nil
}

// runRebuild runs `touchstream rebuild`.
func runRebuild(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("rebuild", stdout)
	fs.Usage = func() { fmt.Fprint(fs.Output(), rebuildUsage); fs.PrintDefaults() }
	var c config.Common
	c.Register(fs, env)
	noSwitch := fs.Bool("no-switch", false, "build the new version but leave readers on the serving one (switch later with: touchstream rebuild switch TARGET)")
	target := fs.String("target", "", "name of the new version (default: resume an interrupted rebuild, else the next version number)")
	customers := fs.String("customer", "", "comma-separated customer ids: recompute them in place in the serving version instead")
	pin := fs.String("pin", "", "loyalty: fold the whole history under this rule version of deploy/loyalty.json (a correction or a what-if)")
	switchWait := fs.Duration("switch-wait", time.Minute, "how long the switch waits for the live projector to bring the serving version as far as the new one")
	rf := registerFoldFlags(fs)
	pos, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: rebuild: name a projection (customer360, timeline) or list, switch, drop", errUsage)
	}
	verb := pos[0]
	d, err := connectFold(ctx, c, "rebuild")
	if err != nil {
		return err
	}
	defer d.close()
	switch verb {
	case "list":
		return printRebuilds(ctx, d.pool, stdout, rf.json)
	case "switch", "drop":
		if len(pos) != 2 {
			return fmt.Errorf("%w: rebuild %s: name exactly one target, such as customer360_v2", errUsage, verb)
		}
		t := pos[1]
		if verb == "switch" {
			err = projections.SwitchBuilt(ctx, d.pool, t, *switchWait)
		} else {
			err = projections.DropTarget(ctx, d.pool, t)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %sed\n", t, map[string]string{"switch": "switch", "drop": "dropp"}[verb])
		return nil
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: rebuild: unexpected arguments %q", errUsage, pos[1:])
	}
	if *customers != "" {
		return recomputeCustomers(ctx, d, verb, *customers, stdout, rf.json)
	}
	newFn, err := d.newVersion(verb, *pin)
	if err != nil {
		return err
	}
	return rf.run(ctx, d, projections.RebuildSpec{Projection: verb, New: newFn, Target: *target, Pin: *pin, Switch: !*noSwitch, SwitchWait: *switchWait}, stdout)
}

// runReplay runs `touchstream replay`.
func runReplay(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("replay", stdout)
	fs.Usage = func() { fmt.Fprint(fs.Output(), replayUsage); fs.PrintDefaults() }
	var c config.Common
	c.Register(fs, env)
	fromSeq := fs.Uint64("from-seq", 0, "first stream sequence of the range")
	toSeq := fs.Uint64("to-seq", 0, "last stream sequence of the range (default: the end of the log)")
	fromTime := fs.String("from-time", "", "start of the range: the first event stored at or after this RFC 3339 time")
	toTime := fs.String("to-time", "", "end of the range: events stored before this RFC 3339 time")
	customers := fs.String("customers", "", "comma-separated customer ids: recompute them in place in the serving version instead")
	rf := registerFoldFlags(fs)
	pos, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: replay: name one projection (customer360, timeline)", errUsage)
	}
	projection := pos[0]
	ranged := *fromSeq > 0 || *toSeq > 0 || *fromTime != "" || *toTime != ""
	switch {
	case *customers != "" && ranged:
		return fmt.Errorf("%w: replay: --customers recomputes whole customers; it takes no range", errUsage)
	case *customers == "" && !ranged:
		return fmt.Errorf("%w: replay: give a range (--from-seq or --from-time) or --customers; to rebuild everything use `touchstream rebuild %s`", errUsage, projection)
	case *fromSeq > 0 && *fromTime != "", *toSeq > 0 && *toTime != "":
		return fmt.Errorf("%w: replay: give each end of the range as a sequence or a time, not both", errUsage)
	}
	var from, to time.Time
	for _, tf := range []struct {
		name, val string
		into      *time.Time
	}{{"--from-time", *fromTime, &from}, {"--to-time", *toTime, &to}} {
		if tf.val == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, tf.val)
		if err != nil {
			return fmt.Errorf("%w: replay: %s %q: not an RFC 3339 time such as 2026-11-01T00:00:00+08:00", errUsage, tf.name, tf.val)
		}
		*tf.into = t
	}
	d, err := connectFold(ctx, c, "replay")
	if err != nil {
		return err
	}
	defer d.close()
	if *customers != "" {
		return recomputeCustomers(ctx, d, projection, *customers, stdout, rf.json)
	}
	newFn, err := d.newVersion(projection, "")
	if err != nil {
		return err
	}
	if len(d.def.Layout.Streams) != 1 && (!from.IsZero() || !to.IsZero()) {
		return fmt.Errorf("%w: replay: time bounds need a single-stream layout; give sequences", errUsage)
	}
	stream := d.def.Layout.Stream(0)
	if !from.IsZero() {
		if *fromSeq, err = projections.SeqAtTime(ctx, d.js, stream, from); err != nil {
			return err
		}
	}
	if !to.IsZero() {
		first, err := projections.SeqAtTime(ctx, d.js, stream, to)
		if err != nil {
			return err
		}
		if first <= 1 {
			return fmt.Errorf("replay: nothing in the log was stored before %s", to.Format(time.RFC3339))
		}
		*toSeq = first - 1
	}
	if *toSeq > 0 && *toSeq < max(*fromSeq, 1) {
		return fmt.Errorf("%w: replay: the range %d-%d is empty", errUsage, *fromSeq, *toSeq)
	}
	return rf.run(ctx, d, projections.RebuildSpec{Projection: projection, New: newFn, FromSeq: *fromSeq, ToSeq: *toSeq}, stdout)
}

// foldFlags are what rebuild and replay share.
type foldFlags struct {
	json    bool
	quiet   bool
	batch   int
	workers int
	window  int64 // MiB per gathered window; 0: the runner's default
}

func registerFoldFlags(fs *flag.FlagSet) *foldFlags {
	rf := &foldFlags{}
	fs.BoolVar(&rf.json, "json", false, "print the result as JSON")
	fs.BoolVar(&rf.quiet, "quiet", false, "no progress bar on standard error")
	fs.IntVar(&rf.batch, "batch", 1000, "most events folded per transaction")
	fs.IntVar(&rf.workers, "workers", 2, "partition workers folding in parallel")
	fs.Int64Var(&rf.window, "window-mib", 0, "memory for one window of the log gathered and folded partition by partition, in MiB; two can be held at once (0: a quarter of the process's memory budget, GOMEMLIMIT or half the machine's memory, 256 MiB to 8 GiB)")
	return rf
}

func (rf *foldFlags) run(ctx context.Context, d *foldDeps, spec projections.RebuildSpec, stdout io.Writer) error {
	deps, err := d.runtimeDeps(ctx)
	if err != nil {
		return err
	}
	if rf.window < 0 {
		return fmt.Errorf("--window-mib %d: must be 0 (the default) or a size in MiB", rf.window)
	}
	spec.Config = projections.Config{BatchSize: rf.batch, Workers: rf.workers, GatherBytes: rf.window << 20}
	if !rf.quiet {
		bar := &progressBar{w: os.Stderr}
		spec.Progress = bar.show
	}
	res, err := projections.Rebuild(ctx, deps, spec)
	if err != nil {
		return err
	}
	if rf.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"target": res.Target, "replaced": res.Replaced, "resumed": res.Resumed,
			"switched": res.Switched, "events_read": res.Read, "seconds": res.Elapsed.Seconds(), "switch_seqs": res.SwitchSeqs,
			"deferred_indexes": res.Deferred, "index_seconds": res.IndexTime.Seconds()})
	}
	rate := 0.0
	if s := res.Elapsed.Seconds(); s > 0 {
		rate = float64(res.Read) / s
	}
	verb := "built"
	if res.Resumed {
		verb = "resumed and built"
	}
	fmt.Fprintf(stdout, "%s %s: %d events read in %s (%.0f events/s)\n", verb, res.Target, res.Read, res.Elapsed.Round(time.Millisecond), rate)
	if res.Deferred > 0 {
		fmt.Fprintf(stdout, "%d secondary indexes created after the fold in %s\n", res.Deferred, res.IndexTime.Round(time.Millisecond))
	}
	switch {
	case res.Switched:
		fmt.Fprintf(stdout, "readers switched from %s to %s; the projector continues %s. Drop the old version with: touchstream rebuild drop %s\n",
			orNone(res.Replaced), res.Target, res.Target, orNone(res.Replaced))
	case spec.FromSeq > 1 || spec.ToSeq > 0:
		fmt.Fprintf(stdout, "%s holds the range %d-%s for inspection; it does not serve. Drop it with: touchstream rebuild drop %s\n",
			res.Target, max(spec.FromSeq, 1), endOf(spec.ToSeq), res.Target)
	default:
		fmt.Fprintf(stdout, "%s is built; readers stay on %s. Switch with: touchstream rebuild switch %s\n", res.Target, orNone(res.Replaced), res.Target)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func endOf(to uint64) string {
	if to == 0 {
		return "end"
	}
	return fmt.Sprint(to)
}

// recomputeCustomers recomputes customers in place in the serving version of a
// projection, from their own events (the timeline index and direct gets).
func recomputeCustomers(ctx context.Context, d *foldDeps, projection, list string, stdout io.Writer, asJSON bool) error {
	if projection != customer360.Name && projection != loyalty.Name && projection != churn.Name {
		return fmt.Errorf("%w: only %s, %s and %s recompute single customers; rebuild %s as a new version", errUsage, customer360.Name, loyalty.Name, churn.Name, projection)
	}
	serving, err := projections.EnsureServing(ctx, d.pool, defaultServing())
	if err != nil {
		return err
	}
	proj, err := resolveTarget(serving[projection], d.projDep)
	if err != nil {
		return err
	}
	rc := &projections.Recomputer{Pool: d.pool, History: d.history(serving[timeline.Name]), Layout: d.def.Layout}
	var all []projections.Recomputed
	for _, id := range strings.Split(list, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		if !events.ValidCustomerID(id) {
			return fmt.Errorf("%w: customer id %q: must be 1-64 characters of A-Z, a-z, 0-9, _ and -", errUsage, id)
		}
		out, err := rc.Recompute(ctx, id, proj)
		if err != nil {
			return fmt.Errorf("recompute %s: %w", id, err)
		}
		all = append(all, out...)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(all)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CUSTOMER\tTARGET\tPARTITION\tUP TO SEQ\tEVENTS\tREDRIVEN")
	for _, r := range all {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", r.Customer, r.Target, r.Partition, r.UpTo, r.Events, len(r.Redriven))
	}
	return tw.Flush()
}

func printRebuilds(ctx context.Context, pool *pgxpool.Pool, w io.Writer, asJSON bool) error {
	if err := projections.Migrate(ctx, pool); err != nil {
		return err
	}
	rbs, err := projections.Rebuilds(ctx, pool)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rbs)
	}
	if len(rbs) == 0 {
		fmt.Fprintln(w, "no rebuilds")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tSTATUS\tREPLACES\tRANGE\tSEQ\tOF\tAPPLIED\tSTARTED\tUPDATED\tERROR")
	for _, r := range rbs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d-%s\t%d\t%d\t%d\t%s\t%s\t%s\n", r.Target, r.Status, orNone(r.Replaces), max(r.FromSeq, 1), endOf(r.ToSeq),
			r.Seq, r.Total, r.Applied, r.StartedAt.Format(time.RFC3339), r.UpdatedAt.Format(time.RFC3339), r.Error)
	}
	return tw.Flush()
}

// progressBar draws a rebuild's progress on one line: bar, sequence, rate, ETA.
type progressBar struct {
	w io.Writer
}

func (b *progressBar) show(p projections.RebuildProgress) {
	const width = 30
	frac := 1.0
	if p.Last > 0 {
		frac = min(1, float64(p.Seq)/float64(p.Last))
	}
	filled := int(frac * width)
	eta := "--:--"
	if p.ETA > 0 {
		eta = p.ETA.Round(time.Second).String()
	}
	if p.Done {
		eta = "done"
	}
	if p.Stage != "" {
		eta = p.Stage + "..."
	}
	fmt.Fprintf(b.w, "\r%s [%s%s] %5.1f%%  seq %d/%d  %.0f ev/s  ETA %s   ", p.Target,
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), 100*frac, p.Seq, p.Last, p.Rate, eta)
	if p.Done {
		fmt.Fprintln(b.w)
	}
}
