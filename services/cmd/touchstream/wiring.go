package main

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/touchstream/touchstream/services/internal/admin"
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
