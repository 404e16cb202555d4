package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/services/internal/config"
)

// Defaults of Config and Webhook; a zero field takes its default.
const (
	DefaultStream          = "SIGNALS"
	DefaultSubjectPrefix   = "signals."
	DefaultDurablePrefix   = "notify-"
	DefaultTimeout         = 10 * time.Second
	DefaultInitialInterval = time.Second
	DefaultMultiplier      = 2.0
	DefaultMaxInterval     = time.Minute
	DefaultMaxRetries      = 8
	DefaultJitter          = 0.2
	DefaultCloseTimeout    = 15 * time.Second
	// MinSecretBytes is the shortest HMAC secret accepted.
	MinSecretBytes = 16
)

// Where a new webhook's durable starts (Webhook.Start).
const (
	StartNew = "new" // signals stored after the durable is created (default)
	StartAll = "all" // everything SIGNALS still holds
)

// Webhook is one receiver, as deploy/webhooks.json lists it. The secret is never in
// the file: SecretEnv names the environment variable that holds it.
type Webhook struct {
	// Name identifies the webhook: the durable consumer notify-<name>, the parked
	// rows and the metrics' label. Lowercase letters, digits, - and _.
	Name string `json:"name"`
	// URL receives the POSTs (http or https).
	URL string `json:"url"`
	// Types are signal type prefixes of whole tokens ("churn" matches churn.alert_raised
	// and churn.alert_cleared; "loyalty.tier_changed" matches that type); empty: all.
	Types []string `json:"types,omitempty"`
	// SecretEnv is the name of the environment variable holding the HMAC secret.
	SecretEnv string `json:"secret_env"`
	// Timeout bounds one POST; default 10s.
	Timeout Duration `json:"timeout,omitempty"`
	// Start is where the durable starts when it is first created: "new" (default) or
	// "all". It is ignored once the durable exists.
	Start string `json:"start,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("5s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// file is the content of deploy/webhooks.json.
type file struct {
	Comment  string    `json:"comment,omitempty"`
	Webhooks []Webhook `json:"webhooks"`
}

// Load reads and validates a webhooks file (deploy/webhooks.json). Secrets are not
// resolved here (Config.Validate does it).
func Load(path string) ([]Webhook, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("webhooks: %s: %w", path, err)
	}
	if err := validateWebhooks(f.Webhooks); err != nil {
		return nil, fmt.Errorf("webhooks: %s: %w", path, err)
	}
	return f.Webhooks, nil
}

var (
	namePattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,47}$`)
	prefixPattern = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*$`)
	envPattern    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	streamPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// validateWebhooks checks the file's entries; each error names the entry and field.
func validateWebhooks(hooks []Webhook) error {
	var errs []error
	seen := map[string]bool{}
	for i, h := range hooks {
		at := fmt.Sprintf("webhooks[%d]", i)
		if h.Name != "" {
			at = fmt.Sprintf("webhooks[%d] (%s)", i, h.Name)
		}
		add := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf(at+"."+format, args...))
		}
		switch {
		case h.Name == "":
			add("name: empty")
		case !namePattern.MatchString(h.Name):
			add("name %q: must be 1 to 48 of [a-z0-9_-], starting with a letter or digit", h.Name)
		case seen[h.Name]:
			add("name %q: used twice", h.Name)
		}
		seen[h.Name] = true
		if u, err := url.Parse(h.URL); h.URL == "" {
			add("url: empty")
		} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("url: must be an absolute http or https URL")
		}
		for j, t := range h.Types {
			if !prefixPattern.MatchString(t) {
				add("types[%d] %q: must be whole signal type tokens of [a-z0-9_] separated by dots", j, t)
			}
		}
		switch {
		case h.SecretEnv == "":
			add("secret_env: empty (the name of the environment variable holding the secret)")
		case !envPattern.MatchString(h.SecretEnv):
			add("secret_env %q: not an environment variable name (the secret itself never goes in the file)", h.SecretEnv)
		}
		if h.Timeout < 0 || time.Duration(h.Timeout) > 5*time.Minute {
			add("timeout %s: must be between 0 (default %s) and 5m", time.Duration(h.Timeout), DefaultTimeout)
		}
		if h.Start != "" && h.Start != StartNew && h.Start != StartAll {
			add("start %q: must be %q or %q", h.Start, StartNew, StartAll)
		}
	}
	return errors.Join(errs...)
}

// Config configures a Notifier. Zero fields take the defaults above.
type Config struct {
	// Webhooks are the receivers (Load reads them from deploy/webhooks.json).
	Webhooks []Webhook
	// Env resolves each webhook's SecretEnv. Required.
	Env config.Env
	// Stream is the stream of signals; SubjectPrefix is prepended to a signal's type.
	Stream        string
	SubjectPrefix string
	// DurablePrefix names each webhook's durable consumer: DurablePrefix + name.
	DurablePrefix string
	// Retry of transient failures (408, 429, 5xx, network errors, timeouts): the
	// first retry waits InitialInterval, each next one Multiplier times longer, at
	// most MaxInterval, randomised by ±Jitter (a fraction); after MaxRetries retries
	// the delivery is parked. A negative MaxRetries means none.
	InitialInterval time.Duration
	Multiplier      float64
	MaxInterval     time.Duration
	MaxRetries      int
	Jitter          float64
	// AckWait is how long SIGNALS waits for a delivery's acknowledgement before
	// handing the signal out again (a crashed notifier). Default: the retry budget
	// (every attempt's timeout and every backoff) plus 10s; it may not be shorter.
	AckWait time.Duration
	// CloseTimeout bounds the wait for deliveries in progress on shutdown.
	CloseTimeout time.Duration
	// HTTPClient posts the deliveries; default a client that follows no redirect
	// (a 3xx is a refusal) and has no overall timeout (each POST is bounded by its
	// webhook's Timeout).
	HTTPClient *http.Client
	// Now is the clock of signatures; default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.DurablePrefix == "" {
		c.DurablePrefix = DefaultDurablePrefix
	}
	set(&c.InitialInterval, DefaultInitialInterval)
	set(&c.MaxInterval, DefaultMaxInterval)
	set(&c.CloseTimeout, DefaultCloseTimeout)
	if c.Multiplier == 0 {
		c.Multiplier = DefaultMultiplier
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.Jitter == 0 {
		c.Jitter = DefaultJitter
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.AckWait == 0 {
		c.AckWait = c.retryBudget() + 10*time.Second
	}
}

// timeout is a webhook's POST timeout.
func (h Webhook) timeout() time.Duration {
	if h.Timeout == 0 {
		return DefaultTimeout
	}
	return time.Duration(h.Timeout)
}

// retryBudget is the longest one delivery can take: every attempt times out and every
// backoff is at its longest.
func (c Config) retryBudget() time.Duration {
	longest := DefaultTimeout
	if len(c.Webhooks) > 0 {
		longest = 0
	}
	for _, h := range c.Webhooks {
		longest = max(longest, h.timeout())
	}
	total := time.Duration(c.MaxRetries+1) * longest
	interval := float64(c.InitialInterval)
	for range c.MaxRetries {
		wait := min(interval, float64(c.MaxInterval))
		total += time.Duration(wait * (1 + c.Jitter))
		interval = min(interval*c.Multiplier, math.MaxInt64/4)
	}
	return total
}

// Validate checks the configuration after defaults are applied; the error joins one
// error per problem, each naming its field.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("notify: "+format, args...)) }
	if len(c.Webhooks) == 0 {
		add("Webhooks: none configured")
	}
	if err := validateWebhooks(c.Webhooks); err != nil {
		errs = append(errs, fmt.Errorf("notify: %w", err))
	}
	if c.Env == nil {
		add("Env: required (resolves each webhook's secret_env)")
	} else {
		for i, h := range c.Webhooks {
			if h.SecretEnv == "" || !envPattern.MatchString(h.SecretEnv) {
				continue // reported above
			}
			if n := len(c.Env(h.SecretEnv)); n == 0 {
				add("webhooks[%d] (%s).secret_env %s: environment variable unset or empty", i, h.Name, h.SecretEnv)
			} else if n < MinSecretBytes {
				add("webhooks[%d] (%s).secret_env %s: secret of %d bytes, at least %d required", i, h.Name, h.SecretEnv, n, MinSecretBytes)
			}
		}
	}
	if !streamPattern.MatchString(c.Stream) {
		add("Stream %q: not a stream name", c.Stream)
	}
	if c.InitialInterval < 0 {
		add("InitialInterval %s: must be positive", c.InitialInterval)
	}
	if c.MaxInterval < c.InitialInterval {
		add("MaxInterval %s: must be at least InitialInterval (%s)", c.MaxInterval, c.InitialInterval)
	}
	if c.Multiplier < 1 {
		add("Multiplier %g: must be at least 1", c.Multiplier)
	}
	if c.MaxRetries > 100 {
		add("MaxRetries %d: at most 100", c.MaxRetries)
	}
	if c.Jitter < 0 || c.Jitter >= 1 {
		add("Jitter %g: must be in [0, 1)", c.Jitter)
	}
	if budget := c.retryBudget(); c.AckWait < budget {
		add("AckWait %s: shorter than the retry budget %s (every timeout and backoff): the stream would hand out signals still being retried", c.AckWait, budget)
	}
	if c.CloseTimeout < 0 {
		add("CloseTimeout %s: must be positive", c.CloseTimeout)
	}
	return errors.Join(errs...)
}

// Deps are the notifier's collaborators.
type Deps struct {
	// Pool holds the parked deliveries (schema notify). Required.
	Pool *pgxpool.Pool
	// NATS is the connection whose options the subscriber's own connection copies
	// (the watermill subscriber drains its connection when it closes). Required by Run.
	NATS *nats.Conn
	// Registry receives the metrics; nil: kept but not exported.
	Registry prometheus.Registerer
	// Log is the logger; nil discards.
	Log *slog.Logger
}
