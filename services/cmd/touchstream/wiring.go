package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/erase"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/services/internal/ops"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
)

// newRegistry is a process's metrics registry, with the Go runtime and process
// collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func natsCheck(nc *nats.Conn) admin.Check {
	return admin.Check{Name: "nats", Run: func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	}}
}

func databaseCheck(pool *pgxpool.Pool) admin.Check {
	return admin.Check{Name: "database", Run: func(ctx context.Context) error { return pool.Ping(ctx) }}
}

// toolConn is what a one-shot operations command (status, dlq, history, rebuild,
// replay, verify) connects to: PostgreSQL, NATS with JetStream, the log's layout and
// the event catalog.
type toolConn struct {
	pool *pgxpool.Pool
	nc   *nats.Conn
	js   jetstream.JetStream
	def  streams.Definition
	cat  *events.Catalog
	log  *slog.Logger
	// privacy is deploy/privacy.json for the operations API's erasures (zero: the
	// default key cache lifetime).
	privacy erase.Privacy
}

// connectTool validates the common settings and connects as touchstream-<name>.
func connectTool(ctx context.Context, c *config.Common, name string, maxConns int32) (*toolConn, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if c.NATSURL == "" {
		return nil, fmt.Errorf("%w: --nats-url (TOUCHSTREAM_NATS_URL) is required", errUsage)
	}
	t := &toolConn{log: c.Logger().With("service", name)}
	var err error
	if t.def, err = streams.Load(c.DeployFile("streams.json")); err != nil {
		return nil, err
	}
	if t.cat, err = events.DefaultCatalog(); err != nil {
		return nil, err
	}
	if t.pool, err = pgsetup.Open(ctx, c.DatabaseURL, maxConns, false); err != nil {
		return nil, err
	}
	if t.nc, err = natsconn.Dial(natsconn.For(c, name), t.log); err != nil {
		t.close()
		return nil, err
	}
	if t.js, err = jetstream.New(t.nc); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (t *toolConn) close() {
	if t.nc != nil {
		t.nc.Close()
	}
	if t.pool != nil {
		t.pool.Close()
	}
}

// opsRoutes builds the operations API (status, dead letters, history) for an admin
// listener: it is for operators, so it is served there, not beside the
// customer-facing APIs (ADR 16). d builds the projections a dead letter is redriven
// into; authorize asks who calls (the operator role). The returned func closes its
// publisher (discards are events).
func opsRoutes(ctx context.Context, tc *toolConn, d projectorDeps, authorize ops.Authorizer) (map[string]http.Handler, func(), error) {
	pub, err := events.NewPublisher(ctx, tc.nc, events.WithLayout(tc.def.Layout), events.WithSource(ops.Source), events.WithCatalog(tc.cat))
	if err != nil {
		return nil, nil, err
	}
	resolve := func(target string) (projections.Projection, error) { return resolveTarget(target, d) }
	var forget func(string)
	if kc, ok := d.keys.(*events.KeyClient); ok {
		forget = kc.Forget
	}
	er, err := erase.New(ctx, erase.Config{Privacy: tc.privacy}, erase.Deps{Pool: tc.pool, Publisher: pub, Layout: tc.def.Layout,
		Keys: &keystore.EraseClient{NC: tc.nc}, Resolve: resolve, Forget: forget, Log: tc.log.With("service", "erase")})
	if err != nil {
		_ = pub.Close()
		return nil, nil, err
	}
	svc, err := ops.New(ops.Deps{Pool: tc.pool, JS: tc.js, Layout: tc.def.Layout, Catalog: tc.cat, Publisher: pub, Eraser: er,
		Log: tc.log.With("service", "ops"), Resolve: resolve})
	if err != nil {
		_ = pub.Close()
		return nil, nil, err
	}
	return map[string]http.Handler{"/v1/ops/": ops.NewHandler(svc, ops.HandlerConfig{Authorize: authorize})}, func() { _ = pub.Close() }, nil
}
