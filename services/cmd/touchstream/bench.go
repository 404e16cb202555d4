package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/servicelevel"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/bench"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/query"
	"github.com/touchstream/touchstream/services/internal/redeem"
	"github.com/touchstream/touchstream/services/internal/simulate"
)

// benchGate accepts the bench's token as staff "bench" with roles (none: agent), and
// issues stream tickets for the console's live streams.
func benchGate(token string, roles []access.Role) (*access.Gate, error) {
	if len(roles) == 0 {
		roles = []access.Role{access.Agent}
	}
	st, err := access.NewStaticTokens([]access.Staff{{ID: "bench", Roles: roles,
		Tokens: []access.Token{{ID: "bench", SHA256: access.HashToken(token)}}}})
	if err != nil {
		return nil, err
	}
	tickets, err := access.NewTickets(access.RandomTicketKey(), 0)
	if err != nil {
		return nil, err
	}
	return &access.Gate{Tokens: st, Tickets: tickets}, nil
}

// benchDatabaseURL is the bench's default PostgreSQL: the local cluster's maintenance
// database, from which it creates (and at the end drops) a database of its own.
const benchDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// runBench measures touchstream on this machine and prints tables beside the machine's
// raw limits (make bench). It brings its own embedded nats-server and database.
func runBench(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("bench", stdout)
	var c config.Common
	c.Register(fs, env)
	// The bench creates its own database from the maintenance database.
	if env("DATABASE_URL") == "" {
		c.DatabaseURL = benchDatabaseURL
		fs.Lookup("database-url").DefValue = benchDatabaseURL
	}
	var o bench.Options
	fs.StringVar(&o.Suite, "suite", "all", "suites to run, comma separated: "+strings.Join(bench.Suites, ", ")+", or all")
	fs.Uint64Var(&o.Seed, "seed", 42, "seed of the generated events: the same seed, the same events")
	fs.IntVar(&o.Customers, "customers", bench.DefaultCustomers, "customers of the projector's data set (also the query and e2e population; ingest uses at most 100,000)")
	fs.IntVar(&o.Events, "events", bench.DefaultEvents, "events of the projector's data set (ingest sends at most 200,000, and 100,000 with personal fields)")
	fs.StringVar(&o.PrivatePostgres, "private-postgres", "4GB", "shared_buffers of a private, tuned PostgreSQL cluster made with initdb for the run (\"\": use --database-url's cluster as it is)")
	fs.IntVar(&o.ChurnCustomers, "churn-customers", bench.DefaultChurnPop, "churn suite: the simulator's customers")
	fs.IntVar(&o.ChurnDays, "churn-days", bench.DefaultChurnDays, "churn suite: days of history from 1 January (at least 70; January's snapshots are trained on)")
	fs.StringVar(&o.CPUProfileDir, "cpuprofile-dir", "", "write CPU profiles of the ingest runs, the projector catch-up and the rebuild here (go tool pprof -top FILE)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil {
		return err
	}
	if o.Channels, err = gateway.LoadChannels(c.DeployFile("channels.json")); err != nil {
		return err
	}
	tiers, err := valuetier.Load(c.DeployFile("tiers.json"))
	if err != nil {
		return err
	}
	club, err := loadLoyaltyRules(&c)
	if err != nil {
		return err
	}
	churnRules, err := loadChurnRules(&c)
	if err != nil {
		return err
	}
	if o.Simulator, err = simulate.LoadParams(c.DeployFile("simulator.json")); err != nil {
		return err
	}
	o.ChurnRules = churnRules
	o.Streams, o.AdminURL = def, c.DatabaseURL
	if err := o.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	log := c.Logger().With("command", "bench")
	return bench.Run(ctx, o, bench.Deps{
		Projector: func(d bench.ProjectorDeps) (*projections.Runner, error) {
			f := projectorFlags{batch: 1000, linger: 5 * time.Millisecond, leaseTTL: 5 * time.Second, instance: "bench"}
			return buildProjector(f, projectorDeps{pool: d.Pool, nc: d.NC, js: d.JS, layout: d.Layout, cat: d.Catalog, tiers: tiers,
				phoneKey: d.PhoneKey, keys: d.Keys, registry: d.Registry, log: d.Log}, nil)
		},
		Redeem: func(ctx context.Context, pool *pgxpool.Pool, nc *nats.Conn, log *slog.Logger) (http.Handler, func(), error) {
			if err := redeem.Migrate(ctx, pool); err != nil {
				return nil, nil, err
			}
			srv, pub, err := buildRedeem(ctx, redeemFlags{addr: "127.0.0.1:0"}, redeemDeps{pool: pool, nc: nc, layout: def.Layout,
				registry: prometheus.NewRegistry(), log: log})
			if err != nil {
				return nil, nil, err
			}
			return srv.Handler(), func() { _ = pub.Close() }, nil
		},
		Loyalty: func(target, pin string) (projections.Projection, error) {
			return newLoyalty(target, pin, projectorDeps{loyalty: club})
		},
		Churn: func(target string) (projections.Projection, error) {
			return newChurn(target, "", projectorDeps{churn: churnRules, tiers: tiers})
		},
		Customer360: func(d bench.ProjectorDeps, target string) (projections.Projection, error) {
			return newCustomer360(target, projectorDeps{tiers: tiers, keys: d.Keys, phoneKey: d.PhoneKey})
		},
		Query: func(d bench.QueryDeps) (*query.Server, error) {
			gate, err := benchGate(d.Token, d.Roles)
			if err != nil {
				return nil, err
			}
			return buildQuery(queryFlags{addr: "127.0.0.1:0"}, queryDeps{db: d.DB, keys: d.Keys, layout: d.Layout, tiers: tiers,
				phoneKey: d.PhoneKey, registry: prometheus.NewRegistry(), log: d.Log, gate: gate, audit: d.Audit})
		},
		// As runQuery assembles the query service.
		Console: func(ctx context.Context, d bench.ConsoleDeps) (*query.Server, func(context.Context) error, func(), error) {
			gate, err := benchGate(d.Token, d.Roles)
			if err != nil {
				return nil, nil, nil, err
			}
			cmds, err := newCommandPublisher(ctx, d.NC, d.Layout)
			if err != nil {
				return nil, nil, nil, err
			}
			routes, closeOps, err := opsRoutes(ctx, &toolConn{pool: d.DB, nc: d.NC, js: d.JS, def: def, cat: d.Catalog, log: d.Log},
				projectorDeps{pool: d.DB, tiers: tiers, keys: d.Keys, phoneKey: d.PhoneKey, loyalty: club, churn: churnRules}, gate.Authorize)
			if err != nil {
				_ = cmds.Close()
				return nil, nil, nil, err
			}
			release := func() { closeOps(); _ = cmds.Close() }
			con, conRoutes, err := buildConsole(d.DB, d.Log, routes, gate)
			if err != nil {
				release()
				return nil, nil, nil, err
			}
			srv, err := buildQuery(queryFlags{addr: "127.0.0.1:0"}, queryDeps{db: d.DB, keys: d.Keys, layout: d.Layout, tiers: tiers,
				phoneKey: d.PhoneKey, registry: prometheus.NewRegistry(), log: d.Log, loyalty: club, commands: cmds, routes: conRoutes,
				gate: gate, audit: d.Audit})
			if err != nil {
				release()
				return nil, nil, nil, err
			}
			return srv, con.Run, release, nil
		},
		ServiceLevel: func(target string) (projections.Projection, error) {
			p, err := servicelevel.New(servicelevel.Options{Target: target})
			if err != nil {
				return nil, err
			}
			return p, nil
		},
		Stdout: stdout,
		Log:    log,
	})
}
