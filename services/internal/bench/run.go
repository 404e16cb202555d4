package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/query"
	"github.com/touchstream/touchstream/services/internal/simulate"
)

// Suites, in the order `all` runs them. query, e2e and console run over the
// projector's data set (built first when the projector suite is not run).
var Suites = []string{"ingest", "projector", "rebuild", "loyalty", "query", "e2e", "console", "scale", "churn"}

// Defaults of the data set sizes.
const (
	DefaultCustomers = 1_000_000
	DefaultEvents    = 2_000_000
)

// Options are the pinned inputs and settings of a run.
type Options struct {
	// Suite is "all" or a comma-separated list of Suites (run in Suites' order).
	Suite string
	// Seed makes the generated events reproducible: the same seed, the same events.
	Seed uint64
	// Customers and Events size the projector's data set (the query, e2e and console
	// suites use it too). The ingest suite sends min(200,000, Events) recharges over
	// min(100,000, Customers) customers, and min(100,000, Events/2) events in the runs
	// with personal fields.
	Customers int
	Events    int
	// AdminURL is the PostgreSQL maintenance database the bench creates its own
	// database from. Ignored when PrivatePostgres is set.
	AdminURL string
	// PrivatePostgres, when set, is the shared_buffers of a private PostgreSQL cluster
	// the bench creates with initdb, tuned for the workload (pgcluster.Tuned), instead
	// of using AdminURL's. The machine's shared cluster keeps its own settings.
	PrivatePostgres string
	// Streams is the log's definition (deploy/streams.json).
	Streams streams.Definition
	// Channels are the gateway's channels (deploy/channels.json), with their
	// development keys "dev-<channel>-key".
	Channels []gateway.Channel
	// Simulator, ChurnRules, ChurnCustomers and ChurnDays size the churn suite: the
	// simulator's population (deploy/simulator.json) over days of history, scored
	// with the rule scorer (deploy/churn-rules.json) until models are trained.
	Simulator      *simulate.Params
	ChurnRules     *features.Scorer
	ChurnCustomers int
	ChurnDays      int
	// CPUProfileDir, when set, receives CPU profiles of the first round of each ingest
	// run and of the projector's catch-up (go tool pprof -top FILE).
	CPUProfileDir string
}

// simChannels are the channels as the simulator sends on them, with their
// development keys.
func (o Options) simChannels() []simulate.Channel {
	out := make([]simulate.Channel, 0, len(o.Channels))
	for _, c := range o.Channels {
		out = append(out, simulate.Channel{Name: c.Name, Source: c.Source, AllowedTypes: c.AllowedTypes, MaxAge: time.Duration(c.MaxAge),
			APIKey: "dev-" + c.Name + "-key"})
	}
	return out
}

// suites are the suites Suite names, in the order `all` runs them.
func (o Options) suites() []string {
	if o.Suite == "all" {
		return Suites
	}
	named := strings.Split(o.Suite, ",")
	var out []string
	for _, s := range Suites {
		if slices.Contains(named, s) {
			out = append(out, s)
		}
	}
	for _, s := range named {
		if !slices.Contains(Suites, s) {
			out = append(out, s) // unknown: Validate names it
		}
	}
	return out
}

// Validate checks the options.
func (o Options) Validate() error {
	var errs []error
	for _, name := range o.suites() {
		if !slices.Contains(Suites, name) {
			errs = append(errs, fmt.Errorf("suite %q: want all or a comma-separated list of %s", name, strings.Join(Suites, ", ")))
		}
	}
	if o.Customers < 1 {
		errs = append(errs, fmt.Errorf("customers %d: must be positive", o.Customers))
	}
	if o.Events < o.Customers {
		errs = append(errs, fmt.Errorf("events %d: at least one per customer (%d): every customer is registered", o.Events, o.Customers))
	}
	if o.AdminURL == "" {
		errs = append(errs, errors.New("database url: required"))
	}
	if err := o.Streams.Validate(); err != nil {
		errs = append(errs, err)
	}
	if slices.Contains(o.suites(), "churn") && (o.Simulator == nil || o.ChurnRules == nil || o.ChurnCustomers < 1 || o.ChurnDays < 70) {
		errs = append(errs, errors.New("churn suite: simulator parameters, churn rules, at least 1 customer and 70 days (January's snapshots need their outcome) are required"))
	}
	if len(o.Channels) == 0 {
		errs = append(errs, errors.New("channels: required (deploy/channels.json)"))
	}
	return errors.Join(errs...)
}

// ProjectorDeps are what the projector group is built from.
type ProjectorDeps struct {
	Registry *prometheus.Registry // the runner's metrics, read back by the bench
	Pool     *pgxpool.Pool
	NC       *nats.Conn
	JS       jetstream.JetStream
	Layout   events.Layout
	Catalog  *events.Catalog
	Keys     events.KeySource
	PhoneKey []byte
	Log      *slog.Logger
}

// QueryDeps are what the query API is built from.
type QueryDeps struct {
	DB       *pgxpool.Pool
	Keys     events.KeySource
	Layout   events.Layout
	PhoneKey []byte
	Log      *slog.Logger
	// Token is the bench's bearer token: the server must accept it as a staff member
	// with Roles, or with the agent role when Roles is empty (personal fields masked,
	// as the call center reads them).
	Token string
	Roles []access.Role
	// Audit is the access audit log the server records reads in, running.
	Audit query.AuditLog
}

// ConsoleDeps are what the query service with the web console is built from: the
// query API's, and the connections the console's live streams, its operations routes
// and its command service use.
type ConsoleDeps struct {
	QueryDeps
	NC      *nats.Conn
	JS      jetstream.JetStream
	Catalog *events.Catalog
}

// Deps are the bench's collaborators. Projector and Query build the real services as
// the command assembles them, so the bench measures exactly what runs in production.
type Deps struct {
	Projector func(ProjectorDeps) (*projections.Runner, error)
	// Customer360 builds the customer 360 projection bound to a target, as the
	// projector does (for the rebuild suite).
	Customer360 func(d ProjectorDeps, target string) (projections.Projection, error)
	// Loyalty builds the loyalty ledger projection bound to a target, pinned to a rule
	// version (for the rebuild suite).
	Loyalty func(target, pin string) (projections.Projection, error)
	// Redeem builds the redemption API over the loyalty read model, as the command
	// does; the func it returns releases it.
	Redeem func(ctx context.Context, pool *pgxpool.Pool, nc *nats.Conn, log *slog.Logger) (http.Handler, func(), error)
	Query  func(QueryDeps) (*query.Server, error)
	// Console builds the query service as `touchstream query` assembles it: the query
	// API with the loyalty routes and the command service, the web console mounted
	// beside it (assets, live streams, read-only operations routes), and stream
	// tickets. run serves the console's live streams until its context ends; release
	// closes what Console opened.
	Console func(ctx context.Context, d ConsoleDeps) (srv *query.Server, run func(context.Context) error, release func(), err error)
	// ServiceLevel builds the service-level projection bound to a target, as the
	// projector does (for the console suite).
	ServiceLevel func(target string) (projections.Projection, error)
	// Churn builds the churn projection bound to a target, as the projector does.
	Churn func(target string) (projections.Projection, error)
	// Stdout receives the tables; Log the progress (stderr).
	Stdout io.Writer
	Log    *slog.Logger
}

// bench is one run.
type bench struct {
	o      Options
	d      Deps
	e      *env
	out    io.Writer
	log    *slog.Logger // the bench's progress
	svcLog *slog.Logger // the services': warnings and errors only, no access logs
	ds     *dataset     // the projector's data set, once loaded
	took   []suiteTime
}

type suiteTime struct {
	name    string
	elapsed time.Duration
}

// Run runs the suites and prints their tables.
func Run(ctx context.Context, o Options, d Deps) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if d.Projector == nil || d.Query == nil || d.Stdout == nil {
		return errors.New("bench: Deps.Projector, Deps.Query and Deps.Stdout are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	suites := o.suites()
	began := time.Now()
	load := loadAverage()
	e, err := newEnv(ctx, o, d.Log)
	if err != nil {
		return err
	}
	defer e.close()
	b := &bench{o: o, d: d, e: e, out: d.Stdout, log: d.Log, svcLog: slog.New(atLeast{slog.LevelWarn, d.Log.Handler()})}
	b.printf("# touchstream bench, %s\n", began.UTC().Format(time.RFC3339))
	b.printf("   machine: %d cores (GOMAXPROCS %d), %s %s/%s; load average at start %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0),
		runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
	for _, l := range e.describe() {
		b.printf("   %s\n", l)
	}
	b.printf("   suites: %s; seed %d; data set %s customers, %s events\n", strings.Join(suites, ", "), o.Seed, count(o.Customers), count(o.Events))
	b.printf("   services (gateway, projector, query API, key service) log at warn: no per-request access logs\n")
	b.printf("   cpu columns: cores busy during the measurement, this process (embedded nats-server included) / the whole machine (PostgreSQL and anything else running)\n\n")

	for _, s := range suites {
		start := time.Now()
		b.log.Info("suite starting", "suite", s, "load_average", loadAverage())
		var err error
		switch s {
		case "ingest":
			err = b.ingest(ctx)
		case "projector":
			err = b.projector(ctx)
		case "rebuild":
			err = b.rebuild(ctx)
		case "loyalty":
			err = b.loyalty(ctx)
		case "query":
			err = b.query(ctx)
		case "e2e":
			err = b.e2e(ctx)
		case "console":
			err = b.console(ctx)
		case "scale":
			err = b.scale(ctx)
		case "churn":
			err = b.churn(ctx)
		}
		if err != nil {
			return fmt.Errorf("bench %s: %w", s, err)
		}
		b.took = append(b.took, suiteTime{s, time.Since(start)})
		b.log.Info("suite done", "suite", s, "seconds", time.Since(start).Seconds())
	}
	t := newTable("time per suite", "suite", "seconds")
	t.note("load average at the end %s", loadAverage())
	for _, s := range b.took {
		t.row(s.name, seconds(s.elapsed))
	}
	t.row("total (setup and teardown included)", seconds(time.Since(began)))
	return t.write(b.out)
}

func (b *bench) printf(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }

// inputs is the pinned-inputs line of a table.
func (b *bench) inputs(format string, args ...any) string {
	return fmt.Sprintf("inputs: seed %d, ", b.o.Seed) + fmt.Sprintf(format, args...)
}

// profile runs fn under the CPU profiler when a profile directory is set.
func (b *bench) profile(name string, fn func() error) error {
	if b.o.CPUProfileDir == "" {
		return fn()
	}
	if err := os.MkdirAll(b.o.CPUProfileDir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(b.o.CPUProfileDir, name+".pprof")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	err = fn()
	pprof.StopCPUProfile()
	b.log.Info("cpu profile written", "file", path)
	return err
}

// atLeast is a handler that drops records below a level.
type atLeast struct {
	min slog.Level
	slog.Handler
}

func (h atLeast) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h atLeast) WithAttrs(as []slog.Attr) slog.Handler {
	return atLeast{h.min, h.Handler.WithAttrs(as)}
}
func (h atLeast) WithGroup(name string) slog.Handler {
	return atLeast{h.min, h.Handler.WithGroup(name)}
}

// every logs progress every interval until the returned stop is called.
func every(interval time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() { close(done); <-finished }
}
