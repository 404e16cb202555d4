package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/natsconn"
)

// runGateway runs the ingest gateway: the HTTP and NATS request-reply doors of the
// channel systems, and the admin listener.
func runGateway(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("gateway", stdout)
	var c config.Common
	c.Register(fs, env)
	var cfg gateway.Config
	fs.StringVar(&cfg.Addr, "addr", config.String(env, "TOUCHSTREAM_GATEWAY_ADDR", gateway.DefaultAddr), "HTTP listen address of the gateway (env TOUCHSTREAM_GATEWAY_ADDR)")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", gateway.DefaultMaxBodyBytes, "largest request body accepted")
	fs.IntVar(&cfg.MaxBatch, "max-batch", gateway.DefaultMaxBatch, "most events in one request")
	fs.IntVar(&cfg.MaxInFlight, "max-in-flight", gateway.DefaultMaxInFlight, "events processed at once before answering 503")
	fs.DurationVar(&cfg.AckTimeout, "ack-timeout", config.Duration(env, "TOUCHSTREAM_GATEWAY_ACK_TIMEOUT", gateway.DefaultAckTimeout), "wait for the stream's acknowledgement before answering unknown (env TOUCHSTREAM_GATEWAY_ACK_TIMEOUT)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", gateway.DefaultShutdownTimeout, "bound on draining at shutdown")
	channelsFile := fs.String("channels", "", "channel definitions (default <deploy-dir>/channels.json)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if c.NATSURL == "" {
		return fmt.Errorf("%w: --nats-url (TOUCHSTREAM_NATS_URL) is required", errUsage)
	}
	if *channelsFile == "" {
		*channelsFile = c.DeployFile("channels.json")
	}
	log := c.Logger().With("service", "gateway")

	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil {
		return err
	}
	if cfg.Channels, err = gateway.LoadChannels(*channelsFile); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}

	nc, err := natsconn.Dial(natsconn.For(&c, "gateway"), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	changes, err := streams.Apply(actx, js, def)
	cancel()
	if err != nil {
		return fmt.Errorf("apply streams (with its own NATS identity the gateway only checks them: provision the log first with touchstream streams apply): %w", err)
	}
	for _, ch := range changes {
		log.Info("stream", "stream", ch.Stream, "action", ch.Action)
	}

	// The idempotency index is an aid, not a dependency: the gateway starts and keeps
	// accepting when PostgreSQL is down, answering duplicates from the stream's window.
	pool, err := pgxpool.New(ctx, c.DatabaseURL)
	if err != nil {
		return fmt.Errorf("%w: --database-url: %w", errUsage, err)
	}
	defer pool.Close()
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := dedup.Migrate(mctx, pool); err != nil {
		log.Warn("idempotency index not migrated: lookups will fail and be skipped until it exists", "error", err)
	}
	cancel()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	keys := events.NewKeyClient(nc, events.KeyClientConfig{})
	gw, err := gateway.New(cfg, gateway.Deps{
		NATS: nc, Layout: def.Layout, Keys: keys, Dedup: pool, Registry: reg, Log: log,
	})
	if err != nil {
		return err
	}
	adm, err := admin.New(admin.Config{Addr: c.AdminAddr, Registry: reg, Checks: []admin.Check{
		{Name: "nats", Run: func(context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		}},
		{Name: "stream", Run: func(ctx context.Context) error {
			for _, s := range def.Layout.Streams {
				if _, err := js.Stream(ctx, s.Name); err != nil {
					return fmt.Errorf("%s: %w", s.Name, err)
				}
			}
			return nil
		}},
	}}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "gateway listening on %s (admin %s)\n", cfg.Addr, c.AdminAddr)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gw.Run(gctx) })
	g.Go(func() error { return adm.Run(gctx) })
	return g.Wait()
}
