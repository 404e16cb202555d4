package query

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/httpserve"
)

// Defaults of Config; a zero field takes its default.
const (
	DefaultAddr               = "127.0.0.1:8081"
	DefaultCustomer360Target  = "customer360_v1"
	DefaultTimelineTarget     = "timeline_v1"
	DefaultLoyaltyTarget      = "loyalty_v1"
	DefaultChurnTarget        = "churn_v1"
	DefaultServiceLevelTarget = "servicelevel_v1"
	DefaultCommandSource      = "urn:touchstream:service:console"
	DefaultRequestTimeout     = 10 * time.Second
	DefaultShutdownTimeout    = 10 * time.Second
	DefaultReadHeaderTimeout  = 5 * time.Second
	DefaultReadTimeout        = 10 * time.Second
	DefaultWriteTimeout       = 30 * time.Second
	DefaultIdleTimeout        = 2 * time.Minute
	DefaultMaxHeaderBytes     = 32 << 10
)

// Config configures a Server. Zero fields take the defaults above, except Layout and
// PhoneKey, which are required.
type Config struct {
	// Addr is the HTTP listen address.
	Addr string
	// Customer360Target and TimelineTarget are the versions (PostgreSQL schemas) of
	// the read models that answer, or with FollowServing the versions that answer until
	// projections.serving names others.
	Customer360Target string
	TimelineTarget    string
	// LoyaltyRules are the club's rule versions (deploy/loyalty.json); nil: the loyalty
	// routes answer 404. LoyaltyTarget is the loyalty version answering (default
	// loyalty_v1, or the serving one with FollowServing).
	LoyaltyRules  *ledger.RuleSet
	LoyaltyTarget string
	// ChurnTarget and ServiceLevelTarget are the churn and service-level versions
	// answering (default churn_v1 and servicelevel_v1, or the serving ones with
	// FollowServing).
	ChurnTarget        string
	ServiceLevelTarget string
	// CommandSource is the CloudEvents source of the events the desk's commands
	// publish (default urn:touchstream:service:console). With the event id it is the
	// dedup key of a retried command.
	CommandSource string
	// Location is the operator's zone: the day of a service-level summary when no
	// time is given (default Asia/Shanghai, UTC+8 without the zone database).
	Location *time.Location
	// FollowServing looks the serving versions up in projections.serving (at most once
	// a second), so a blue/green switch reaches readers without a restart.
	FollowServing bool
	// Layout is the log's layout: it maps a customer to its partition, whose freshness
	// every customer read reports. It must be the projector's.
	Layout events.Layout
	// PhoneKey is the secret of the phone search hash, the projector's (at least 16
	// bytes).
	PhoneKey []byte
	// Tiers, when set, are the value tier names a search may filter on (valuetier
	// Config.Names); an unknown tier is then a 400 rather than an empty page.
	Tiers []string
	// RequestTimeout bounds the work of one request (database and key service).
	RequestTimeout time.Duration
	// ShutdownTimeout bounds the draining of requests in progress on cancellation.
	ShutdownTimeout time.Duration
	// HTTP server limits.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// Routes are further handlers mounted beside the API's own, by ServeMux pattern:
	// the web console's assets and live streams, and the read-only operations it
	// shows. They do not pass through the API's endpoint wrapper (metrics, viewer):
	// each authorizes its own requests.
	Routes map[string]http.Handler
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
	if c.Customer360Target == "" {
		c.Customer360Target = DefaultCustomer360Target
	}
	if c.TimelineTarget == "" {
		c.TimelineTarget = DefaultTimelineTarget
	}
	if c.LoyaltyTarget == "" {
		c.LoyaltyTarget = DefaultLoyaltyTarget
	}
	if c.ChurnTarget == "" {
		c.ChurnTarget = DefaultChurnTarget
	}
	if c.ServiceLevelTarget == "" {
		c.ServiceLevelTarget = DefaultServiceLevelTarget
	}
	if c.CommandSource == "" {
		c.CommandSource = DefaultCommandSource
	}
	if c.Location == nil {
		c.Location = operatorZone()
	}
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
		add("query: Addr %q: %v", c.Addr, err)
	}
	if !targetName.MatchString(c.Customer360Target) {
		add("query: Customer360Target %q: must be a PostgreSQL schema name such as %s", c.Customer360Target, DefaultCustomer360Target)
	}
	if !targetName.MatchString(c.LoyaltyTarget) {
		add("query: LoyaltyTarget %q: must be a PostgreSQL schema name such as %s", c.LoyaltyTarget, DefaultLoyaltyTarget)
	}
	if !targetName.MatchString(c.ChurnTarget) {
		add("query: ChurnTarget %q: must be a PostgreSQL schema name such as %s", c.ChurnTarget, DefaultChurnTarget)
	}
	if !targetName.MatchString(c.ServiceLevelTarget) {
		add("query: ServiceLevelTarget %q: must be a PostgreSQL schema name such as %s", c.ServiceLevelTarget, DefaultServiceLevelTarget)
	}
	if !saneKey.MatchString(c.CommandSource) {
		add("query: CommandSource %q: must be 1 to 256 printable characters without spaces, such as %s", c.CommandSource, DefaultCommandSource)
	}
	if !targetName.MatchString(c.TimelineTarget) {
		add("query: TimelineTarget %q: must be a PostgreSQL schema name such as %s", c.TimelineTarget, DefaultTimelineTarget)
	}
	if err := c.Layout.Validate(); err != nil {
		add("query: Layout: %v", err)
	}
	if len(c.PhoneKey) < 16 {
		add("query: PhoneKey: %d bytes, at least 16 required (the projector's phone index key)", len(c.PhoneKey))
	}
	for i, t := range c.Tiers {
		if !token.MatchString(t) {
			add("query: Tiers[%d] %q: must match %s", i, t, token)
		}
	}
	errs = append(errs, c.httpSettings().Check("query", c.RequestTimeout)...)
	return errors.Join(errs...)
}

// httpSettings are the HTTP server's bounds.
func (c Config) httpSettings() httpserve.Settings {
	return httpserve.Settings{ReadHeaderTimeout: c.ReadHeaderTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout,
		IdleTimeout: c.IdleTimeout, MaxHeaderBytes: c.MaxHeaderBytes, ShutdownTimeout: c.ShutdownTimeout}
}

// Deps are the server's collaborators.
type Deps struct {
	// DB reads the read models and the projection checkpoints (a pgx pool). Required.
	DB projections.Querier
	// Keys opens the sealed personal fields (an events.KeyClient). Required.
	Keys events.KeySource
	// Catalog lists the event types a timeline may filter on; nil:
	// events.DefaultCatalog().
	Catalog *events.Catalog
	// Viewer decides who each request comes from (access.Gate.Principal); what they
	// may do is the role matrix's. Required.
	Viewer ViewerFunc
	// Audit records every read of customers' personal data before it is answered (an
	// audit.Log, running). Required.
	Audit AuditLog
	// Tickets issues the console's stream tickets (POST /v1/stream/tickets); nil: the
	// route answers 404.
	Tickets *access.Tickets
	// Registry receives the request metrics; nil: kept but not exported.
	Registry prometheus.Registerer
	// Log is the logger; nil discards.
	Log *slog.Logger
	// Listener, when set, is served instead of listening on Config.Addr.
	Listener net.Listener
	// Commands publishes the retention desk's commands (alert.acknowledged,
	// offer.presented, offer.accepted, alert.closed): the console's command service
	// publisher. nil: the command routes answer 503.
	Commands *events.Publisher
}

// operatorZone is Asia/Shanghai, or UTC+8 (no daylight saving there) without the
// zone database.
func operatorZone() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		return time.FixedZone("CST", 8*3600)
	}
	return loc
}
