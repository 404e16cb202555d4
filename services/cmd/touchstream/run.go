package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/projections/outbox"
	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/services/internal/clock"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/services/internal/natsauth"
	"github.com/touchstream/touchstream/services/internal/notify"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
	"github.com/touchstream/touchstream/services/internal/query"
	"github.com/touchstream/touchstream/services/internal/redeem"
	"github.com/touchstream/touchstream/services/internal/simulate"
)

// runFlags are the settings of the all-in-one development default.
type runFlags struct {
	natsPort  int
	natsTLS   config.NATSServerTLS
	gateway   string
	query     string
	redeem    string
	simulator simulatorFlags
	projector projectorFlags
	webhooks  string // a webhooks file: the notifier runs too
	access    accessFlags
}

// runAll starts every service in one process on an embedded default: an embedded
// nats-server (store under the data directory) unless --nats-url names one, the local
// PostgreSQL (database created if missing), the key service, the gateway, the
// projector, the query API, one admin listener, and the simulator feeding realistic
// traffic through the gateway. Development secrets (master key, phone index key) are
// created under <data-dir>/secrets on first start.
func runAll(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("run", stdout)
	var c config.Common
	c.Register(fs, env)
	var f runFlags
	fs.IntVar(&f.natsPort, "nats-port", 4333, "port of the embedded nats-server (when --nats-url is empty)")
	f.natsTLS.Register(fs, env)
	fs.StringVar(&f.gateway, "gateway-addr", gateway.DefaultAddr, "gateway HTTP listen address")
	fs.StringVar(&f.query, "query-addr", query.DefaultAddr, "query API listen address")
	fs.StringVar(&f.redeem, "redeem-addr", redeem.DefaultAddr, "loyalty redemption API listen address")
	fs.StringVar(&f.webhooks, "webhooks", config.String(env, "TOUCHSTREAM_WEBHOOKS_FILE", ""), "deliver signals to the webhooks of this file too (env TOUCHSTREAM_WEBHOOKS_FILE; their secrets from the environment); default: no notifier")
	f.simulator.register(fs)
	f.projector.register(fs, env)
	f.access.register(fs, env, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	if f.access.file == "" {
		f.access.file = c.DeployFile("access.json") // the development staff tokens
	}
	if err := errors.Join(c.Validate(), f.natsTLS.Validate()); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	log := c.Logger()
	started := time.Now()

	// NATS: embedded unless an external server is named, every service on its own
	// identity (ADR 29). It stops last.
	conns, nsrv, err := startRunNATS(&c, f.natsPort, f.natsTLS, log)
	if err != nil {
		return err
	}
	if nsrv != nil {
		defer nsrv.Shutdown()
		c.NATSURL = nsrv.URL()
	}
	defer func() { _ = conns.close() }()
	nc, js, err := conns.conn(natsauth.Streams)
	if err != nil {
		return err
	}
	keysNC, keysJS, err := conns.conn(natsauth.Keys)
	if err != nil {
		return err
	}
	gwNC, _, err := conns.conn(natsauth.Gateway)
	if err != nil {
		return err
	}
	projNC, projJS, err := conns.conn(natsauth.Projector)
	if err != nil {
		return err
	}
	qryNC, _, err := conns.conn(natsauth.Query)
	if err != nil {
		return err
	}
	rdmNC, _, err := conns.conn(natsauth.Redeem)
	if err != nil {
		return err
	}
	clockNC, _, err := conns.conn(natsauth.Clock)
	if err != nil {
		return err
	}
	loyNC, loyJS, err := conns.conn(natsauth.Loyalty)
	if err != nil {
		return err
	}
	opsNC, opsJS, err := conns.conn(natsauth.Ops)
	if err != nil {
		return err
	}
	tiers, phoneKey, def, err := loadProjectorDeps(&c, f.projector, true)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = streams.Apply(actx, js, def)
	cancel()
	if err != nil {
		return fmt.Errorf("apply streams: %w", err)
	}

	pool, err := pgsetup.Open(ctx, c.DatabaseURL, 32, true)
	if err != nil {
		return fmt.Errorf("%w (is PostgreSQL running? `make postgres` starts it)", err)
	}
	defer pool.Close()
	reg := newRegistry()
	gate, auditLog, err := f.access.build(ctx, pool, reg, log)
	if err != nil {
		return err
	}
	cat, err := events.DefaultCatalog()
	if err != nil {
		return err
	}

	// Key service, and the client every other component uses.
	kek, created, err := keystore.LoadOrCreateMasterKey(c.MasterKeyFile())
	if err != nil {
		return err
	}
	if created {
		log.Warn("created a development master key", "file", c.MasterKeyFile(), "kek_id", kek.ID())
	}
	if err := keystore.Migrate(ctx, pool); err != nil {
		return err
	}
	store, err := keystore.Open(ctx, pool, kek)
	if err != nil {
		return err
	}
	keySvc, err := keystore.NewService(keystore.ServiceConfig{}, keystore.ServiceDeps{Store: store, NC: keysNC, Log: log.With("service", "keys"), Registry: reg,
		Erasures: &keystore.ErasureLog{JS: keysJS, Layout: def.Layout}})
	if err != nil {
		return err
	}
	keys := events.NewKeyClient(projNC, events.KeyClientConfig{})

	// Gateway.
	channels, err := gateway.LoadChannels(c.DeployFile("channels.json"))
	if err != nil {
		return err
	}
	if err := dedup.Migrate(ctx, pool); err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Config{Addr: f.gateway, Channels: channels}, gateway.Deps{
		NATS: gwNC, Layout: def.Layout, Catalog: cat, Keys: events.NewKeyClient(gwNC, events.KeyClientConfig{}), Dedup: pool, Registry: reg, Log: log.With("service", "gateway"),
	})
	if err != nil {
		return err
	}

	// Projector and query API.
	club, err := loadLoyaltyRules(&c)
	if err != nil {
		return err
	}
	churnRules, err := loadChurnRules(&c)
	if err != nil {
		return err
	}
	opened, err := ensureClubOpen(ctx, &toolConn{pool: pool, nc: loyNC, js: loyJS, def: def, cat: cat, log: log}, club)
	if err != nil {
		return fmt.Errorf("open the loyalty club: %w", err)
	}
	if opened != "" {
		log.Info("loyalty club opened with the newest rule version (embedded default)", "version", opened)
	}
	projDeps := projectorDeps{pool: pool, nc: projNC, js: projJS, layout: def.Layout, cat: cat, tiers: tiers,
		phoneKey: phoneKey, keys: keys, registry: reg, log: log.With("service", "projector"), loyalty: club, churn: churnRules, outbox: true, serviceLevel: true}
	cmds, err := newCommandPublisher(ctx, qryNC, def.Layout)
	if err != nil {
		return err
	}
	defer cmds.Close()
	if err := redeem.Migrate(ctx, pool); err != nil {
		return err
	}
	rdm, rdmPub, err := buildRedeem(ctx, redeemFlags{addr: f.redeem}, redeemDeps{pool: pool, nc: rdmNC, layout: def.Layout,
		registry: reg, log: log.With("service", "redeem")})
	if err != nil {
		return err
	}
	defer rdmPub.Close()
	privacy, err := loadPrivacy(&c)
	if err != nil {
		return err
	}
	routes, closeOps, err := opsRoutes(ctx, &toolConn{pool: pool, nc: opsNC, js: opsJS, def: def, cat: cat, log: log, privacy: privacy}, projDeps, gate.Authorize)
	if err != nil {
		return err
	}
	defer closeOps()
	con, conRoutes, err := buildConsole(pool, log.With("service", "query"), routes, gate)
	if err != nil {
		return err
	}
	qry, err := buildQuery(queryFlags{addr: f.query}, queryDeps{db: pool, keys: events.NewKeyClient(qryNC, events.KeyClientConfig{}), layout: def.Layout, phoneKey: phoneKey,
		tiers: tiers, registry: reg, log: log.With("service", "query"), loyalty: club, commands: cmds, routes: conRoutes,
		gate: gate, audit: auditLog})
	if err != nil {
		return err
	}
	var ntf *notify.Notifier
	if f.webhooks != "" {
		cfg, err := notifyConfig(&c, notifyFlags{webhooks: f.webhooks, initial: notify.DefaultInitialInterval, multiplier: notify.DefaultMultiplier,
			maxInterval: notify.DefaultMaxInterval, maxRetries: notify.DefaultMaxRetries}, env)
		if err != nil {
			return err
		}
		ntfNC, _, err := conns.conn(natsauth.Notify)
		if err != nil {
			return err
		}
		if ntf, err = notify.New(cfg, notify.Deps{Pool: pool, NATS: ntfNC, Registry: reg, Log: log.With("service", "notify")}); err != nil {
			return err
		}
	}
	adm, err := admin.New(admin.Config{Addr: c.AdminAddr, Registry: reg, Checks: []admin.Check{natsCheck(nc), databaseCheck(pool)}, Routes: routes},
		log.With("service", "admin"))
	if err != nil {
		return err
	}
	clockPub, err := events.NewPublisher(ctx, clockNC, events.WithLayout(def.Layout), events.WithSource(clock.Source))
	if err != nil {
		return err
	}
	ticker, err := clock.New(clock.Config{Location: tiers.Location()}, clockPub, def.Layout.Partitions, log.With("service", "clock"))
	if err != nil {
		return err
	}
	sim, err := f.simulator.build(&c, "http://"+f.gateway, log.With("service", "simulator"), stdout)
	if err != nil {
		return err
	}

	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "touchstream is running (started in %s). Ctrl-C stops it.\n\n", time.Since(started).Round(time.Millisecond))
	fmt.Fprintln(tw, "SERVICE\tWHERE")
	fmt.Fprintf(tw, "gateway (CloudEvents over HTTP)\thttp://%s/v1/events\n", f.gateway)
	fmt.Fprintf(tw, "web console\thttp://%s/console/  (customer 360, churn alerts, loyalty, service level, operations; live)\n", f.query)
	fmt.Fprintf(tw, "  sign in with\ta development token of %s: dev-supervisor-token (sees everything in clear),\n", f.access.file)
	fmt.Fprintf(tw, "\tdev-agent-token, dev-retention-token, dev-manager-token, dev-operator-token\n")
	fmt.Fprintf(tw, "query API\thttp://%s/v1/customers?tier=gold  (OpenAPI: /v1/openapi.json; -H 'Authorization: Bearer dev-agent-token')\n", f.query)
	fmt.Fprintf(tw, "access audit log\thttp://%s/v1/audit/access  (who read whose personal data; dev-supervisor-token or dev-operator-token)\n", f.query)
	fmt.Fprintf(tw, "redemption API\thttp://%s/v1/loyalty/members/{id}/redemptions  (OpenAPI: /v1/loyalty/openapi.json)\n", f.redeem)
	fmt.Fprintf(tw, "admin: metrics, health, pprof\thttp://%s/metrics\n", c.AdminAddr)
	fmt.Fprintf(tw, "operations API\thttp://%s/v1/ops/status  (dead letters, history; OpenAPI: /v1/ops/openapi.json; dev-operator-token)\n", c.AdminAddr)
	fmt.Fprintf(tw, "NATS (JetStream)\t%s  (store %s)\n", c.NATSURL, filepath.Join(c.DataDir, "nats"))
	fmt.Fprintf(tw, "PostgreSQL\t%s\n", redactURL(c.DatabaseURL))
	fmt.Fprintf(tw, "key service\tNATS %s\n", events.KeySubjectCustomers)
	fmt.Fprintf(tw, "projector\tthe serving versions of timeline, customer360, loyalty, churn and servicelevel (the _v1s until a rebuild switches), dedup\n")
	if ntf != nil {
		fmt.Fprintf(tw, "notify\tsignals to the webhooks of %s\n", f.webhooks)
	} else {
		fmt.Fprintf(tw, "notify\tnot started (no --webhooks): signals stay in %s (touchstream notify run delivers them)\n", def.SignalsConfig().Name)
	}
	fmt.Fprintf(tw, "clock\tclock.ticked to all %d partitions daily, midnight %s\n", def.Layout.Partitions, tiers.TimeZone)
	if sim != nil {
		fmt.Fprintf(tw, "simulator\t%s events/s over %s customers (seed %d)\n",
			strconv.FormatFloat(f.simulator.rate, 'f', -1, 64), strconv.Itoa(f.simulator.customers), f.simulator.seed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout)

	// Components stop together on Ctrl-C; the NATS server (deferred) stops after them,
	// so their drains can still reach it.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return keySvc.Run(gctx) })
	g.Go(func() error { return gw.Run(gctx) })
	g.Go(func() error { return followServing(gctx, f.projector, projDeps, servingPoll) })
	g.Go(func() error { return (&dedup.Pruner{Pool: pool, Horizon: f.projector.horizon, Log: log}).Run(gctx) })
	g.Go(func() error { return auditLog.Run(gctx) })
	g.Go(func() error { return qry.Run(gctx) })
	g.Go(func() error { return con.Run(gctx) })
	g.Go(func() error { return rdm.Run(gctx) })
	g.Go(func() error { return adm.Run(gctx) })
	fwd := outbox.Forwarder{Pool: pool, JS: projJS, Stream: def.SignalsConfig().Name, Registry: reg, Log: log.With("service", "signals")}
	g.Go(func() error { return fwd.Run(gctx) })
	g.Go(func() error { return ticker.Run(gctx) })
	if ntf != nil {
		g.Go(func() error { return ntf.Run(gctx) })
	}
	if sim != nil {
		g.Go(func() error { return sim.Run(gctx) })
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// simulatorFlags configure the simulator that `run` starts.
type simulatorFlags struct {
	rate      float64
	customers int
	seed      uint64
}

func (f *simulatorFlags) register(fs interface {
	Float64Var(*float64, string, float64, string)
	IntVar(*int, string, int, string)
	Uint64Var(*uint64, string, uint64, string)
}) {
	fs.Float64Var(&f.rate, "rate", 50, "simulator events per second (0: no simulator)")
	fs.IntVar(&f.customers, "customers", 2000, "simulated population")
	fs.Uint64Var(&f.seed, "seed", 42, "simulator seed (same seed, same customers and events)")
}

// build returns the simulator, or nil when the rate is zero. It sends through the
// gateway with the development API keys of deploy/simulator.json.
func (f *simulatorFlags) build(c *config.Common, gatewayURL string, log *slog.Logger, stdout io.Writer) (*simulate.Simulator, error) {
	if f.rate <= 0 {
		return nil, nil
	}
	params, err := simulate.LoadParams(c.DeployFile("simulator.json"))
	if err != nil {
		return nil, err
	}
	chs, err := gateway.LoadChannels(c.DeployFile("channels.json"))
	if err != nil {
		return nil, err
	}
	simChannels, err := simulatorChannels(chs, params.DevAPIKeys, "")
	if err != nil {
		return nil, err
	}
	return simulate.New(simulate.Config{
		Gateway: gatewayURL, Params: params, Channels: simChannels, Seed: f.seed, Customers: f.customers, Rate: f.rate,
		Progress: stdout, ProgressInterval: 15 * time.Second, Log: log,
	})
}

// redactURL drops the password from a URL for printing.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
