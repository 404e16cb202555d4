package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/ops"
)

// opsFlags are the settings of the ops commands beyond the common ones.
type opsFlags struct {
	common   config.Common
	asJSON   bool
	operator string
	phoneKey string
}

func (f *opsFlags) register(fs *flag.FlagSet, env config.Env) {
	f.common.Register(fs, env)
	fs.BoolVar(&f.asJSON, "json", false, "print JSON for scripts instead of a table")
}

func (f *opsFlags) registerOperator(fs *flag.FlagSet, env config.Env) {
	fs.StringVar(&f.operator, "operator", config.String(env, "TOUCHSTREAM_OPERATOR", ""),
		"your operator account id, recorded with what you do: an id, never a name or phone number (env TOUCHSTREAM_OPERATOR)")
}

// parseWithArgs parses flags given before and after positional arguments
// (`dlq show 12 --json` as well as `dlq show --json 12`) and returns the positionals.
func parseWithArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// opsRuntime is what the ops commands connect to.
type opsRuntime struct {
	svc   *ops.Service
	close func()
}

// connectOps connects to PostgreSQL and NATS and builds the ops service. withKeys
// adds the key service client (to reveal personal fields); withPublisher a publisher
// under the ops source (to record discards).
func connectOps(ctx context.Context, f *opsFlags, withKeys, withPublisher bool) (*opsRuntime, error) {
	c := &f.common
	tiers, err := valuetier.Load(c.DeployFile("tiers.json"))
	if err != nil {
		return nil, err
	}
	tc, err := connectTool(ctx, c, "ops", 4)
	if err != nil {
		return nil, err
	}
	closeAll := tc.close
	nc, js, def, cat, log := tc.nc, tc.js, tc.def, tc.cat, tc.log
	pool := tc.pool
	keys := events.NewKeyClient(nc, events.KeyClientConfig{})
	deps := ops.Deps{Pool: pool, JS: js, Layout: def.Layout, Catalog: cat, Log: log, Resolve: f.resolver(pool, tiers, keys)}
	if withKeys {
		deps.Keys = keys
	}
	if withPublisher {
		pub, err := events.NewPublisher(ctx, nc, events.WithLayout(def.Layout), events.WithSource(ops.Source), events.WithCatalog(cat))
		if err != nil {
			closeAll()
			return nil, err
		}
		deps.Publisher = pub
	}
	svc, err := ops.New(deps)
	if err != nil {
		closeAll()
		return nil, err
	}
	return &opsRuntime{svc: svc, close: closeAll}, nil
}

// resolver builds the projection of any version (target), loading the rules and the
// phone index secret it needs when called: for redrives and erasures.
func (f *opsFlags) resolver(pool *pgxpool.Pool, tiers valuetier.Config, keys events.KeySource) func(string) (projections.Projection, error) {
	c := &f.common
	return func(target string) (projections.Projection, error) {
		key, err := loadPhoneKey(c, f.phoneKey, false)
		if err != nil {
			return nil, err
		}
		club, err := loadLoyaltyRules(c)
		if err != nil {
			return nil, err
		}
		churnRules, err := loadChurnRules(c)
		if err != nil {
			return nil, err
		}
		return resolveTarget(target, projectorDeps{pool: pool, tiers: tiers, keys: keys, phoneKey: key, loyalty: club, churn: churnRules})
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ---- status ----

const statusUsage = `usage: touchstream status [--json] [flags]

Shows the log and every projection target: each stream (messages, bytes, first and
last sequence), the partitions, every target (version) with its lowest checkpoint,
events consumed and lag (events not yet consumed, and seconds of log time behind the
partition's newest event, measured now), dead letters per target and status, and the
rebuilds in progress. --partitions adds one row per target and partition.

flags:
`

func runStatus(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("status", stdout)
	fs.Usage = func() { fmt.Fprint(fs.Output(), statusUsage); fs.PrintDefaults() }
	var f opsFlags
	f.register(fs, env)
	perPartition := fs.Bool("partitions", false, "also list every target's checkpoint and lag per partition")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: status: unexpected argument %q", errUsage, fs.Arg(0))
	}
	rt, err := connectOps(ctx, &f, false, false)
	if err != nil {
		return err
	}
	defer rt.close()
	st, err := rt.svc.Status(ctx)
	if err != nil {
		return err
	}
	if f.asJSON {
		return writeJSON(stdout, st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "STREAM\tPARTITIONS\tMESSAGES\tBYTES\tFIRST SEQ\tLAST SEQ\tLAST STORED\n")
	for _, s := range st.Streams {
		fmt.Fprintf(tw, "%s\t%d-%d\t%d\t%d\t%d\t%d\t%s\n", s.Name, s.FirstPartition, s.LastPartition, s.Messages, s.Bytes, s.FirstSeq, s.LastSeq, stamp(s.LastTime))
	}
	fmt.Fprintf(tw, "\nTARGET\tSERVING\tSEQ MIN-MAX\tCONSUMED\tLAG EVENTS\tLAG SECONDS\tPARKED\n")
	for _, t := range st.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%d-%d\t%d\t%d\t%.1f\t%d\n", t.Target, dash(t.Serving), t.MinSeq, t.MaxSeq, t.Applied, t.LagEvents, t.LagSeconds, t.ParkedEvents)
	}
	if *perPartition {
		fmt.Fprintf(tw, "\nTARGET\tPARTITION\tSEQ\tCONSUMED\tLAG EVENTS\tLAG SECONDS\tPARTITION TIME\n")
		for _, t := range st.Targets {
			for _, p := range t.PartitionList {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f\t%s\n", t.Target, p.Partition, p.Seq, p.Applied, p.LagEvents, p.LagSeconds, stamp(p.PartitionTime))
			}
		}
	}
	fmt.Fprintf(tw, "\nDEAD LETTERS\tSTATUS\tCOUNT\n")
	if len(st.DeadLetters) == 0 {
		fmt.Fprintf(tw, "(none)\t\t\n")
	}
	for _, d := range st.DeadLetters {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", d.Target, d.Status, d.Count)
	}
	fmt.Fprintf(tw, "\nREBUILD\tPROJECTION\tSTATUS\tSTARTED\tSEQ\tOF\tDONE\n")
	if len(st.Rebuilds) == 0 {
		fmt.Fprintf(tw, "(none in progress)\t\t\t\t\t\t\n")
	}
	for _, r := range st.Rebuilds {
		done := "-"
		if r.Total > 0 {
			done = fmt.Sprintf("%.1f%%", 100*float64(r.Seq)/float64(r.Total))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.Target, r.Projection, r.Status, stamp(r.StartedAt), r.Seq, r.Total, done)
	}
	fmt.Fprintf(tw, "\n%d partitions; measured %s\n", st.Partitions, stamp(st.At))
	return tw.Flush()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ---- dlq ----

const dlqUsage = `usage: touchstream dlq <list | show ID | redrive ID | discard ID --reason "..."> [flags]

Dead letters: events a projection target could not apply, parked while the partition
went on.

  list     the dead letters, newest first (--target, --status, --customer, --limit)
  show     one dead letter: its error, attempts and status, and the event itself,
           fetched from the log by sequence and decoded (personal fields sealed)
  redrive  apply the parked event by recomputing its customer in the target, from the
           customer's events in the log (order is kept although later events were
           folded); marks it 'redriven' in the same transaction. If the projection still
           fails, it stays parked with attempts+1 and the new error (exit status 1).
  discard  record the discard as a deadletter.discarded event in the log (with your
           --operator id and the --reason; no personal data), then mark it 'discarded'

Run touchstream dlq <command> --help for the flags of each.
`

func runDLQ(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, dlqUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: dlq: a command is required", errUsage)
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := newFlags("dlq "+sub, stdout)
	var f opsFlags
	f.register(fs, env)
	switch sub {
	case "list":
		fs.Usage = func() {
			fmt.Fprint(fs.Output(), "usage: touchstream dlq list [--target T] [--status parked|redriven|discarded] [--customer ID] [--limit N] [--json]\n\nflags:\n")
			fs.PrintDefaults()
		}
		var filter projections.DeadLetterFilter
		fs.StringVar(&filter.Target, "target", "", "only this projection target, e.g. customer360_v1")
		fs.StringVar(&filter.Status, "status", "", "only this status: parked, redriven or discarded")
		fs.StringVar(&filter.Customer, "customer", "", "only this customer's")
		fs.IntVar(&filter.Limit, "limit", 100, "at most this many (1-1000)")
		pos, err := parseWithArgs(fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return fmt.Errorf("%w: dlq list: unexpected argument %q", errUsage, pos[0])
		}
		rt, err := connectOps(ctx, &f, false, false)
		if err != nil {
			return err
		}
		defer rt.close()
		list, err := rt.svc.DeadLetters(ctx, filter)
		if err != nil {
			return usageIfInvalid(err)
		}
		if f.asJSON {
			out := make([]any, 0, len(list))
			for _, p := range list {
				out = append(out, ops.View(p, nil))
			}
			return writeJSON(stdout, out)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "ID\tTARGET\tSTATUS\tATTEMPTS\tPARTITION\tSEQ\tTYPE\tCUSTOMER\tPARKED\tERROR\n")
		for _, p := range list {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", p.ID, p.Target, p.Status, p.Attempts, p.Partition, p.Seq,
				dash(p.EventType), dash(p.Customer), stamp(p.ParkedAt), oneLine(p.Error, 80))
		}
		return tw.Flush()
	case "show", "redrive", "discard":
		var reason *string
		switch sub {
		case "show":
			fs.Usage = func() {
				fmt.Fprint(fs.Output(), "usage: touchstream dlq show ID [--json]\n\nShows a dead letter and its event, fetched from the log by sequence (personal fields sealed).\n\nflags:\n")
				fs.PrintDefaults()
			}
		case "redrive":
			f.registerOperator(fs, env)
			fs.StringVar(&f.phoneKey, "phone-index-key-file", config.String(env, "TOUCHSTREAM_PHONE_INDEX_KEY_FILE", ""),
				"file with the secret of the phone search hash, for customer360 (env TOUCHSTREAM_PHONE_INDEX_KEY_FILE); default <data-dir>/secrets/phone-index.key")
			fs.Usage = func() {
				fmt.Fprint(fs.Output(), "usage: touchstream dlq redrive ID [--json]\n\nApplies a parked event by recomputing its customer in the target that parked it.\n\nflags:\n")
				fs.PrintDefaults()
			}
		case "discard":
			f.registerOperator(fs, env)
			reason = fs.String("reason", "", "why the event is discarded (1-256 characters, recorded in the log in clear: no personal data)")
			fs.Usage = func() {
				fmt.Fprint(fs.Output(), "usage: touchstream dlq discard ID --reason \"...\" --operator ID [--json]\n\nRecords the discard as a deadletter.discarded event in the log, then marks the dead letter discarded.\n\nflags:\n")
				fs.PrintDefaults()
			}
		}
		pos, err := parseWithArgs(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("%w: dlq %s: exactly one dead-letter ID is required", errUsage, sub)
		}
		id, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil || id < 1 {
			return fmt.Errorf("%w: dlq %s: ID %q: must be a positive integer (see dlq list)", errUsage, sub, pos[0])
		}
		if sub == "discard" {
			if strings.TrimSpace(*reason) == "" {
				return fmt.Errorf("%w: dlq discard: --reason is required", errUsage)
			}
			if f.operator == "" {
				return fmt.Errorf("%w: dlq discard: --operator (TOUCHSTREAM_OPERATOR) is required", errUsage)
			}
		}
		rt, err := connectOps(ctx, &f, false, sub == "discard")
		if err != nil {
			return err
		}
		defer rt.close()
		op := ops.Operator{ID: f.operator}
		switch sub {
		case "show":
			d, err := rt.svc.DeadLetter(ctx, id)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(stdout, ops.View(d.Parked, d.Event))
			}
			return printDeadLetter(stdout, d.Parked, d.Event)
		case "redrive":
			res, err := rt.svc.Redrive(ctx, id, op)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(stdout, map[string]any{"dead_letter": ops.View(res.DeadLetter, nil), "recomputed": res.Recomputed})
			}
			fmt.Fprintf(stdout, "dead letter %d redriven: customer %s recomputed in %s from %d events up to seq %d (dead letters applied: %v)\n",
				id, res.Recomputed.Customer, res.Recomputed.Target, res.Recomputed.Events, res.Recomputed.UpTo, res.Recomputed.Redriven)
			return nil
		default:
			res, err := rt.svc.Discard(ctx, id, *reason, op)
			if err != nil {
				return usageIfInvalid(err)
			}
			if f.asJSON {
				return writeJSON(stdout, map[string]any{"dead_letter": ops.View(res.DeadLetter, nil), "event_id": res.EventID,
					"stream": res.Stream, "seq": res.Seq, "repeated": res.Repeated})
			}
			fmt.Fprintf(stdout, "dead letter %d discarded: recorded as %s %s at %s seq %d\n", id, events.TypeDeadLetterDiscarded, res.EventID, res.Stream, res.Seq)
			return nil
		}
	}
	fmt.Fprint(stdout, dlqUsage)
	return fmt.Errorf("%w: dlq: unknown command %q", errUsage, sub)
}

func usageIfInvalid(err error) error {
	if errors.Is(err, ops.ErrInvalid) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

func printDeadLetter(w io.Writer, p projections.Parked, e *ops.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%d\n", p.ID)
	fmt.Fprintf(tw, "target\t%s\n", p.Target)
	fmt.Fprintf(tw, "status\t%s\n", p.Status)
	fmt.Fprintf(tw, "attempts\t%d\n", p.Attempts)
	fmt.Fprintf(tw, "parked at\t%s\n", stamp(p.ParkedAt))
	if p.ResolvedAt != nil {
		fmt.Fprintf(tw, "resolved at\t%s\n", stamp(*p.ResolvedAt))
	}
	fmt.Fprintf(tw, "stream, seq\t%s %d (partition %d)\n", p.Stream, p.Seq, p.Partition)
	fmt.Fprintf(tw, "event\t%s %s from %s\n", dash(p.EventType), dash(p.EventID), dash(p.EventSource))
	fmt.Fprintf(tw, "customer\t%s\n", dash(p.Customer))
	fmt.Fprintf(tw, "error\t%s\n", p.Error)
	if err := tw.Flush(); err != nil {
		return err
	}
	if e == nil {
		fmt.Fprintln(w, "\nthe message is no longer in the stream")
		return nil
	}
	fmt.Fprintln(w, "\nevent as stored (personal fields sealed):")
	return writeJSON(w, e)
}

// ---- history ----

const historyUsage = `usage: touchstream history <customer> [--from T] [--to T] [--type a,b] [--limit N] [--reveal --operator ID] [--json]

The customer's events from the log, oldest first, for audit: sequences from the
timeline index (never a scan of the log), each message fetched from the stream
directly and decoded. Personal fields are shown as "[sealed]"; --reveal opens them
through the key service (your NATS identity must be allowed to ask it), and the reveal
is logged with your --operator id. T is RFC 3339 (2026-11-01T00:00:00+08:00) or a
date (2026-11-01, midnight in the operator's time zone from deploy/tiers.json).

flags:
`

func runHistory(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("history", stdout)
	fs.Usage = func() { fmt.Fprint(fs.Output(), historyUsage); fs.PrintDefaults() }
	var f opsFlags
	f.register(fs, env)
	f.registerOperator(fs, env)
	from := fs.String("from", "", "events at or after this event time")
	to := fs.String("to", "", "events before this event time")
	types := fs.String("type", "", "only these event types, comma separated")
	limit := fs.Int("limit", 1000, "at most this many events (1-10000), the oldest first")
	reveal := fs.Bool("reveal", false, "show personal fields in clear (needs the key service and --operator)")
	pos, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: history: exactly one customer id is required", errUsage)
	}
	if *reveal && f.operator == "" {
		return fmt.Errorf("%w: history: --reveal needs --operator (TOUCHSTREAM_OPERATOR): reveals are logged with it", errUsage)
	}
	tiers, err := valuetier.Load(f.common.DeployFile("tiers.json"))
	if err != nil {
		return err
	}
	q := ops.HistoryQuery{Customer: pos[0], Reveal: *reveal, Limit: *limit}
	for _, tv := range []struct {
		name string
		in   string
		out  *time.Time
	}{{"--from", *from, &q.From}, {"--to", *to, &q.To}} {
		if tv.in == "" {
			continue
		}
		if *tv.out, err = parseTime(tv.in, tiers.Location()); err != nil {
			return fmt.Errorf("%w: history: %s %q: want RFC 3339 (2026-11-01T00:00:00+08:00) or a date (2026-11-01)", errUsage, tv.name, tv.in)
		}
	}
	for _, t := range strings.Split(*types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			q.Types = append(q.Types, t)
		}
	}
	rt, err := connectOps(ctx, &f, *reveal, false)
	if err != nil {
		return err
	}
	defer rt.close()
	entries, err := rt.svc.History(ctx, q, ops.Operator{ID: f.operator, Reveal: *reveal})
	if err != nil {
		return usageIfInvalid(err)
	}
	if f.asJSON {
		return writeJSON(stdout, map[string]any{"customer_id": q.Customer, "items": entries})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SEQ\tTIME\tTYPE\tSOURCE\tID\tNOTE\tDATA\n")
	for _, e := range entries {
		note := ""
		switch {
		case e.Error != "":
			note = "does not decode: " + oneLine(e.Error, 60)
		case e.RetractedBy != nil:
			note = fmt.Sprintf("retracted by seq %d: %s", *e.RetractedBy, e.RetractionReason)
		case e.Personal == "erased":
			note = "personal data erased"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, stamp(e.Time), e.Type, e.Source, e.ID, dash(note), oneLine(string(e.Data), 120))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d events of customer %s\n", len(entries), q.Customer)
	return nil
}

func parseTime(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.ParseInLocation("2006-01-02", s, loc)
}
