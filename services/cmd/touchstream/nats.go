package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/embedded"
)

func runNATS(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("nats", stdout)
	var c config.Common
	c.Register(fs, env)
	port := fs.Int("port", 4333, "client port")
	host := fs.String("host", "127.0.0.1", "listen address")
	conf := fs.String("config", "", "nats-server configuration file applied first (accounts, TLS, cluster)")
	if err := parse(fs, args); err != nil {
		return err
	}
	log := c.Logger()
	s, err := embedded.Start(embedded.Config{Host: *host, Port: *port, StoreDir: filepath.Join(c.DataDir, "nats"), ConfigFile: *conf}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "nats-server listening on %s (store %s)\n", s.URL(), filepath.Join(c.DataDir, "nats"))
	return s.Run(ctx)
}
