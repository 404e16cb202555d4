package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/projections/loyalty"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/projections/outbox"
	"github.com/touchstream/touchstream/projections/reporting"
	"github.com/touchstream/touchstream/projections/servicelevel"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/projections/verify"
	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
)

// The first versions of the read models: what serves until a rebuild switches to a new
// one (projections.serving records the serving version of each).
const (
	timelineTarget    = "timeline_v1"
	customer360Target = "customer360_v1"
	loyaltyTarget     = "loyalty_v1"
	churnTarget       = "churn_v1"
	serviceTarget     = "servicelevel_v1"
)

// defaultServing is the serving version of each versioned read model on a new database.
func defaultServing() map[string]string {
	return map[string]string{timeline.Name: timelineTarget, customer360.Name: customer360Target, loyalty.Name: loyaltyTarget,
		churn.Name: churnTarget, servicelevel.Name: serviceTarget}
}

// servingPoll is how often a projector looks for a switched serving version.
const servingPoll = 2 * time.Second

// projectorFlags are the projector's own settings.
type projectorFlags struct {
	batch    int
	linger   time.Duration
	leaseTTL time.Duration
	instance string
	phoneKey string
	horizon  time.Duration
	// verifyEvery schedules `verify` of customer360 inside the projector; 0: never.
	verifyEvery time.Duration
}

func (f *projectorFlags) register(fs interface {
	IntVar(*int, string, int, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	StringVar(*string, string, string, string)
}, env config.Env) {
	fs.IntVar(&f.batch, "batch", 1000, "most events folded per transaction")
	fs.DurationVar(&f.linger, "linger", 5*time.Millisecond, "wait this long after a batch's first event for more")
	fs.DurationVar(&f.leaseTTL, "lease-ttl", 5*time.Second, "partitions of a silent instance are taken over after this")
	fs.StringVar(&f.instance, "instance", config.String(env, "TOUCHSTREAM_INSTANCE", ""), "instance id in the lease group (env TOUCHSTREAM_INSTANCE); default host-pid-random")
	fs.DurationVar(&f.horizon, "dedup-horizon", config.Duration(env, "TOUCHSTREAM_DEDUP_HORIZON", dedup.DefaultHorizon), "how long the idempotency index remembers an event (env TOUCHSTREAM_DEDUP_HORIZON)")
	fs.DurationVar(&f.verifyEvery, "verify-every", config.Duration(env, "TOUCHSTREAM_VERIFY_EVERY", 0), "verify customer360 against the log at this interval, e.g. 6h (env TOUCHSTREAM_VERIFY_EVERY); 0: never")
	fs.StringVar(&f.phoneKey, "phone-index-key-file", config.String(env, "TOUCHSTREAM_PHONE_INDEX_KEY_FILE", ""), "file with the secret of the phone search hash (env TOUCHSTREAM_PHONE_INDEX_KEY_FILE); default <data-dir>/secrets/phone-index.key")
}

// projectorDeps are what the projector is built from.
type projectorDeps struct {
	pool     *pgxpool.Pool
	nc       *nats.Conn
	js       jetstream.JetStream
	layout   events.Layout
	cat      *events.Catalog
	tiers    valuetier.Config
	phoneKey []byte
	keys     events.KeySource
	registry prometheus.Registerer
	log      *slog.Logger
	// loyalty are the club's earning rules (deploy/loyalty.json); nil: no loyalty
	// projection. churn is the churn rule scorer (deploy/churn-rules.json); nil: no
	// churn projection. pins are the rule or model versions the serving versions
	// were rebuilt pinned to, by projection ("" : as the log activates them).
	// outbox sends the signals of loyalty, churn and service levels through the
	// transactional outbox to SIGNALS (the live projector).
	loyalty *ledger.RuleSet
	churn   *features.Scorer
	pins    map[string]string
	outbox  bool
	// serviceLevel folds the service-level read model too.
	serviceLevel bool
}

// buildProjector assembles the projector: the read models it folds, in the order they
// are applied within each batch (the timeline first: it is the customer index that
// the others read when they recompute a customer).
// serving names the versions to fold (projection → target); missing ones take the
// defaults.
func buildProjector(f projectorFlags, d projectorDeps, serving map[string]string) (*projections.Runner, error) {
	tl, c360t := timelineTarget, customer360Target
	if t := serving[timeline.Name]; t != "" {
		tl = t
	}
	if t := serving[customer360.Name]; t != "" {
		c360t = t
	}
	c360, err := newCustomer360(c360t, d)
	if err != nil {
		return nil, err
	}
	readModels := []projections.Projection{
		timeline.New(tl),
		c360,
		dedup.Projection{},
	}
	if d.loyalty != nil {
		lt := loyaltyTarget
		if t := serving[loyalty.Name]; t != "" {
			lt = t
		}
		lp, err := newLoyalty(lt, d.pins[loyalty.Name], d)
		if err != nil {
			return nil, err
		}
		readModels = append(readModels, lp)
	}
	if d.churn != nil {
		ct := churnTarget
		if t := serving[churn.Name]; t != "" {
			ct = t
		}
		cp, err := newChurn(ct, d.pins[churn.Name], d)
		if err != nil {
			return nil, err
		}
		readModels = append(readModels, cp)
	}
	if d.serviceLevel {
		st := serviceTarget
		if t := serving[servicelevel.Name]; t != "" {
			st = t
		}
		sl, err := servicelevel.New(servicelevel.Options{Target: st, Outbox: d.outbox})
		if err != nil {
			return nil, err
		}
		readModels = append(readModels, sl)
	}
	history := &projections.LogHistory{
		Index:   &timeline.Index{Target: tl, Layout: d.layout},
		JS:      d.js,
		Decoder: projections.NewDecoder(d.layout, d.cat),
	}
	return projections.NewRunner(projections.Config{
		Group: "projector", Instance: f.instance, BatchSize: f.batch, Linger: f.linger, LeaseTTL: f.leaseTTL,
	}, projections.Deps{
		Pool: d.pool, JS: d.js, Layout: d.layout, Catalog: d.cat, History: history, Log: d.log, Registry: d.registry,
	}, readModels...)
}

// newCustomer360 binds the customer 360 projection to a target.
func newCustomer360(target string, d projectorDeps) (projections.Projection, error) {
	return customer360.New(customer360.Options{Target: target, Tiers: d.tiers, Keys: d.keys, PhoneKey: d.phoneKey})
}

// newLoyalty binds the loyalty projection to a target, under a pinned rule version
// ("" : as the log activates them).
func newLoyalty(target, pin string, d projectorDeps) (projections.Projection, error) {
	if d.loyalty == nil {
		return nil, fmt.Errorf("loyalty rules not loaded (deploy/loyalty.json)")
	}
	return loyalty.New(loyalty.Options{Target: target, Rules: d.loyalty, Pin: pin, Outbox: d.outbox})
}

// newChurn binds the churn projection to a target, under a pinned scorer ("" : as
// the log activates them).
func newChurn(target, pin string, d projectorDeps) (projections.Projection, error) {
	if d.churn == nil {
		return nil, fmt.Errorf("churn rules not loaded (deploy/churn-rules.json)")
	}
	return churn.New(churn.Options{Target: target, Rules: d.churn, Pin: pin, Tiers: d.tiers, Outbox: d.outbox})
}

// projectionFor builds the projection that writes a versioned target
// (customer360_v3, timeline_v2, loyalty_v2), as the projector does: for rebuilds,
// replays and redrives into any version. pin is the rule version a loyalty version is
// pinned to.
func projectionFor(target, pin string, d projectorDeps) (projections.Projection, error) {
	name, _, ok := projections.TargetVersion(target)
	switch {
	case ok && name == customer360.Name:
		return newCustomer360(target, d)
	case ok && name == timeline.Name:
		return timeline.New(target), nil
	case ok && name == loyalty.Name:
		return newLoyalty(target, pin, d)
	case ok && name == churn.Name:
		return newChurn(target, pin, d)
	case ok && name == servicelevel.Name:
		return servicelevel.New(servicelevel.Options{Target: target, Outbox: d.outbox})
	}
	return nil, fmt.Errorf("no projection writes target %q (known: %s)", target, knownTargets)
}

// resolveTarget is projectionFor with the target's pin looked up: for redrives.
func resolveTarget(target string, d projectorDeps) (projections.Projection, error) {
	pin := ""
	if d.pool != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if pin, err = projections.TargetPin(ctx, d.pool, target); err != nil {
			return nil, err
		}
	}
	return projectionFor(target, pin, d)
}

// knownTargets names the versioned read models, for errors.
var knownTargets = strings.Join([]string{customer360.Name + "_vN", timeline.Name + "_vN", loyalty.Name + "_vN", churn.Name + "_vN", servicelevel.Name + "_vN"}, ", ")

// loadChurnRules reads the churn rule scorer.
func loadChurnRules(c *config.Common) (*features.Scorer, error) {
	b, err := os.ReadFile(c.DeployFile("churn-rules.json"))
	if err != nil {
		return nil, err
	}
	return features.Load(b)
}

// loadLoyaltyRules reads the club's earning rules.
func loadLoyaltyRules(c *config.Common) (*ledger.RuleSet, error) {
	return ledger.Load(c.DeployFile("loyalty.json"))
}

// followServing runs the projector over the serving versions and, when a rebuild
// switches one, starts again over the new set: the new version continues from the
// checkpoints its rebuild left. It returns when ctx ends.
func followServing(ctx context.Context, f projectorFlags, d projectorDeps, every time.Duration) error {
	if err := reporting.EnsureRole(ctx, d.pool, reporting.Role); err != nil && ctx.Err() == nil {
		d.log.Warn("the dashboards' read-only role is not ensured (the database user needs CREATEROLE; or create it once by hand, deploy/grafana/README.md)",
			"role", reporting.Role, "error", err)
	}
	for {
		var serving map[string]string
		for {
			var err error
			if serving, err = projections.EnsureServing(ctx, d.pool, defaultServing()); err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			d.log.Warn("cannot read the serving versions, retrying", "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(every):
			}
		}
		d.pins = map[string]string{}
		for _, name := range []string{loyalty.Name, churn.Name} {
			pin, err := projections.TargetPin(ctx, d.pool, serving[name])
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			d.pins[name] = pin
		}
		// The dashboards' views follow the serving versions (deploy/grafana).
		if err := reporting.Refresh(ctx, d.pool); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d.log.Warn("reporting views not refreshed; dashboards read the versions they read before", "error", err)
		}
		runner, err := buildProjector(f, d, serving)
		if err != nil {
			return err
		}
		d.log.Info("projector folding the serving versions", "serving", serving)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- runner.Run(rctx) }()
		changed := watchServing(rctx, d.pool, serving, every)
		select {
		case err = <-done:
			cancel()
			return err
		case next := <-changed:
			d.log.Info("serving versions switched; following", "from", serving, "to", next)
			cancel()
			if err := <-done; err != nil {
				return err
			}
		}
	}
}

// watchServing reports once when the serving versions differ from have.
func watchServing(ctx context.Context, pool *pgxpool.Pool, have map[string]string, every time.Duration) <-chan map[string]string {
	out := make(chan map[string]string, 1)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				now, err := projections.ServingTargets(ctx, pool)
				if err == nil && !maps.Equal(now, have) {
					out <- now
					return
				}
			}
		}
	}()
	return out
}

func loadProjectorDeps(c *config.Common, f projectorFlags, createSecrets bool) (valuetier.Config, []byte, streams.Definition, error) {
	tiers, err := valuetier.Load(c.DeployFile("tiers.json"))
	if err != nil {
		return valuetier.Config{}, nil, streams.Definition{}, err
	}
	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil {
		return valuetier.Config{}, nil, streams.Definition{}, err
	}
	key, err := loadPhoneKey(c, f.phoneKey, createSecrets)
	if err != nil {
		return valuetier.Config{}, nil, streams.Definition{}, err
	}
	return tiers, key, def, nil
}

// runProjector runs the projector: the read models folded from the log.
func runProjector(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("projector", stdout)
	var c config.Common
	c.Register(fs, env)
	var f projectorFlags
	f.register(fs, env)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if c.NATSURL == "" {
		return fmt.Errorf("%w: --nats-url (TOUCHSTREAM_NATS_URL) is required", errUsage)
	}
	log := c.Logger().With("service", "projector")
	tiers, phoneKey, def, err := loadProjectorDeps(&c, f, false)
	if err != nil {
		return err
	}
	pool, err := pgsetup.Open(ctx, c.DatabaseURL, 16, false)
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, err := natsconn.Dial(natsconn.For(&c, "projector"), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cat, err := events.DefaultCatalog()
	if err != nil {
		return err
	}
	reg := newRegistry()
	club, err := loadLoyaltyRules(&c)
	if err != nil {
		return err
	}
	churnRules, err := loadChurnRules(&c)
	if err != nil {
		return err
	}
	deps := projectorDeps{pool: pool, nc: nc, js: js, layout: def.Layout, cat: cat, tiers: tiers,
		phoneKey: phoneKey, keys: events.NewKeyClient(nc, events.KeyClientConfig{}), registry: reg, log: log, loyalty: club, churn: churnRules, outbox: true, serviceLevel: true}
	adm, err := admin.New(admin.Config{Addr: c.AdminAddr, Registry: reg, Checks: []admin.Check{natsCheck(nc), databaseCheck(pool)}}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "projector folding the serving versions of %s, %s, %s, %s and %s, and %s (admin %s)\n", timeline.Name, customer360.Name, loyalty.Name,
		churn.Name, servicelevel.Name, dedup.Schema, c.AdminAddr)
	pruner := &dedup.Pruner{Pool: pool, Horizon: f.horizon, Log: log}
	var verifier *verify.Verifier
	if f.verifyEvery > 0 {
		if verifier, err = verify.New(verify.Deps{Pool: pool, JS: js, Layout: def.Layout, Registry: reg, Log: log},
			verify.Options{Target: customer360Target}); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return followServing(gctx, f, deps, servingPoll) })
	g.Go(func() error { return pruner.Run(gctx) })
	g.Go(func() error { return adm.Run(gctx) })
	// Derived signals: from the outbox the projections write in their batches to SIGNALS.
	fwd := outbox.Forwarder{Pool: pool, JS: js, Stream: def.SignalsConfig().Name, Registry: reg, Log: log}
	g.Go(func() error { return fwd.Run(gctx) })
	if verifier != nil {
		g.Go(func() error { return verifier.Every(gctx, f.verifyEvery) })
	}
	return g.Wait()
}
