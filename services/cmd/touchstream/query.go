package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/admin"
	"github.com/touchstream/touchstream/services/internal/audit"
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
	opsCreds string
	access   accessFlags
}

func (f *queryFlags) register(fs *flag.FlagSet, env config.Env) {
	fs.StringVar(&f.addr, "addr", config.String(env, "TOUCHSTREAM_QUERY_ADDR", query.DefaultAddr), "HTTP listen address of the query API (env TOUCHSTREAM_QUERY_ADDR)")
	fs.StringVar(&f.phoneKey, "phone-index-key-file", config.String(env, "TOUCHSTREAM_PHONE_INDEX_KEY_FILE", ""), "file with the secret of the phone search hash, the projector's (env TOUCHSTREAM_PHONE_INDEX_KEY_FILE); default <data-dir>/secrets/phone-index.key")
	fs.IntVar(&f.maxConns, "max-db-conns", 16, "most PostgreSQL connections")
	fs.StringVar(&f.opsCreds, "ops-nats-creds", config.String(env, "TOUCHSTREAM_OPS_NATS_CREDS", ""), "NATS credentials or seed file of the ops identity, for the operations API on the admin listener (stream status, dead-letter discards, erasures; env TOUCHSTREAM_OPS_NATS_CREDS); empty: the operations API shares the query identity, which a server enforcing identities refuses for those calls")
	f.access.register(fs, env, "")
}

// accessFlags are who may call the query API, the console's streams and the
// operations API (services/internal/access), and the access audit log's retention.
type accessFlags struct {
	file          string // static tokens
	oidc          access.OIDCConfig
	ticketKeyFile string
	auditKeep     time.Duration
}

// register adds the access flags; defaultFile is the static token file when neither
// flag nor environment names one ("" for none).
func (f *accessFlags) register(fs *flag.FlagSet, env config.Env, defaultFile string) {
	fs.StringVar(&f.file, "access-file", config.String(env, "TOUCHSTREAM_ACCESS_FILE", defaultFile), "static staff tokens, stored as SHA-256 hashes with staff ids and roles, like deploy/access.json (env TOUCHSTREAM_ACCESS_FILE)")
	fs.StringVar(&f.oidc.Issuer, "oidc-issuer", config.String(env, "TOUCHSTREAM_OIDC_ISSUER", ""), "identity provider whose JWT access tokens are accepted: the iss claim, exactly (env TOUCHSTREAM_OIDC_ISSUER)")
	fs.StringVar(&f.oidc.Audience, "oidc-audience", config.String(env, "TOUCHSTREAM_OIDC_AUDIENCE", ""), "the aud claim tokens for this API carry (env TOUCHSTREAM_OIDC_AUDIENCE)")
	fs.StringVar(&f.oidc.JWKSFile, "oidc-jwks-file", config.String(env, "TOUCHSTREAM_OIDC_JWKS_FILE", ""), "the provider's JSON Web Key Set, as a file (env TOUCHSTREAM_OIDC_JWKS_FILE)")
	fs.StringVar(&f.oidc.JWKSURL, "oidc-jwks-url", config.String(env, "TOUCHSTREAM_OIDC_JWKS_URL", ""), "the provider's jwks_uri, read again every 10 minutes and on an unknown kid (env TOUCHSTREAM_OIDC_JWKS_URL)")
	fs.StringVar(&f.oidc.RolesClaim, "oidc-roles-claim", config.String(env, "TOUCHSTREAM_OIDC_ROLES_CLAIM", access.DefaultRolesClaim), "claim path holding the roles, e.g. roles or realm_access.roles (env TOUCHSTREAM_OIDC_ROLES_CLAIM)")
	fs.StringVar(&f.oidc.StaffClaim, "oidc-staff-claim", config.String(env, "TOUCHSTREAM_OIDC_STAFF_CLAIM", access.DefaultStaffClaim), "claim holding the staff id, an account id (env TOUCHSTREAM_OIDC_STAFF_CLAIM)")
	fs.StringVar(&f.ticketKeyFile, "stream-ticket-key-file", config.String(env, "TOUCHSTREAM_STREAM_TICKET_KEY_FILE", ""), "secret signing the console's stream tickets, shared by every query instance behind one address (env TOUCHSTREAM_STREAM_TICKET_KEY_FILE); default a random key per process")
	fs.DurationVar(&f.auditKeep, "audit-retention", config.Duration(env, "TOUCHSTREAM_AUDIT_RETENTION", audit.DefaultRetention), "how long the access audit log keeps its records (env TOUCHSTREAM_AUDIT_RETENTION)")
}

// gate builds the token sources and the stream tickets: the static file, the identity
// provider, or both (static tokens first). At least one is required.
func (f *accessFlags) gate(ctx context.Context, log *slog.Logger) (*access.Gate, error) {
	var sources []access.Authenticator
	if f.file != "" {
		st, err := access.LoadStaticTokens(f.file)
		if err != nil {
			return nil, err
		}
		sources = append(sources, st)
	}
	if f.oidc.Issuer != "" || f.oidc.Audience != "" || f.oidc.JWKSFile != "" || f.oidc.JWKSURL != "" {
		cfg := f.oidc
		cfg.Log = log.With("component", "oidc")
		o, err := access.NewOIDC(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("%w: --oidc-*: %w", errUsage, err)
		}
		sources = append(sources, o)
	}
	if len(sources) == 0 {
		return nil, fmt.Errorf("%w: no token source: give --access-file (TOUCHSTREAM_ACCESS_FILE) or --oidc-issuer, --oidc-audience and --oidc-jwks-file or --oidc-jwks-url", errUsage)
	}
	key := access.RandomTicketKey()
	if f.ticketKeyFile != "" {
		var err error
		if key, err = secrets.Load(f.ticketKeyFile); err != nil {
			return nil, fmt.Errorf("stream ticket key: %w", err)
		}
	}
	tickets, err := access.NewTickets(key, 0)
	if err != nil {
		return nil, err
	}
	return &access.Gate{Tokens: access.Chain(sources...), Tickets: tickets}, nil
}

// auditLog migrates and builds the access audit log (run it beside the query API).
func (f *accessFlags) auditLog(ctx context.Context, pool *pgxpool.Pool, reg prometheus.Registerer, log *slog.Logger) (*audit.Log, error) {
	if err := audit.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	return audit.New(audit.Config{Retention: f.auditKeep}, pool, reg, log.With("component", "access_audit"))
}

// build returns the gate and the access audit log of a query service.
func (f *accessFlags) build(ctx context.Context, pool *pgxpool.Pool, reg prometheus.Registerer, log *slog.Logger) (*access.Gate, *audit.Log, error) {
	gate, err := f.gate(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	l, err := f.auditLog(ctx, pool, reg, log)
	if err != nil {
		return nil, nil, err
	}
	return gate, l, nil
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
	nc, err := natsconn.Dial(natsconn.For(&c, "query"), log)
	if err != nil {
		return err
	}
	defer nc.Close()

	reg := newRegistry()
	gate, auditLog, err := f.access.build(ctx, pool, reg, log)
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
	// The operations API acts as the ops identity (natsauth): the query identity may
	// neither read stream state nor write discards and erasures.
	opsNC, opsJS := nc, js
	if f.opsCreds != "" {
		opsCfg := natsconn.For(&c, "ops")
		opsCfg.Creds, opsCfg.Name = f.opsCreds, "touchstream-query-ops"
		if opsNC, err = natsconn.Dial(opsCfg, log); err != nil {
			return fmt.Errorf("the operations API's NATS connection (--ops-nats-creds): %w", err)
		}
		defer opsNC.Close()
		if opsJS, err = jetstream.New(opsNC); err != nil {
			return err
		}
	} else if c.NATSCreds != "" {
		log.Warn("the operations API shares the query identity: stream status, dead-letter discards and erasures will be refused by a server enforcing identities; give the query service --ops-nats-creds to serve them")
	}
	routes, closeOps, err := opsRoutes(ctx, &toolConn{pool: pool, nc: opsNC, js: opsJS, def: def, cat: cat, log: log},
		projectorDeps{pool: pool, tiers: tiers, keys: keys, phoneKey: phoneKey, loyalty: club, churn: churnRules}, gate.Authorize)
	if err != nil {
		return err
	}
	defer closeOps()
	con, conRoutes, err := buildConsole(pool, log, routes, gate)
	if err != nil {
		return err
	}
	srv, err := buildQuery(f, queryDeps{
		db: pool, keys: keys, layout: def.Layout,
		tiers: tiers, phoneKey: phoneKey, registry: reg, log: log, loyalty: club, commands: cmds, routes: conRoutes,
		gate: gate, audit: auditLog,
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
	g.Go(func() error { return auditLog.Run(gctx) })
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
	gate     *access.Gate            // who may call what
	audit    query.AuditLog          // the access audit log, running
	db       projections.Querier
	keys     events.KeySource
	layout   events.Layout
	tiers    valuetier.Config
	phoneKey []byte
	registry prometheus.Registerer
	log      *slog.Logger
}

// buildQuery assembles the query API over the serving versions of the read models,
// asking the gate who calls and recording reads of personal data in the audit log.
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
		DB: d.db, Keys: d.keys, Viewer: d.gate.Principal, Audit: d.audit, Tickets: d.gate.Tickets, Registry: d.registry, Log: d.log, Commands: d.commands,
	})
}

// buildConsole builds the web console and the routes the query server mounts for it:
// its assets (/console/), its live streams (/v1/stream/..., opened with a stream
// ticket or a bearer token), and the read-only operations it shows (status and dead
// letters, from the operations API whose mutations stay on the admin listener only;
// the operator role only).
func buildConsole(db projections.Querier, log *slog.Logger, opsR map[string]http.Handler, gate *access.Gate) (*console.Console, map[string]http.Handler, error) {
	con, err := console.New(console.Config{DB: db, Authorize: gate.Stream, Log: log.With("component", "console")})
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
