package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/loyalty"
	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
	"github.com/touchstream/touchstream/services/internal/redeem"
)

// redeemFlags are the redemption API's own settings.
type redeemFlags struct {
	addr       string
	maxConns   int
	ackTimeout time.Duration
}

func (f *redeemFlags) register(fs interface {
	IntVar(*int, string, int, string)
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}, env config.Env) {
	fs.StringVar(&f.addr, "addr", config.String(env, "TOUCHSTREAM_REDEEM_ADDR", redeem.DefaultAddr), "HTTP listen address of the redemption API (env TOUCHSTREAM_REDEEM_ADDR)")
	fs.IntVar(&f.maxConns, "max-db-conns", 16, "most PostgreSQL connections (each redemption holds one while it waits for its member's lock)")
	fs.DurationVar(&f.ackTimeout, "ack-timeout", 3*time.Second, "how long to wait for the log's acknowledgement of one event before publishing it again (same id)")
}

// runRedeem serves the loyalty redemption API (the only producer of points.redeemed)
// and the admin listener.
func runRedeem(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("redeem", stdout)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: touchstream redeem [flags]

Serves the loyalty redemption API: POST /v1/loyalty/members/{customer_id}/redemptions,
GET /v1/loyalty/redemptions/{id}, POST /v1/loyalty/redemptions/{id}/reversal; the
OpenAPI document at /v1/loyalty/openapi.json. Balances are read from the serving
version of the loyalty read model; reservations live in the redeem schema (created at
start). It publishes points.redeemed and event.retracted to the log as
`+redeem.Source+`.

Flags:`)
		fs.PrintDefaults()
	}
	var c config.Common
	c.Register(fs, env)
	var f redeemFlags
	f.register(fs, env)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if c.NATSURL == "" {
		return fmt.Errorf("%w: --nats-url (TOUCHSTREAM_NATS_URL) is required: redemptions are published to the log", errUsage)
	}
	if f.maxConns < 2 {
		return fmt.Errorf("%w: --max-db-conns %d: at least 2 required", errUsage, f.maxConns)
	}
	if f.ackTimeout <= 0 {
		return fmt.Errorf("%w: --ack-timeout %s: must be positive", errUsage, f.ackTimeout)
	}
	log := c.Logger().With("service", "redeem")

	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil {
		return err
	}
	pool, err := pgsetup.Open(ctx, c.DatabaseURL, int32(f.maxConns), false)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := redeem.Migrate(ctx, pool); err != nil {
		return err
	}
	nc, err := natsconn.Dial(natsconn.For(&c, "redeem"), log)
	if err != nil {
		return err
	}
	defer nc.Close()

	reg := newRegistry()
	srv, pub, err := buildRedeem(ctx, f, redeemDeps{pool: pool, nc: nc, layout: def.Layout, registry: reg, log: log})
	if err != nil {
		return err
	}
	defer pub.Close()
	adm, err := admin.New(admin.Config{Addr: c.AdminAddr, Registry: reg, Checks: []admin.Check{natsCheck(nc), databaseCheck(pool)}}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "redemption API listening on %s (admin %s)\n", f.addr, c.AdminAddr)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return adm.Run(gctx) })
	return g.Wait()
}

// redeemDeps are what the redemption API is built from.
type redeemDeps struct {
	pool     *pgxpool.Pool
	nc       *nats.Conn
	layout   events.Layout
	registry prometheus.Registerer
	log      *slog.Logger
}

// buildRedeem assembles the redemption API over the serving version of the loyalty
// read model, with its own publisher (source redeem.Source), which the caller closes.
// The reservations table must exist (redeem.Migrate).
func buildRedeem(ctx context.Context, f redeemFlags, d redeemDeps) (*redeem.Server, *events.Publisher, error) {
	ack := f.ackTimeout
	if ack <= 0 {
		ack = 3 * time.Second
	}
	pub, err := events.NewPublisher(ctx, d.nc, events.WithLayout(d.layout), events.WithSource(redeem.Source), events.WithAckTimeout(ack))
	if err != nil {
		return nil, nil, err
	}
	srv, err := redeem.New(redeem.Config{Addr: f.addr, LoyaltyTarget: redeem.DefaultLoyaltyTarget, FollowServing: true},
		redeem.Deps{Pool: d.pool, Publisher: pub, Balance: loyalty.Available, Registry: d.registry, Log: d.log})
	if err != nil {
		_ = pub.Close()
		return nil, nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return srv, pub, nil
}
