package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events/streams"

	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
)

// runKeys serves the key service standalone: data keys from PostgreSQL, answered over
// NATS request-reply. Before answering, it re-applies the erasures recorded in the log
// (deploy/streams.json says where the log is), so a key store restored from an older
// backup never serves an erased key.
func runKeys(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("keys", stdout)
	var c config.Common
	c.Register(fs, env)
	create := fs.Bool("create-master-key", false, "create the master key file if it does not exist (development only: back a production key up apart from the database)")
	var sc keystore.ServiceConfig
	fs.IntVar(&sc.Workers, "workers", 0, "requests served at once (default: the database pool's size)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if c.NATSURL == "" {
		return fmt.Errorf("%w: --nats-url (TOUCHSTREAM_NATS_URL) is required", errUsage)
	}
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	log := c.Logger().With("service", "keys")

	var kek *keystore.MasterKey
	var err error
	if *create {
		var created bool
		kek, created, err = keystore.LoadOrCreateMasterKey(c.MasterKeyFile())
		if created {
			log.Warn("created a new master key: back it up apart from the database", "file", c.MasterKeyFile(), "kek_id", kek.ID())
		}
	} else {
		kek, err = keystore.LoadMasterKey(c.MasterKeyFile())
	}
	if err != nil {
		return err
	}

	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil {
		return err
	}
	pool, err := pgsetup.Open(ctx, c.DatabaseURL, 0, false)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := keystore.Migrate(ctx, pool); err != nil {
		return err
	}
	store, err := keystore.Open(ctx, pool, kek)
	if err != nil {
		return err
	}

	nc, err := natsconn.Dial(natsconn.For(&c, "keys"), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	reg := newRegistry()
	svc, err := keystore.NewService(sc, keystore.ServiceDeps{Store: store, NC: nc, Log: log, Registry: reg,
		Erasures: &keystore.ErasureLog{JS: js, Layout: def.Layout}})
	if err != nil {
		return err
	}

	adm, err := admin.New(admin.Config{Addr: c.AdminAddr, Registry: reg, Checks: []admin.Check{natsCheck(nc), databaseCheck(pool)}}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "key service on %s (kek %s, admin %s)\n", nc.ConnectedUrlRedacted(), kek.ID(), c.AdminAddr)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	g.Go(func() error { return adm.Run(gctx) })
	err = g.Wait()
	// The service has drained: let its last replies reach the server before closing.
	_ = nc.FlushTimeout(2 * time.Second)
	return err
}
