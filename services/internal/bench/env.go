package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/embedded"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/services/internal/pgcluster"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
)

// env is what every suite runs against, private to one run: an embedded nats-server
// with its store in a temporary directory, a fresh database, the key service, the
// log's stream definition and the bench's own connections.
type env struct {
	log      *slog.Logger
	dir      string
	nats     *embedded.Server
	adminURL string
	dbName   string
	dbURL    string
	pool     *pgxpool.Pool // the bench's own: raw PostgreSQL measurements, counts
	nc       *nats.Conn    // the bench's own: raw publishing and fetching
	js       jetstream.JetStream
	def      streams.Definition
	layout   events.Layout
	cat      *events.Catalog
	phoneKey []byte

	cluster *pgcluster.Cluster // private PostgreSQL, when the options ask for one

	keysPool *pgxpool.Pool
	keysNC   *nats.Conn
	keysStop context.CancelFunc
	keysDone chan error

	pgVersion, syncCommit, fsync, sharedBuffers string
}

// newEnv starts everything. On error, what was started is stopped again.
func newEnv(ctx context.Context, o Options, log *slog.Logger) (e *env, err error) {
	e = &env{log: log, adminURL: o.AdminURL, def: o.Streams, layout: o.Streams.Layout}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.cat, err = events.DefaultCatalog(); err != nil {
		return nil, err
	}
	if e.dir, err = os.MkdirTemp("", "touchstream-bench-"); err != nil {
		return nil, fmt.Errorf("bench: temp dir: %w", err)
	}
	// Port -1: a random free port (never 4222, never the development default 4333).
	if e.nats, err = embedded.Start(embedded.Config{Port: -1, StoreDir: filepath.Join(e.dir, "nats"), Name: "touchstream-bench"}, log); err != nil {
		return nil, err
	}
	if o.PrivatePostgres != "" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		log.Info("creating a private PostgreSQL cluster", "shared_buffers", o.PrivatePostgres, "port", port)
		if e.cluster, err = pgcluster.Create(ctx, filepath.Join(e.dir, "pg"), port, pgcluster.Tuned(o.PrivatePostgres)); err != nil {
			return nil, err
		}
		if err := e.cluster.Start(ctx); err != nil {
			return nil, err
		}
		e.adminURL = e.cluster.URL("postgres")
	}
	if err := e.createDatabase(ctx); err != nil {
		return nil, err
	}
	if e.pool, err = pgsetup.Open(ctx, e.dbURL, 8, false); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		dst *string
		sql string
	}{{&e.pgVersion, "SHOW server_version"}, {&e.syncCommit, "SHOW synchronous_commit"}, {&e.fsync, "SHOW fsync"}, {&e.sharedBuffers, "SHOW shared_buffers"}} {
		if err := e.pool.QueryRow(ctx, s.sql).Scan(s.dst); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", s.sql, err)
		}
	}
	if e.nc, err = e.connect("touchstream-bench"); err != nil {
		return nil, err
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		return nil, fmt.Errorf("bench: jetstream: %w", err)
	}
	e.phoneKey = make([]byte, 32)
	_, _ = rand.Read(e.phoneKey)
	if err := e.startKeyService(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// createDatabase creates a fresh database through the maintenance database, as
// testkit.Database does for tests; close drops it.
func (e *env) createDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, e.adminURL)
	if err != nil {
		return fmt.Errorf("bench: postgres at %s: %w (start it with `make postgres`, or set --database-url)", redact(e.adminURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "tsbench_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("bench: create database %s: %w", name, err)
	}
	e.dbName = name
	u, err := url.Parse(e.adminURL)
	if err != nil {
		return fmt.Errorf("bench: database url: %w", err)
	}
	u.Path = "/" + name
	e.dbURL = u.String()
	e.log.Info("database created", "database", name)
	return nil
}

// startKeyService runs the real key service: its store in the bench database, a
// throwaway master key, answering over NATS.
func (e *env) startKeyService(ctx context.Context) error {
	kek, _, err := keystore.LoadOrCreateMasterKey(filepath.Join(e.dir, "secrets", "master.key"))
	if err != nil {
		return err
	}
	if e.keysPool, err = pgsetup.Open(ctx, e.dbURL, 0, false); err != nil {
		return err
	}
	if err := keystore.Migrate(ctx, e.keysPool); err != nil {
		return err
	}
	store, err := keystore.Open(ctx, e.keysPool, kek)
	if err != nil {
		return err
	}
	if e.keysNC, err = e.connect("touchstream-bench-keys"); err != nil {
		return err
	}
	svc, err := keystore.NewService(keystore.ServiceConfig{}, keystore.ServiceDeps{Store: store, NC: e.keysNC, Log: e.log.With("service", "keys")})
	if err != nil {
		return err
	}
	kctx, cancel := context.WithCancel(context.Background())
	e.keysStop, e.keysDone = cancel, make(chan error, 1)
	go func() { e.keysDone <- svc.Run(kctx) }()
	return nil
}

// connect opens a NATS connection to the embedded server as the named process.
func (e *env) connect(name string) (*nats.Conn, error) {
	return natsconn.Connect(e.nats.URL(), "", name, e.log)
}

// newPool opens a pool on the bench database, as a separate service would.
func (e *env) newPool(ctx context.Context, maxConns int32) (*pgxpool.Pool, error) {
	return pgsetup.Open(ctx, e.dbURL, maxConns, false)
}

// resetStream deletes the log's streams and provisions them again, empty.
func (e *env) resetStream(ctx context.Context) error {
	for _, s := range e.layout.Streams {
		if err := e.js.DeleteStream(ctx, s.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("bench: delete stream %s: %w", s.Name, err)
		}
	}
	if _, err := streams.Apply(ctx, e.js, e.def); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// keysCreated is how many data keys the key service holds.
func (e *env) keysCreated(ctx context.Context) (int64, error) {
	var n int64
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM keystore.data_keys").Scan(&n); err != nil {
		return 0, fmt.Errorf("bench: count data keys: %w", err)
	}
	return n, nil
}

// durability states what the figures hold under, for every table.
func (e *env) durability() string {
	return fmt.Sprintf("durability: JetStream file store, server default sync (fsync every 2m, not per write): acknowledged = in the OS page cache, survives a process kill, not a power loss; PostgreSQL synchronous_commit=%s, fsync=%s",
		e.syncCommit, e.fsync)
}

// describe is the run's header: machine, versions, settings.
func (e *env) describe() []string {
	return []string{
		fmt.Sprintf("nats-server %s embedded, JetStream file store in %s (SyncInterval %s, SyncAlways off: the server's defaults)", server.VERSION, e.dir, 2*time.Minute),
		fmt.Sprintf("PostgreSQL %s, database %s: synchronous_commit=%s, fsync=%s, shared_buffers=%s", e.pgVersion, e.dbName, e.syncCommit, e.fsync, e.sharedBuffers),
	}
}

// close stops the key service, closes connections, shuts the server down, drops the
// database and removes the temporary directory. It runs even when the run was
// interrupted.
func (e *env) close() {
	if e.keysStop != nil {
		e.keysStop()
		select {
		case <-e.keysDone:
		case <-time.After(15 * time.Second):
			e.log.Warn("key service did not stop in time")
		}
	}
	for _, nc := range []*nats.Conn{e.keysNC, e.nc} {
		if nc != nil {
			nc.Close()
		}
	}
	for _, p := range []*pgxpool.Pool{e.keysPool, e.pool} {
		if p != nil {
			p.Close()
		}
	}
	if e.nats != nil {
		e.nats.Shutdown()
	}
	if e.dbName != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, e.adminURL); err != nil {
			e.log.Warn("could not drop the bench database", "database", e.dbName, "error", err)
		} else {
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+e.dbName+" WITH (FORCE)"); err != nil {
				e.log.Warn("could not drop the bench database", "database", e.dbName, "error", err)
			} else {
				e.log.Info("database dropped", "database", e.dbName)
			}
			_ = conn.Close(ctx)
		}
	}
	if e.cluster != nil {
		if err := e.cluster.Stop(context.Background()); err != nil {
			e.log.Warn("could not stop the private PostgreSQL cluster", "error", err)
		}
	}
	if e.dir != "" {
		if err := os.RemoveAll(e.dir); err != nil {
			e.log.Warn("could not remove the temporary directory", "dir", e.dir, "error", err)
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}
