package audit

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/projections/migrate"
)

// Schema is the PostgreSQL schema of the access audit log.
const Schema = "access_audit"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or upgrades the access audit log's table.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "access_audit", Schema, migrations, "migrations")
}

// The personal fields a record may name.
const (
	FieldName     = "name"
	FieldPhone    = "phone"
	FieldIDNumber = "id_number"
	FieldAddress  = "address"
)

var knownFields = []string{FieldName, FieldPhone, FieldIDNumber, FieldAddress}

// Record is one read of one customer's personal fields. It holds ids and field names
// only, never the values.
type Record struct {
	// At is when the read was answered; zero: when the record is written.
	At time.Time
	// StaffID and Roles are the reader's, from their token.
	StaffID string
	Roles   []string
	// Customer is the customer whose fields were read.
	Customer string
	// Fields are the personal fields returned (FieldName, ...), at least one.
	Fields []string
	// Clear: the fields were returned in clear; false: masked.
	Clear bool
	// Route and RequestID identify the read: the route's name and the request id the
	// answer carried (X-Request-Id).
	Route     string
	RequestID string
}

var (
	ident     = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
	requestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	routeName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// validate checks a record's fields; the error names the first wrong one.
func (r Record) validate() error {
	switch {
	case !ident.MatchString(r.StaffID):
		return fmt.Errorf("staff id %q: 1-64 of A-Z a-z 0-9 _ . : -", r.StaffID)
	case !ident.MatchString(r.Customer):
		return fmt.Errorf("customer %q: 1-64 of A-Z a-z 0-9 _ . : -", r.Customer)
	case len(r.Fields) == 0:
		return errors.New("fields: at least one")
	case !routeName.MatchString(r.Route):
		return fmt.Errorf("route %q: a route name", r.Route)
	case !requestID.MatchString(r.RequestID):
		return fmt.Errorf("request id %q: 1-128 of A-Z a-z 0-9 . _ : -", r.RequestID)
	}
	for _, f := range r.Fields {
		if !slices.Contains(knownFields, f) {
			return fmt.Errorf("field %q: one of %s", f, strings.Join(knownFields, ", "))
		}
	}
	for _, role := range r.Roles {
		if !routeName.MatchString(role) {
			return fmt.Errorf("role %q: a role name", role)
		}
	}
	return nil
}

// Defaults of Config.
const (
	DefaultMaxBatch      = 1000
	DefaultMaxPending    = 4096
	DefaultWriteTimeout  = 2 * time.Second
	DefaultRetention     = 365 * 24 * time.Hour
	DefaultPruneInterval = time.Hour
)

// Config configures a Log. Zero fields take the defaults above.
type Config struct {
	// MaxBatch bounds the records one statement inserts.
	MaxBatch int
	// MaxPending bounds the reads waiting for their records to be written; beyond it
	// Record refuses at once (ErrUnavailable) rather than queueing without bound.
	MaxPending int
	// WriteTimeout bounds one batch insert.
	WriteTimeout time.Duration
	// Retention is how long records are kept; older ones are deleted every
	// PruneInterval (at least a day).
	Retention     time.Duration
	PruneInterval time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.PruneInterval == 0 {
		c.PruneInterval = DefaultPruneInterval
	}
}

// Validate checks the configuration after defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.MaxBatch < 1 || c.MaxBatch > 10000 {
		errs = append(errs, fmt.Errorf("audit: MaxBatch %d: 1 to 10000", c.MaxBatch))
	}
	if c.MaxPending < 1 {
		errs = append(errs, fmt.Errorf("audit: MaxPending %d: at least 1", c.MaxPending))
	}
	if c.WriteTimeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("audit: WriteTimeout %v: at least 10ms", c.WriteTimeout))
	}
	if c.Retention < 24*time.Hour {
		errs = append(errs, fmt.Errorf("audit: Retention %v: at least 24h (a day)", c.Retention))
	}
	if c.PruneInterval < time.Second {
		errs = append(errs, fmt.Errorf("audit: PruneInterval %v: at least 1s", c.PruneInterval))
	}
	return errors.Join(errs...)
}

// Errors.
var (
	// ErrUnavailable: the record could not be written (the database failed or is too
	// slow, or too many reads are waiting). The read must not be answered.
	ErrUnavailable = errors.New("access audit log unavailable")
	// ErrClosed: the log is not running (Run returned).
	ErrClosed = fmt.Errorf("%w: closed", ErrUnavailable)
)

// DB is what the log writes and reads through (a pgx pool).
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Log writes access records in group commits: each Record call enqueues its records
// and waits; one writer inserts everything waiting in one statement, and answers
// every caller with the outcome.
type Log struct {
	cfg     Config
	db      DB
	log     *slog.Logger
	queue   chan *pending
	stopped chan struct{}
	now     func() time.Time
	m       metrics
}

// pending is one Record call waiting for its batch.
type pending struct {
	recs []Record
	done chan error
}

// New returns a log over db (Migrate first). reg receives its metrics (nil: kept but
// not exported); log its failures (nil discards).
func New(cfg Config, db DB, reg prometheus.Registerer, log *slog.Logger) (*Log, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, errors.New("audit: DB: required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Log{cfg: cfg, db: db, log: log, queue: make(chan *pending, cfg.MaxPending), stopped: make(chan struct{}),
		now: time.Now, m: m}, nil
}

// Record writes records and returns once they are committed, or with an error
// matching ErrUnavailable (or the context's) when they could not be: the read they
// describe must then not be answered. A record written after its caller gave up is
// kept (the log may hold a read that was not answered, never miss one that was).
func (l *Log) Record(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	now := l.now()
	for i := range recs {
		if err := recs[i].validate(); err != nil {
			return fmt.Errorf("audit record: %w", err)
		}
		if recs[i].At.IsZero() {
			recs[i].At = now
		}
	}
	p := &pending{recs: recs, done: make(chan error, 1)}
	select {
	case <-l.stopped:
		return ErrClosed
	default:
	}
	select {
	case l.queue <- p:
	default:
		l.m.refused.Inc()
		return fmt.Errorf("%w: %d reads already waiting", ErrUnavailable, cap(l.queue))
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case <-l.stopped:
		// Run drains the queue before closing stopped: the answer is there.
		select {
		case err := <-p.done:
			return err
		default:
			return ErrClosed
		}
	}
}

// Run writes the waiting records until ctx is cancelled, and prunes the records
// older than the retention at start and every PruneInterval (apart from the writer,
// so that a long deletion never holds reads up). On cancellation it writes what is
// already queued (bounded by WriteTimeout), answers later calls ErrClosed and returns
// nil.
func (l *Log) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() {
		prune := time.NewTicker(l.cfg.PruneInterval)
		defer prune.Stop()
		for {
			l.pruneLogged(ctx)
			select {
			case <-ctx.Done():
				return
			case <-prune.C:
			}
		}
	})
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			close(l.stopped)
			l.drain()
			return nil
		case p := <-l.queue:
			l.writeBatch(ctx, p)
		}
	}
}

// drain writes what was queued before the stop.
func (l *Log) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.WriteTimeout)
	defer cancel()
	for {
		select {
		case p := <-l.queue:
			l.writeBatch(ctx, p)
		default:
			return
		}
	}
}

// writeBatch takes first and everything else waiting (up to MaxBatch records), writes
// them in one statement and answers each caller.
func (l *Log) writeBatch(ctx context.Context, first *pending) {
	batch := []*pending{first}
	n := len(first.recs)
collect:
	for n < l.cfg.MaxBatch {
		select {
		case p := <-l.queue:
			batch = append(batch, p)
			n += len(p.recs)
		default:
			break collect
		}
	}
	recs := make([]Record, 0, n)
	for _, p := range batch {
		recs = append(recs, p.recs...)
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, l.cfg.WriteTimeout)
	err := insert(wctx, l.db, recs)
	cancel()
	l.m.observe(len(recs), time.Since(start), err)
	if err != nil {
		l.log.Error("writing access audit records failed; the reads they describe are refused",
			"records", len(recs), "reads", len(batch), "error", err)
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, p := range batch {
		p.done <- err
	}
}

// insert writes records with one statement.
func insert(ctx context.Context, db DB, recs []Record) error {
	at := make([]time.Time, len(recs))
	staff := make([]string, len(recs))
	roles := make([]string, len(recs))
	customers := make([]string, len(recs))
	fields := make([]string, len(recs))
	clear := make([]bool, len(recs))
	routes := make([]string, len(recs))
	reqs := make([]string, len(recs))
	for i, r := range recs {
		at[i], staff[i], customers[i], clear[i], routes[i], reqs[i] = r.At, r.StaffID, r.Customer, r.Clear, r.Route, r.RequestID
		// Roles and fields are names without commas (validated): one text per row,
		// split back into arrays in SQL (unnest cannot take ragged 2-D arrays).
		roles[i], fields[i] = strings.Join(r.Roles, ","), strings.Join(r.Fields, ",")
	}
	_, err := db.Exec(ctx, `INSERT INTO access_audit.reads (at, staff_id, roles, customer_id, fields, clear, route, request_id)
		SELECT at, staff, string_to_array(roles, ','), customer, string_to_array(fields, ','), clear, route, req
		FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::boolean[], $7::text[], $8::text[])
		AS r(at, staff, roles, customer, fields, clear, route, req)`,
		at, staff, roles, customers, fields, clear, routes, reqs)
	if err != nil {
		return fmt.Errorf("insert %d access records: %w", len(recs), err)
	}
	return nil
}

func (l *Log) pruneLogged(ctx context.Context) {
	n, err := l.Prune(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		l.log.Warn("pruning the access audit log failed; retrying at the next interval", "error", err)
	case n > 0:
		l.log.Info("pruned the access audit log", "rows", n, "retention_hours", l.cfg.Retention.Hours())
	}
}

// Prune deletes the records older than the retention, in chunks, and returns how
// many it deleted.
func (l *Log) Prune(ctx context.Context) (int64, error) {
	before := l.now().Add(-l.cfg.Retention)
	var total int64
	for {
		tag, err := l.db.Exec(ctx, `DELETE FROM access_audit.reads WHERE id IN
			(SELECT id FROM access_audit.reads WHERE at < $1 LIMIT 10000)`, before)
		if err != nil {
			return total, fmt.Errorf("prune access records before %s: %w", before.Format(time.RFC3339), err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 10000 {
			return total, nil
		}
	}
}
