package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/erase"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/services/internal/ops"
)

const eraseUsage = `usage: touchstream erase CUSTOMER --reason CODE --operator ID [--json]
       touchstream erase --retention [--dry-run] [--json]

Erases a customer's personal data (PIPL's right to be forgotten): records the erasure
in the log as a customer.erased event, deletes the customer's data key through the key
service (every personal field sealed with it becomes unreadable, in the log and in its
backups), and purges every version of every read model, the dead letters and the
parked webhook deliveries. Prints a receipt: what was removed, and the time after which
no process can use the key any more (deploy/privacy.json key_cache_ttl).

Running it again for the same customer completes what an interrupted run left and says
which steps were already done; for a customer already erased it says so and records
nothing.

--retention erases, with reason retention, every customer whose subscription was
terminated longer ago than deploy/privacy.json allows (retention.terminated_customers);
--dry-run lists them without erasing.

flags:
`

// runErase erases a customer's personal data, or sweeps the retention limits.
func runErase(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("erase", stdout)
	var f opsFlags
	f.register(fs, env)
	f.registerOperator(fs, env)
	reason := fs.String("reason", "", "why, as a code: customer_request, legal_order, ... (lowercase letters and underscores; recorded in the log in clear)")
	retention := fs.Bool("retention", false, "erase every customer past the retention limits of deploy/privacy.json")
	dryRun := fs.Bool("dry-run", false, "with --retention: list the customers due, erase nothing")
	fs.StringVar(&f.phoneKey, "phone-index-key-file", config.String(env, "TOUCHSTREAM_PHONE_INDEX_KEY_FILE", ""),
		"file with the secret of the phone search hash, for customer360 (env TOUCHSTREAM_PHONE_INDEX_KEY_FILE); default <data-dir>/secrets/phone-index.key")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), eraseUsage)
		fs.PrintDefaults()
	}
	pos, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *retention && len(pos) > 0:
		return fmt.Errorf("%w: erase --retention takes no customer", errUsage)
	case !*retention && len(pos) != 1:
		return fmt.Errorf("%w: erase: exactly one customer id is required (or --retention)", errUsage)
	case !*retention && *dryRun:
		return fmt.Errorf("%w: erase: --dry-run goes with --retention", errUsage)
	case !*retention:
		r := erase.Request{Customer: pos[0], Reason: *reason, Operator: f.operator}
		if err := r.Validate(); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
	}

	er, closeAll, err := connectEraser(ctx, &f)
	if err != nil {
		return err
	}
	defer closeAll()
	if *retention {
		s, err := er.Sweep(ctx, *dryRun)
		if s != nil {
			if f.asJSON {
				if werr := writeJSON(stdout, s); werr != nil {
					return werr
				}
			} else {
				printSweep(stdout, s)
			}
		}
		return err
	}
	rc, err := er.Erase(ctx, erase.Request{Customer: pos[0], Reason: *reason, Operator: f.operator})
	if err != nil {
		return err
	}
	if f.asJSON {
		return writeJSON(stdout, rc)
	}
	printReceipt(stdout, rc, time.Now())
	return nil
}

// connectEraser connects as the erasure command (the ops identity) and builds the
// eraser: the publisher of customer.erased, the key service's erase subject, and the
// projections of every version.
func connectEraser(ctx context.Context, f *opsFlags) (*erase.Eraser, func(), error) {
	c := &f.common
	privacy, err := loadPrivacy(c)
	if err != nil {
		return nil, nil, err
	}
	tiers, err := valuetier.Load(c.DeployFile("tiers.json"))
	if err != nil {
		return nil, nil, err
	}
	tc, err := connectTool(ctx, c, "ops", 4)
	if err != nil {
		return nil, nil, err
	}
	pub, err := events.NewPublisher(ctx, tc.nc, events.WithLayout(tc.def.Layout), events.WithSource(ops.Source), events.WithCatalog(tc.cat))
	if err != nil {
		tc.close()
		return nil, nil, err
	}
	closeAll := func() { _ = pub.Close(); tc.close() }
	keys := events.NewKeyClient(tc.nc, events.KeyClientConfig{})
	er, err := erase.New(ctx, erase.Config{Privacy: privacy}, erase.Deps{Pool: tc.pool, Publisher: pub, Layout: tc.def.Layout,
		Keys: &keystore.EraseClient{NC: tc.nc}, Resolve: f.resolver(tc.pool, tiers, keys), Forget: keys.Forget, Log: tc.log})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return er, closeAll, nil
}

// loadPrivacy reads deploy/privacy.json; a deploy directory without one gets the
// defaults (the clients' default key cache lifetime, no retention limit).
func loadPrivacy(c *config.Common) (erase.Privacy, error) {
	p, err := erase.LoadPrivacy(c.DeployFile("privacy.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return erase.Privacy{KeyCacheTTL: erase.DefaultKeyCacheTTL}, nil
	}
	return p, err
}

func printReceipt(w io.Writer, rc *erase.Receipt, now time.Time) {
	what := "erased"
	switch {
	case rc.AlreadyErased:
		what = "was already erased; nothing was left, nothing new recorded"
	case rc.Resumed:
		what = "erased (continuing an interrupted run)"
	}
	fmt.Fprintf(w, "customer %s %s\n  request %d, reason %s, operator %s, requested %s\n\n", rc.Customer, what, rc.Request, rc.Reason, rc.Operator, stamp(rc.RequestedAt))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATUS\tAT\tWHAT")
	for _, s := range rc.Steps {
		var detail string
		switch s.Name {
		case "log":
			detail = fmt.Sprintf("%s %s at %s seq %d", events.TypeCustomerErased, rc.EventID, rc.Stream, rc.Seq)
		case "keys":
			detail = fmt.Sprintf("%d data key(s) deleted: %s", len(rc.KeyIDs), dash(strings.Join(rc.KeyIDs, ", ")))
		case "purge":
			detail = "personal data removed from every read-model version, dead letters and parked deliveries"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Status, stamp(s.At), detail)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nremoved (rows, over every run of this request):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, p := range rc.Purged {
		fmt.Fprintf(tw, "  %s\t%s\t%d\n", p.Target, dash(p.Role), p.Rows)
	}
	_ = tw.Flush()
	if len(rc.NoPersonal) > 0 {
		fmt.Fprintf(w, "hold no personal data: %s\n", strings.Join(rc.NoPersonal, ", "))
	}
	for _, p := range rc.Pending {
		fmt.Fprintf(w, "%s has not folded the erasure yet (checkpoint %d, the erasure is seq %d): it purges again when it does\n", p.Target, p.Checkpoint, p.Seq)
	}
	if !rc.CompleteAfter.IsZero() {
		state := "complete"
		if now.Before(rc.CompleteAfter) {
			state = "complete once the clients' key caches have expired: until then a process that cached the key may still open the sealed fields"
		}
		fmt.Fprintf(w, "\ncomplete after %s (%s)\n", stamp(rc.CompleteAfter), state)
	}
	fmt.Fprintln(w, "kept, by design:")
	for _, k := range rc.Kept {
		fmt.Fprintf(w, "  - %s\n", k)
	}
}

func printSweep(w io.Writer, s *erase.Sweep) {
	verb := "erased"
	if s.DryRun {
		verb = "due (dry run: nothing erased)"
	}
	fmt.Fprintf(w, "retention sweep at %s: subscriptions terminated before %s\n", stamp(s.Now), stamp(s.Cutoff))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CUSTOMER\tTERMINATED\tREQUEST\tKEYS")
	byCustomer := map[string]*erase.Receipt{}
	for _, rc := range s.Receipts {
		byCustomer[rc.Customer] = rc
	}
	for _, c := range s.Due {
		req, keys := "-", "-"
		if rc := byCustomer[c.Customer]; rc != nil {
			req, keys = fmt.Sprint(rc.Request), fmt.Sprint(len(rc.KeyIDs))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Customer, stamp(c.TerminatedAt), req, keys)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d customers %s", len(s.Due), verb)
	if s.More {
		fmt.Fprint(w, "; more are due: the next sweep continues")
	}
	fmt.Fprintln(w)
}
