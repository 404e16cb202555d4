package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
)

// Serving versions of the read models. Blue/green rebuilds (issue: operations) will
// make these a registry; until then each read model has one version.
const (
	timelineTarget    = "timeline_v1"
	customer360Target = "customer360_v1"
)

// projectorFlags are the projector's own settings.
type projectorFlags struct {
	batch    int
	linger   time.Duration
	leaseTTL time.Duration
	instance string
	phoneKey string
	horizon  time.Duration
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
}

// buildProjector assembles the projector: the read models it folds, in the order they
// are applied within each batch (the timeline first: it is the customer index that
// the others read when they recompute a customer).
func buildProjector(f projectorFlags, d projectorDeps) (*projections.Runner, error) {
	c360, err := customer360.New(customer360.Options{Target: customer360Target, Tiers: d.tiers, Keys: d.keys, PhoneKey: d.phoneKey})
	if err != nil {
		return nil, err
	}
	readModels := []projections.Projection{
		timeline.New(timelineTarget),
		c360,
		dedup.Projection{},
	}
	history := &projections.LogHistory{
		Index:   &timeline.Index{Target: timelineTarget, Layout: d.layout},
		JS:      d.js,
		Decoder: projections.NewDecoder(d.layout, d.cat),
	}
	return projections.NewRunner(projections.Config{
		Group: "projector", Instance: f.instance, BatchSize: f.batch, Linger: f.linger, LeaseTTL: f.leaseTTL,
	}, projections.Deps{
		Pool: d.pool, JS: d.js, Layout: d.layout, Catalog: d.cat, History: history, Log: d.log, Registry: d.registry,
	}, readModels...)
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
	nc, err := natsconn.Connect(c.NATSURL, c.NATSCreds, "touchstream-projector", log)
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
	runner, err := buildProjector(f, projectorDeps{pool: pool, nc: nc, js: js, layout: def.Layout, cat: cat, tiers: tiers,
		phoneKey: phoneKey, keys: events.NewKeyClient(nc, events.KeyClientConfig{}), registry: reg, log: log})
	if err != nil {
		return err
	}
	adm, err := admin.New(admin.Config{Addr: c.AdminAddr, Registry: reg, Checks: []admin.Check{natsCheck(nc), databaseCheck(pool)}}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "projector %s folding %s, %s, %s (admin %s)\n", runner.Instance(), timelineTarget, customer360Target, dedup.Schema, c.AdminAddr)
	pruner := &dedup.Pruner{Pool: pool, Horizon: f.horizon, Log: log}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return runner.Run(gctx) })
	g.Go(func() error { return pruner.Run(gctx) })
	g.Go(func() error { return adm.Run(gctx) })
	return g.Wait()
}
