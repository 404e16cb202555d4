package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/verify"
	"github.com/touchstream/touchstream/services/internal/config"
)

const verifyUsage = `usage: touchstream verify [flags] [customer360 | <target>]

Checks a customer360 read model against the log, independently of the projection's
fold: per customer, the count of applied events, an order-independent hash of their
stream sequences, the recharge total and the lifetime spend, recomputed from the raw
events up to the target's checkpoints. Without an argument or --target, the serving
version of customer360 is verified. Exits non-zero when any customer differs, naming
the partition and the first differing customer (by id).

flags:
`

// runVerify runs `touchstream verify`.
func runVerify(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("verify", stdout)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), verifyUsage)
		fs.PrintDefaults()
	}
	var c config.Common
	c.Register(fs, env)
	target := fs.String("target", "", "the customer360 version (schema) to verify, e.g. customer360_v2; default: the serving version")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of a table")
	partList := fs.String("partitions", "", "comma-separated partitions to verify (default: all)")
	batch := fs.Int("batch", 1000, "messages pulled from the log at a time")
	quiet := fs.Bool("quiet", false, "no progress on standard error")
	if err := parse(fs, args); err != nil {
		return err
	}
	// The projection may come first: `verify customer360 --json`.
	if fs.NArg() > 0 {
		arg := fs.Arg(0)
		if err := parse(fs, fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: verify: unexpected argument %q after %q", errUsage, fs.Arg(0), arg)
		}
		switch {
		case arg == customer360.Name:
		case strings.HasPrefix(arg, customer360.Name+"_"):
			if *target != "" && *target != arg {
				return fmt.Errorf("%w: verify: argument %q and --target %q name different versions", errUsage, arg, *target)
			}
			*target = arg
		default:
			return fmt.Errorf("%w: verify: projection %q: only customer360 (or one of its versions, customer360_vN) can be verified", errUsage, arg)
		}
	}
	if *target != "" && !strings.HasPrefix(*target, customer360.Name+"_") {
		return fmt.Errorf("%w: verify: --target %q: must be a customer360 version (customer360_vN)", errUsage, *target)
	}
	parts, err := parsePartitions(*partList)
	if err != nil {
		return fmt.Errorf("%w: verify: --partitions: %w", errUsage, err)
	}
	tc, err := connectTool(ctx, &c, "verify", 4)
	if err != nil {
		return err
	}
	defer tc.close()
	pool, js, def, log := tc.pool, tc.js, tc.def, tc.log
	if *target == "" {
		serving := &projections.ServingCache{DB: pool}
		if *target, err = serving.Target(ctx, customer360.Name, customer360Target); err != nil {
			return err
		}
	}
	opts := verify.Options{Target: *target, Partitions: parts, FetchBatch: *batch}
	finish := func() {}
	if !*quiet {
		opts.Progress, finish = progressPrinter(os.Stderr)
	}
	v, err := verify.New(verify.Deps{Pool: pool, JS: js, Layout: def.Layout, Log: log}, opts)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	rep, err := v.Run(ctx)
	finish()
	if err != nil {
		return err
	}
	if err := printVerify(stdout, rep, *asJSON); err != nil {
		return err
	}
	return rep.Err()
}

// parsePartitions reads "0,3,7" (empty: all).
func parsePartitions(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 0 {
			return nil, fmt.Errorf("%q is not a partition number", f)
		}
		out = append(out, p)
	}
	return out, nil
}

// progressPrinter prints how far the log reading is, on one line rewritten at most
// twice a second; finish ends the line.
func progressPrinter(w io.Writer) (progress func(verify.Progress), finish func()) {
	var last time.Time
	printed := false
	progress = func(p verify.Progress) {
		if time.Since(last) < 500*time.Millisecond && p.Read < p.Total {
			return
		}
		last, printed = time.Now(), true
		pct := 100.0
		if p.Total > 0 {
			pct = min(100, 100*float64(p.Read)/float64(p.Total))
		}
		fmt.Fprintf(w, "\rreading %s: %d of about %d events (%.0f%%)", p.Stream, p.Read, p.Total, pct)
	}
	finish = func() {
		if printed {
			fmt.Fprintln(w)
		}
	}
	return progress, finish
}

func printVerify(w io.Writer, rep *verify.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	verdict := "OK"
	if !rep.OK {
		verdict = fmt.Sprintf("MISMATCH (%d customers differ)", rep.Differing)
	}
	fmt.Fprintf(w, "%s: %d customers, %d events checked (%d read from the log) in %.1fs: %s\n",
		rep.Target, rep.Customers, rep.Events, rep.Read, rep.Seconds, verdict)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSTREAM\tCHECKPOINT\tCUSTOMERS\tEVENTS\tPARKED\tRESULT\tFIRST DIFFERING CUSTOMER")
	for _, p := range rep.Partitions {
		result, first := "ok", ""
		if !p.OK {
			result = fmt.Sprintf("%d differ", p.Differing)
			if p.First != nil {
				first = p.First.CustomerID
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", p.Partition, p.Stream, p.Checkpoint, p.Customers, p.Events, p.Parked, result, first)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range rep.Partitions {
		if p.First == nil {
			continue
		}
		fmt.Fprintf(w, "partition %d, customer %s: %s\n", p.Partition, p.First.CustomerID, p.First.Reason)
		for _, d := range p.First.Diffs {
			fmt.Fprintf(w, "    %-20s expected %d (log), actual %d (read model)\n", d.Field, d.Expected, d.Actual)
		}
	}
	return nil
}
