package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/services/internal/access"
)

// Defaults of Config; a zero field takes its default.
const (
	DefaultTimelineTarget = "timeline_v1"
	DefaultChurnTarget    = "churn_v1"
	DefaultPollInterval   = 500 * time.Millisecond
	DefaultHeartbeat      = 15 * time.Second
	DefaultWindow         = 50
	DefaultAlertLookback  = 24 * time.Hour
)

//go:embed assets
var assets embed.FS

// Config configures a Console.
type Config struct {
	// DB reads the timeline and churn read models and projections.serving (a pgx
	// pool). Required.
	DB projections.Querier
	// TimelineTarget and ChurnTarget are the versions streamed when
	// projections.serving names none (defaults timeline_v1, churn_v1).
	TimelineTarget string
	ChurnTarget    string
	// PollInterval is how often a stream looks for new rows (default 500ms).
	PollInterval time.Duration
	// Heartbeat is how often a stream sends a comment to keep the connection open
	// (default 15s).
	Heartbeat time.Duration
	// Window is how many of a customer's newest timeline entries each poll reads
	// (default 50, at most 500).
	Window int
	// AlertLookback is how far before the newest raise seen an alert's raise time
	// may be and still be streamed (default 24h).
	AlertLookback time.Duration
	// Authorize decides whether a stream may be opened (access.Gate.Stream: a stream
	// ticket or a bearer token, then the role matrix under the stream's route name,
	// stream_customer or stream_alerts). An error matching access.ErrUnauthenticated
	// answers 401, one matching access.ErrForbidden 403. The stream ends when the
	// principal's token expires. Required.
	Authorize func(r *http.Request, route string) (access.Principal, error)
	// Log is the logger; nil discards.
	Log *slog.Logger
}

func (c *Config) setDefaults() {
	if c.TimelineTarget == "" {
		c.TimelineTarget = DefaultTimelineTarget
	}
	if c.ChurnTarget == "" {
		c.ChurnTarget = DefaultChurnTarget
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.AlertLookback == 0 {
		c.AlertLookback = DefaultAlertLookback
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

var targetName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate checks the configuration after defaults are applied; the error joins one
// error per problem, each naming its field.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DB == nil {
		add("console: DB: required")
	}
	if c.Authorize == nil {
		add("console: Authorize: required (streams ask who opens them)")
	}
	if !targetName.MatchString(c.TimelineTarget) {
		add("console: TimelineTarget %q: must be a PostgreSQL schema name such as %s", c.TimelineTarget, DefaultTimelineTarget)
	}
	if !targetName.MatchString(c.ChurnTarget) {
		add("console: ChurnTarget %q: must be a PostgreSQL schema name such as %s", c.ChurnTarget, DefaultChurnTarget)
	}
	if c.PollInterval < 10*time.Millisecond {
		add("console: PollInterval %v: at least 10ms", c.PollInterval)
	}
	if c.Heartbeat < time.Second {
		add("console: Heartbeat %v: at least 1s", c.Heartbeat)
	}
	if c.Window < 1 || c.Window > 500 {
		add("console: Window %d: 1 to 500", c.Window)
	}
	if c.AlertLookback < 0 {
		add("console: AlertLookback %v: negative", c.AlertLookback)
	}
	return errors.Join(errs...)
}

// Console is the web console: its assets and its live streams.
type Console struct {
	cfg      Config
	files    fs.FS
	serving  *projections.ServingCache
	stopping chan struct{} // closed by Run on cancellation: every stream ends
	stopOnce sync.Once
}

// New returns a console.
func New(cfg Config) (*Console, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	files, err := fs.Sub(assets, "assets")
	if err != nil { // cannot happen: the directory is embedded
		return nil, fmt.Errorf("console: assets: %w", err)
	}
	return &Console{cfg: cfg, files: files, serving: &projections.ServingCache{DB: cfg.DB, TTL: time.Second},
		stopping: make(chan struct{})}, nil
}

// Run waits until ctx is cancelled, then ends every open stream and returns nil. An
// HTTP server's graceful shutdown waits for its handlers, and a stream's handler
// lives as long as its client: run the console beside the server that mounts its
// routes so shutdown drains promptly. Streams opened after Run returned end at once.
func (c *Console) Run(ctx context.Context) error {
	<-ctx.Done()
	c.stopOnce.Do(func() { close(c.stopping) })
	return nil
}

// Routes returns the console's handlers by http.ServeMux pattern, to mount on the
// query server beside its API:
//
//	GET /console/                    the application (index.html and its assets)
//	GET /v1/stream/customers/{id}    a customer's new timeline entries (SSE)
//	GET /v1/stream/alerts            new churn alerts (SSE)
func (c *Console) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		"GET /console/":                 c.assetHandler(),
		"GET /v1/stream/customers/{id}": http.HandlerFunc(c.streamCustomer),
		"GET /v1/stream/alerts":         http.HandlerFunc(c.streamAlerts),
	}
}

// contentSecurity allows the page to load and call only its own origin.
const contentSecurity = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

func (c *Console) assetHandler() http.Handler {
	files := http.StripPrefix("/console/", http.FileServerFS(c.files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurity)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
