package redeem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/services/internal/httpserve"
)

// Source is the CloudEvents source of every event the service publishes: the only
// producer of points.redeemed.
const Source = "urn:touchstream:service:redemption"

// Projection is the name of the loyalty projection whose serving version answers
// balances; DefaultLoyaltyTarget its version when projections.serving names none.
const (
	Projection           = "loyalty"
	DefaultLoyaltyTarget = "loyalty_v1"
)

// Defaults of Config; a zero field takes its default.
const (
	DefaultAddr              = "127.0.0.1:8082"
	DefaultMaxBodyBytes      = 16 << 10
	DefaultPublishAttempts   = 3
	DefaultSweepInterval     = 5 * time.Second
	DefaultPendingGrace      = 15 * time.Second
	DefaultRequestTimeout    = 10 * time.Second
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 32 << 10
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Addr is the HTTP listen address.
	Addr string
	// LoyaltyTarget is the version (PostgreSQL schema) of the loyalty read model that
	// answers balances, or with FollowServing the version that answers until
	// projections.serving names another.
	LoyaltyTarget string
	// FollowServing looks the serving version up in projections.serving (at most once
	// a second), so a blue/green switch reaches the service without a restart.
	FollowServing bool
	// Now is the clock: the time of reservations and events, and the moment balances
	// are asked for. Default time.Now.
	Now func() time.Time
	// MaxBodyBytes bounds a request body; a larger one is a 413.
	MaxBodyBytes int64
	// PublishAttempts is how many times one request publishes an event whose
	// acknowledgement did not arrive (same event id each time, so the stream keeps
	// one) before leaving it to the sweeper and answering 503.
	PublishAttempts int
	// SweepInterval is how often Run republishes reservations and reversals left
	// pending (a client gone, an acknowledgement lost); PendingGrace is how old they
	// must be first, so the sweeper does not race requests in progress.
	SweepInterval time.Duration
	PendingGrace  time.Duration
	// RequestTimeout bounds the work of one request (database and publishing).
	RequestTimeout time.Duration
	// ShutdownTimeout bounds the draining of requests in progress on cancellation.
	ShutdownTimeout time.Duration
	// HTTP server limits.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

func (c *Config) setDefaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.LoyaltyTarget == "" {
		c.LoyaltyTarget = DefaultLoyaltyTarget
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.PublishAttempts == 0 {
		c.PublishAttempts = DefaultPublishAttempts
	}
	set(&c.SweepInterval, DefaultSweepInterval)
	set(&c.PendingGrace, DefaultPendingGrace)
	set(&c.RequestTimeout, DefaultRequestTimeout)
	set(&c.ShutdownTimeout, DefaultShutdownTimeout)
	set(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	set(&c.ReadTimeout, DefaultReadTimeout)
	set(&c.WriteTimeout, DefaultWriteTimeout)
	set(&c.IdleTimeout, DefaultIdleTimeout)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
}

var targetName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate checks the configuration after defaults are applied. The error joins one
// error per problem, each naming its field.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		add("redeem: Addr %q: %v", c.Addr, err)
	}
	if !targetName.MatchString(c.LoyaltyTarget) {
		add("redeem: LoyaltyTarget %q: must be a PostgreSQL schema name such as %s", c.LoyaltyTarget, DefaultLoyaltyTarget)
	}
	if c.MaxBodyBytes < 256 || c.MaxBodyBytes > 1<<20 {
		add("redeem: MaxBodyBytes %d: must be between 256 and 1048576", c.MaxBodyBytes)
	}
	if c.PublishAttempts < 1 || c.PublishAttempts > 10 {
		add("redeem: PublishAttempts %d: must be between 1 and 10", c.PublishAttempts)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"SweepInterval", c.SweepInterval}, {"PendingGrace", c.PendingGrace}} {
		if d.v < 0 {
			add("redeem: %s %s: must be positive", d.name, d.v)
		}
	}
	if c.PendingGrace < c.RequestTimeout {
		add("redeem: PendingGrace %s: must be at least RequestTimeout (%s), so the sweeper leaves requests in progress alone", c.PendingGrace, c.RequestTimeout)
	}
	errs = append(errs, c.httpSettings().Check("redeem", c.RequestTimeout)...)
	return errors.Join(errs...)
}

// httpSettings are the HTTP server's bounds.
func (c Config) httpSettings() httpserve.Settings {
	return httpserve.Settings{ReadHeaderTimeout: c.ReadHeaderTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout,
		IdleTimeout: c.IdleTimeout, MaxHeaderBytes: c.MaxHeaderBytes, ShutdownTimeout: c.ShutdownTimeout}
}

// BalanceFunc returns a member's projected points balance as of asOf, read through q
// from the loyalty read model version target; 0 and no error for an unknown member.
// loyalty.Available has this signature. It is called inside the service's
// transaction (q is that transaction), after the member's lock is taken and the
// member's open reservations are summed.
type BalanceFunc func(ctx context.Context, q projections.Querier, target, customer string, asOf time.Time) (int64, error)

// Deps are the server's collaborators.
type Deps struct {
	// Pool holds the reservations and reads the loyalty read model. Required.
	Pool *pgxpool.Pool
	// Publisher appends points.redeemed and event.retracted to the log. Required.
	// Events are stamped with Source whatever the publisher's own source.
	Publisher *events.Publisher
	// Balance reads projected balances (loyalty.Available). Required.
	Balance BalanceFunc
	// Registry receives the metrics; nil: kept but not exported.
	Registry prometheus.Registerer
	// Log is the logger; nil discards.
	Log *slog.Logger
	// Listener, when set, is served instead of listening on Config.Addr.
	Listener net.Listener
}
