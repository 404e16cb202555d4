package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/dedup"
)

// Defaults of Config; a zero field takes its default.
const (
	DefaultAddr             = "127.0.0.1:8080"
	DefaultMaxBodyBytes     = 4 << 20
	DefaultMaxBatch         = 1000
	DefaultMaxInFlight      = 20_000
	DefaultAckTimeout       = 10 * time.Second
	DefaultRequestTimeout   = 30 * time.Second
	DefaultDedupTimeout     = time.Second
	DefaultDedupLogInterval = time.Minute
	DefaultRetryAfter       = time.Second
	DefaultShutdownTimeout  = 15 * time.Second
	DefaultHeaderTimeout    = 5 * time.Second
	DefaultBodyTimeout      = 20 * time.Second
	DefaultMaxHeaderBytes   = 64 << 10
	DefaultSubject          = "ingest.*.>"
	DefaultQueueGroup       = "touchstream-gateway"
)

// Config configures a Gateway. Zero fields take the defaults above.
type Config struct {
	// Addr is the HTTP listen address.
	Addr string
	// Channels are the channel systems allowed to write (deploy/channels.json).
	Channels []Channel
	// Limits bound every event (size, clock skew, late arrival); a channel's MaxAge
	// overrides Limits.MaxAge for that channel. Zero: events.DefaultLimits().
	Limits events.Limits
	// MaxBodyBytes bounds one request body (413 above it).
	MaxBodyBytes int64
	// MaxHeaderBytes bounds a request's headers (431 above it).
	MaxHeaderBytes int
	// HeaderTimeout bounds reading a request's headers from the moment the connection
	// is ready to read: a client sending them slowly (slowloris) is disconnected.
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body once its headers are in: a body that
	// has not fully arrived by then is answered 408 and the connection closed.
	BodyTimeout time.Duration
	// MaxBatch bounds the events of one request (413 above it).
	MaxBatch int
	// MaxInFlight is the gateway's budget of events being processed at once; a request
	// that does not fit is answered 503 with Retry-After.
	MaxInFlight int
	// AckTimeout is how long to wait for the stream's acknowledgement of an event
	// before answering it "unknown".
	AckTimeout time.Duration
	// RequestTimeout bounds the processing of an accepted request (key fetch, index
	// lookup, publishing). A client hanging up does not cut it short.
	RequestTimeout time.Duration
	// DedupTimeout bounds the idempotency index lookup; past it the lookup is skipped.
	DedupTimeout time.Duration
	// DedupLogInterval: a failing index lookup is logged at most once per interval.
	DedupLogInterval time.Duration
	// RetryAfter is what 503 answers tell clients to wait.
	RetryAfter time.Duration
	// ShutdownTimeout bounds draining on cancellation.
	ShutdownTimeout time.Duration
	// Subject and QueueGroup of the NATS request-reply door. The second token of the
	// subject is the channel name.
	Subject    string
	QueueGroup string
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
	if c.Limits == (events.Limits{}) {
		c.Limits = events.DefaultLimits()
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	set(&c.HeaderTimeout, DefaultHeaderTimeout)
	set(&c.BodyTimeout, DefaultBodyTimeout)
	if c.MaxInFlight == 0 {
		c.MaxInFlight = max(DefaultMaxInFlight, c.MaxBatch)
	}
	set(&c.AckTimeout, DefaultAckTimeout)
	set(&c.RequestTimeout, DefaultRequestTimeout)
	set(&c.DedupTimeout, DefaultDedupTimeout)
	set(&c.DedupLogInterval, DefaultDedupLogInterval)
	set(&c.RetryAfter, DefaultRetryAfter)
	set(&c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.QueueGroup == "" {
		c.QueueGroup = DefaultQueueGroup
	}
}

// Validate checks the configuration after defaults are applied. The error joins one
// error per problem, each naming its field.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		add("gateway: Addr %q: %v", c.Addr, err)
	}
	if err := ValidateChannels(c.Channels); err != nil {
		errs = append(errs, fmt.Errorf("gateway: Channels: %w", err))
	}
	if c.Limits.MaxSize < 1024 {
		add("gateway: Limits.MaxSize %d: must be at least 1024 bytes", c.Limits.MaxSize)
	}
	if c.Limits.MaxFuture < 0 || c.Limits.MaxAge < 0 {
		add("gateway: Limits.MaxFuture and Limits.MaxAge: must not be negative")
	}
	if c.MaxBodyBytes < 1024 {
		add("gateway: MaxBodyBytes %d: must be at least 1024", c.MaxBodyBytes)
	}
	if c.MaxHeaderBytes < 4096 {
		add("gateway: MaxHeaderBytes %d: must be at least 4096", c.MaxHeaderBytes)
	}
	if c.MaxBatch < 1 || c.MaxBatch > 100_000 {
		add("gateway: MaxBatch %d: must be between 1 and 100,000", c.MaxBatch)
	}
	if c.MaxInFlight < c.MaxBatch {
		add("gateway: MaxInFlight %d: must be at least MaxBatch (%d), or no full batch could ever be accepted", c.MaxInFlight, c.MaxBatch)
	}
	for name, d := range map[string]time.Duration{"AckTimeout": c.AckTimeout, "RequestTimeout": c.RequestTimeout,
		"DedupTimeout": c.DedupTimeout, "DedupLogInterval": c.DedupLogInterval, "RetryAfter": c.RetryAfter, "ShutdownTimeout": c.ShutdownTimeout,
		"HeaderTimeout": c.HeaderTimeout, "BodyTimeout": c.BodyTimeout} {
		if d < 0 {
			add("gateway: %s %s: must be positive", name, d)
		}
	}
	if c.RequestTimeout < c.AckTimeout {
		add("gateway: RequestTimeout %s: must be at least AckTimeout (%s)", c.RequestTimeout, c.AckTimeout)
	}
	if c.QueueGroup == "" {
		add("gateway: QueueGroup: required")
	}
	return errors.Join(errs...)
}

// Deps are the gateway's collaborators.
type Deps struct {
	// NATS is the connection the gateway publishes on and serves the request-reply
	// door from. Required.
	NATS *nats.Conn
	// Layout is the log's layout (partitions, streams). Required.
	Layout events.Layout
	// Catalog is the compiled contract; nil: events.DefaultCatalog().
	Catalog *events.Catalog
	// Keys supplies data keys for sealing personal fields (an events.KeyClient). Nil:
	// events with personal fields fail with "data key unavailable".
	Keys events.KeySource
	// Dedup is the durable idempotency index (a pgx pool); nil skips the lookup and
	// relies on the stream's duplicate window alone.
	Dedup dedup.Querier
	// Registry receives the gateway's metrics; nil: metrics are kept but not exported.
	Registry *prometheus.Registry
	// Log is the logger; nil discards.
	Log *slog.Logger
	// Listener, when set, is where HTTP is served instead of listening on Config.Addr.
	Listener net.Listener
	// Now is the clock for time bounds; nil: time.Now.
	Now func() time.Time
}
