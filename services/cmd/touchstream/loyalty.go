package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/services/internal/config"
)

// loyaltyAdminSource is the source of rule activations: the club's operators.
const loyaltyAdminSource = "urn:touchstream:service:loyalty-admin"

const loyaltyUsage = `usage:
  touchstream loyalty rules                                   the rule versions of deploy/loyalty.json
  touchstream loyalty activate VERSION --effective T [--note ...] [--retroactive]
  touchstream loyalty adjust CUSTOMER --points N --reason "..." --operator ID [--id ADJ-...]

A rule version of the club's earning rules becomes active through a
loyalty.rules_activated event in the log, published to every partition: events stamped
at or after the effective time and stored after the activation earn under it. T is RFC
3339 (2026-10-01T00:00:00+08:00). An effective time in the past changes nothing already
folded (re-earn history under a version with: touchstream rebuild loyalty --pin
VERSION), so it needs --retroactive.

adjust corrects a member's points through a points.adjusted event: positive adds a lot,
negative consumes lots like a redemption. --id makes a retry safe (the same id is
stored once); by default one is minted.

flags:
`

// runLoyalty runs `touchstream loyalty`.
func runLoyalty(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("loyalty", stdout)
	fs.Usage = func() { fmt.Fprint(fs.Output(), loyaltyUsage); fs.PrintDefaults() }
	var c config.Common
	c.Register(fs, env)
	effective := fs.String("effective", "", "activate: when the version comes into force (RFC 3339)")
	note := fs.String("note", "", "activate: why, for the audit trail (no personal data)")
	retro := fs.Bool("retroactive", false, "activate: allow an effective time in the past")
	points := fs.Int64("points", 0, "adjust: points to add (positive) or take (negative)")
	reason := fs.String("reason", "", "adjust: why, for the audit trail (no personal data)")
	operator := fs.String("operator", config.String(env, "TOUCHSTREAM_OPERATOR", ""), "adjust: your operator account id, never a name (env TOUCHSTREAM_OPERATOR)")
	adjID := fs.String("id", "", "adjust: the adjustment's id (default: minted); the same id is stored once")
	pos, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: loyalty: rules, activate or adjust", errUsage)
	}
	rs, err := loadLoyaltyRules(&c)
	if err != nil {
		return err
	}
	switch pos[0] {
	case "rules":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tDESCRIPTION")
		for _, id := range rs.IDs() {
			r, _ := rs.Version(id)
			fmt.Fprintf(tw, "%s\t%s\n", id, r.Description)
		}
		return tw.Flush()
	case "activate":
	case "adjust":
		return adjustPoints(ctx, &c, pos[1:], *points, *reason, *operator, *adjID, stdout)
	default:
		return fmt.Errorf("%w: loyalty: unknown command %q: rules, activate or adjust", errUsage, pos[0])
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: loyalty activate: name one rule version (touchstream loyalty rules lists them)", errUsage)
	}
	version := pos[1]
	if _, err := rs.Version(version); err != nil {
		return fmt.Errorf("%w: loyalty activate: %w", errUsage, err)
	}
	at, err := time.Parse(time.RFC3339, *effective)
	if err != nil {
		return fmt.Errorf("%w: loyalty activate: --effective %q: an RFC 3339 time such as 2026-10-01T00:00:00+08:00 is required", errUsage, *effective)
	}
	if at.Before(time.Now()) && !*retro {
		return fmt.Errorf("%w: loyalty activate: --effective %s is in the past: events already folded keep the rules they earned under; add --retroactive to activate anyway, or rebuild loyalty --pin %s to re-earn history", errUsage, *effective, version)
	}
	tc, err := connectTool(ctx, &c, "loyalty", 2)
	if err != nil {
		return err
	}
	defer tc.close()
	n, err := activateRules(ctx, tc, version, at, *note)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rule version %s activated from %s in all %d partitions\n", version, at.Format(time.RFC3339), n)
	return nil
}

// activateRules publishes a rule activation to every partition.
func activateRules(ctx context.Context, tc *toolConn, version string, at time.Time, note string) (int, error) {
	return publishPartitionWide(ctx, tc, loyaltyAdminSource, at, events.LoyaltyRulesActivated{Version: version, EffectiveAt: at, Note: note})
}

// publishPartitionWide publishes a partition-wide event (an activation) to every
// partition, from an operators' tool.
func publishPartitionWide(ctx context.Context, tc *toolConn, source string, at time.Time, p events.Payload) (int, error) {
	pub, err := events.NewPublisher(ctx, tc.nc, events.WithLayout(tc.def.Layout), events.WithSource(source), events.WithCatalog(tc.cat),
		events.WithLimits(events.Limits{MaxSize: 64 << 10}))
	if err != nil {
		return 0, err
	}
	defer pub.Close()
	evs, err := events.NewPartitionEvents(tc.def.Layout.Partitions, at, p)
	if err != nil {
		return 0, err
	}
	for i, r := range pub.PublishBatch(ctx, evs) {
		if r.Err != nil {
			return 0, fmt.Errorf("publish %s in partition %d: %w (run it again: partitions already stored keep it once, by id)", p.EventType(), i, r.Err)
		}
	}
	return len(evs), nil
}

// ensureClubOpen activates the newest rule version from 1 January of this year when
// the log holds no activation yet: the embedded default's club then earns points on
// the simulator's traffic. Production activates versions explicitly.
func ensureClubOpen(ctx context.Context, tc *toolConn, rs *ledger.RuleSet) (string, error) {
	subject := tc.def.Layout.Subject(0, events.TypeLoyaltyRulesActivated)
	s, err := tc.js.Stream(ctx, tc.def.Layout.Stream(0))
	if err != nil {
		return "", err
	}
	if _, err := s.GetLastMsgForSubject(ctx, subject); err == nil {
		return "", nil
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", err
	}
	ids := rs.IDs()
	version := ids[len(ids)-1]
	now := time.Now().In(rs.Location())
	at := time.Date(now.Year(), 1, 1, 0, 0, 0, 0, rs.Location())
	if _, err := activateRules(ctx, tc, version, at, "embedded default: the club opens with the newest rules"); err != nil {
		return "", err
	}
	return version, nil
}

// adjustPoints publishes a points.adjusted event for one member.
func adjustPoints(ctx context.Context, c *config.Common, args []string, points int64, reason, operator, id string, stdout io.Writer) error {
	if len(args) != 1 || !events.ValidCustomerID(args[0]) {
		return fmt.Errorf("%w: loyalty adjust: name one customer id (1-64 characters of A-Z, a-z, 0-9, _ and -)", errUsage)
	}
	adj := events.PointsAdjusted{AdjustmentID: id, Points: points, Reason: reason, Operator: operator}
	if adj.AdjustmentID == "" {
		adj.AdjustmentID = "ADJ-" + time.Now().UTC().Format("20060102T150405.000000000")
	}
	ev, err := events.NewEvent(args[0], time.Now(), adj)
	if err != nil {
		return err
	}
	ev.ID = adj.AdjustmentID // a retry with the same id is a duplicate, not a second adjustment
	tc, err := connectTool(ctx, c, "loyalty", 2)
	if err != nil {
		return err
	}
	defer tc.close()
	pub, err := events.NewPublisher(ctx, tc.nc, events.WithLayout(tc.def.Layout), events.WithSource(loyaltyAdminSource), events.WithCatalog(tc.cat))
	if err != nil {
		return err
	}
	defer pub.Close()
	res, err := pub.Publish(ctx, ev)
	if err != nil {
		var fe events.FieldErrors
		if errors.As(err, &fe) {
			return fmt.Errorf("%w: loyalty adjust: %w", errUsage, err)
		}
		return err
	}
	what := "stored"
	if res.Duplicate {
		what = "already stored (same id)"
	}
	fmt.Fprintf(stdout, "adjustment %s of %+d points for %s %s at stream sequence %d\n", adj.AdjustmentID, points, args[0], what, res.Seq)
	return nil
}
