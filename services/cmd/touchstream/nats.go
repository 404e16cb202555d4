package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/embedded"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/natsauth"
	"github.com/touchstream/touchstream/services/internal/natsconn"
)

// runNATS runs the embedded nats-server alone, or (`nats accounts`) prints the
// production accounts configuration rendered from the identity table.
func runNATS(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "accounts" {
		return runNATSAccounts(args[1:], env, stdout)
	}
	fs := newFlags("nats", stdout)
	var c config.Common
	c.Register(fs, env)
	var tls config.NATSServerTLS
	tls.Register(fs, env)
	port := fs.Int("port", 4333, "client port")
	host := fs.String("host", "127.0.0.1", "listen address")
	conf := fs.String("config", "", "nats-server configuration file applied first (accounts, TLS, cluster)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := tls.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	log := c.Logger()
	s, err := embedded.Start(embedded.Config{Host: *host, Port: *port, StoreDir: filepath.Join(c.DataDir, "nats"), ConfigFile: *conf, TLS: tls}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "nats-server listening on %s (store %s)\n", s.URL(), filepath.Join(c.DataDir, "nats"))
	return s.Run(ctx)
}

// runNATSAccounts prints deploy/nats/accounts.conf as the identity table of the
// deploy directory's channels and streams renders it.
func runNATSAccounts(args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("nats accounts", stdout)
	var c config.Common
	c.Register(fs, env)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: nats accounts takes no arguments (redirect its output: > deploy/nats/accounts.conf)", errUsage)
	}
	tab, err := identityTable(&c)
	if err != nil {
		return err
	}
	return tab.Render(stdout)
}

// identityTable is the NATS identity table of the deploy directory.
func identityTable(c *config.Common) (natsauth.Table, error) {
	channels, err := gateway.LoadChannels(c.DeployFile("channels.json"))
	if err != nil {
		return natsauth.Table{}, err
	}
	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil {
		return natsauth.Table{}, err
	}
	return natsauth.Build(channels, def)
}

// runConns are the NATS connections of `run`: on the embedded server, one per service
// identity, each with its own nkey seed (created under <data-dir>/secrets/nats on
// first start, mode 0600) and its own inbox prefix, so that every in-process service
// has exactly the permissions it has in production; on an external server (--nats-url),
// one connection with --nats-creds shared by all.
type runConns struct {
	cfg    natsconn.Config
	seeds  map[string]natsauth.Seed // nil: external server
	log    *slog.Logger
	opened map[string]*nats.Conn
}

// startRunNATS starts the embedded server with the identity table of the deploy
// directory (unless c names an external server) and returns the connections to it.
// The server, when started, is returned to be shut down last.
func startRunNATS(c *config.Common, port int, tls config.NATSServerTLS, log *slog.Logger) (*runConns, *embedded.Server, error) {
	rc := &runConns{cfg: natsconn.Config{URL: c.NATSURL, Creds: c.NATSCreds, TLS: c.NATSTLS}, log: log, opened: map[string]*nats.Conn{}}
	if c.NATSURL != "" {
		return rc, nil, nil
	}
	tab, err := identityTable(c)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, 0, len(tab.Identities))
	for _, id := range tab.Identities {
		names = append(names, id.Name)
	}
	if rc.seeds, err = natsauth.LoadOrCreateSeeds(c.SecretFile("nats"), names); err != nil {
		return nil, nil, err
	}
	pubs := make(map[string]string, len(rc.seeds))
	for _, id := range tab.Identities {
		pubs[id.Name] = rc.seeds[id.Name].Public
		if id.Nkey != "" {
			pubs[id.Name] = id.Nkey // the channel system holds its seed
		}
	}
	srv, err := embedded.Start(embedded.Config{Port: port, StoreDir: filepath.Join(c.DataDir, "nats"), Users: tab.Users(pubs), TLS: tls},
		log.With("service", "nats"))
	if err != nil {
		return nil, nil, err
	}
	rc.cfg.URL = srv.URL()
	log.Info("nats identities", "identities", len(names), "seeds", c.SecretFile("nats"))
	return rc, srv, nil
}

// conn is the connection of one service identity (natsauth.Gateway, ...).
func (rc *runConns) conn(identity string) (*nats.Conn, jetstream.JetStream, error) {
	key := identity
	if rc.seeds == nil {
		key = "" // external: one connection for all
	}
	nc := rc.opened[key]
	if nc == nil {
		cfg := rc.cfg
		cfg.Name = "touchstream-run"
		if rc.seeds != nil {
			cfg.Name, cfg.Identity, cfg.Creds = "touchstream-run-"+identity, identity, rc.seeds[identity].Path
		}
		var err error
		if nc, err = natsconn.Dial(cfg, rc.log); err != nil {
			return nil, nil, err
		}
		rc.opened[key] = nc
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, fmt.Errorf("jetstream as %s: %w", identity, err)
	}
	return nc, js, nil
}

// close flushes and closes every connection.
func (rc *runConns) close() error {
	var errs []error
	for name, nc := range rc.opened {
		if err := nc.FlushTimeout(2 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("flush %s: %w", name, err))
		}
		nc.Close()
	}
	return errors.Join(errs...)
}
