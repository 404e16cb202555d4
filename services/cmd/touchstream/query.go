package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/console"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
	"github.com/touchstream/touchstream/services/internal/query"
	"github.com/touchstream/touchstream/services/internal/secrets"
)

// queryFlags are the query API's own settings.
type queryFlags struct {
	addr     string
	phoneKey string
	maxConns int
}

func (f *queryFlags) register(fs interface {
	IntVar(*int, string, int, string)
	StringVar(*string, string, string, string)
}, env config.Env) {
	fs.StringVar(&f.addr, "addr", config.String(env, "TOUCHSTREAM_QUERY_ADDR", query.DefaultAddr), "HTTP listen address of the query API (env TOUCHSTREAM_QUERY_ADDR)")
	fs.StringVar(&f.phoneKey, "phone-index-key-file", config.String(env, "TOUCHSTREAM_PHONE_INDEX_KEY_FILE", ""), "file with the secret of the phone search hash, the projector's (env TOUCHSTREAM_PHONE_INDEX_KEY_FILE); default <data-dir>/secrets/phone-index.key")
	fs.IntVar(&f.maxConns, "max-db-conns", 16, "most PostgreSQL connections")
}

// runQuery serves the query API (customer 360, timeline, search) and the admin
// listener.
func runQuery(ctx context.Context, args []string, env config.Env, stdout io.Writer) error {
	fs := newFlags("query", stdout)
	var c config.Common
	c.Register(fs, env)
	var f queryFlags
	f.register(fs, env)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if c.NATSURL == "" {
		return fmt.Errorf("%w: --nats-url (TOUCHSTREAM_NATS_URL) is required: personal fields are opened with keys from the key service", errUsage)
	}
	log := c.Logger().With("service", "query")

	def, err := streams.Load(c.DeployFile("streams.json"))
	if err != nil {
		return err
	}
	tiers, err := valuetier.Load(c.DeployFile("tiers.json"))
	if err != nil {
		return err
	}
	phoneKey, err := loadPhoneKey(&c, f.phoneKey, false)
	if err != nil {
		return err
	}

	pool, err := pgsetup.Open(ctx, c.DatabaseURL, int32(f.maxConns), false)
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, err := natsconn.Connect(c.NATSURL, c.NATSCreds, "touchstream-query", log)
	if err != nil {
		return err
	}
	defer nc.Close()

	reg := newRegistry()
	club, err := loadLoyaltyRules(&c)
	if err != nil {
		return err
	}
	churnRules, err := loadChurnRules(&c)
	if err != nil {
		return err
	}
	cmds, err := newCommandPublisher(ctx, nc, def.Layout)
	if err != nil {
		return err
	}
	defer cmds.Close()
	keys := events.NewKeyClient(nc, events.KeyClientConfig{})
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cat, err := events.DefaultCatalog()
	if err != nil {
		return err
	}
	routes, closeOps, err := opsRoutes(ctx, &toolConn{pool: pool, nc: nc, js: js, def: def, cat: cat, log: log},
		projectorDeps{pool: pool, tiers: tiers, keys: keys, phoneKey: phoneKey, loyalty: club, churn: churnRules})
	if err != nil {
		return err
	}
	defer closeOps()
	con, conRoutes, err := buildConsole(pool, log, routes)
	if err != nil {
		return err
	}
	srv, err := buildQuery(f, queryDeps{
		db: pool, keys: keys, layout: def.Layout,
		tiers: tiers, phoneKey: phoneKey, registry: reg, log: log, loyalty: club, commands: cmds, routes: conRoutes,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	adm, err := admin.New(admin.Config{Addr: c.AdminAddr, Registry: reg, Checks: []admin.Check{databaseCheck(pool), natsCheck(nc)}, Routes: routes}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "query API listening on %s (admin and operations API %s)\n", f.addr, c.AdminAddr)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return con.Run(gctx) })
	g.Go(func() error { return adm.Run(gctx) })
	return g.Wait()
}

// queryDeps are what the query API is built from.
type queryDeps struct {
	loyalty  *ledger.RuleSet         // nil: no loyalty routes
	commands *events.Publisher       // the console's command service; nil: the desk's POST routes answer 503
	routes   map[string]http.Handler // mounted beside the API: the console (buildConsole)
	db       projections.Querier
	keys     events.KeySource
	layout   events.Layout
	tiers    valuetier.Config
	phoneKey []byte
	registry prometheus.Registerer
	log      *slog.Logger
}

// buildQuery assembles the query API over the serving versions of the read models.
// Every viewer sees personal fields masked until roles arrive (query.MaskedForEveryone).
func buildQuery(f queryFlags, d queryDeps) (*query.Server, error) {
	return query.New(query.Config{
		Addr:              f.addr,
		Customer360Target: customer360Target,
		TimelineTarget:    timelineTarget,
		FollowServing:     true,
		Layout:            d.layout,
		PhoneKey:          d.phoneKey,
		Tiers:             d.tiers.Names(),
		LoyaltyRules:      d.loyalty,
		Routes:            d.routes,
	}, query.Deps{
		DB: d.db, Keys: d.keys, Viewer: query.MaskedForEveryone, Registry: d.registry, Log: d.log, Commands: d.commands,
	})
}

// buildConsole builds the web console and the routes the query server mounts for it:
// its assets (/console/), its live streams (/v1/stream/...), and the read-only
// operations it shows (status and dead letters, from the operations API whose
// mutations stay on the admin listener only).
func buildConsole(db projections.Querier, log *slog.Logger, opsR map[string]http.Handler) (*console.Console, map[string]http.Handler, error) {
	con, err := console.New(console.Config{DB: db, Log: log.With("component", "console")})
	if err != nil {
		return nil, nil, err
	}
	routes := con.Routes()
	if h := opsR["/v1/ops/"]; h != nil {
		for _, p := range []string{"GET /v1/ops/status", "GET /v1/ops/dead-letters"} {
			routes[p] = h
		}
	}
	return con, routes, nil
}

// newCommandPublisher is the console's command service: the retention desk's actions
// on churn alerts enter the log through it (the query API's POST routes).
func newCommandPublisher(ctx context.Context, nc *nats.Conn, layout events.Layout) (*events.Publisher, error) {
	return events.NewPublisher(ctx, nc, events.WithLayout(layout), events.WithSource(query.DefaultCommandSource))
}

// loadPhoneKey reads the secret of the phone search hash: the file named, or the
// default in the data directory. The standalone service only reads it (it is the
// projector's, provisioned); create, for the embedded default (`run`), creates the
// default file when missing, as the projector then does, so both share it.
func loadPhoneKey(c *config.Common, path string, create bool) ([]byte, error) {
	if path == "" {
		path = c.SecretFile("phone-index.key")
	}
	var key []byte
	var err error
	if create {
		key, _, err = secrets.LoadOrCreate(path)
	} else {
		key, err = secrets.Load(path)
	}
	if err != nil {
		return nil, fmt.Errorf("phone index key: %w (provision 32 random bytes in base64, mode 0600: head -c 32 /dev/urandom | base64 > FILE; the projector and the query API share it)", err)
	}
	return key, nil
}
