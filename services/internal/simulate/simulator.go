package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of Config; a zero field takes its default.
const (
	DefaultRate             = 200
	DefaultBatchSize        = 200
	DefaultLinger           = 200 * time.Millisecond
	DefaultConcurrency      = 4
	DefaultRequestTimeout   = 30 * time.Second
	DefaultDrainTimeout     = 15 * time.Second
	DefaultProgressInterval = time.Second
)

// Config configures a Simulator. Zero fields take the defaults above.
type Config struct {
	// Gateway is the gateway's base URL, e.g. http://127.0.0.1:8080; batches go to
	// <Gateway>/v1/events.
	Gateway string
	// Params is the population and its behaviour (deploy/simulator.json).
	Params *Params
	// Channels are the channel identities to write as, with their (development) keys.
	Channels []Channel
	// Seed makes the run reproducible: the same seed and parameters give the same
	// customers and events, ids included. Re-running a seed re-sends the same ids,
	// which the gateway answers as duplicates.
	Seed uint64
	// Customers is the initial population; zero: Params.Population.Customers.
	Customers int
	// Rate is the events per second sent (a token bucket).
	Rate float64
	// BatchSize bounds the events of one request; Linger is how long a batch waits
	// to fill before it is sent anyway.
	BatchSize int
	Linger    time.Duration
	// Concurrency bounds the requests in flight.
	Concurrency int
	// HistoryDays, when positive, generates that many days of past activity ending
	// now, then stops; zero runs live (event time = now) until cancelled.
	HistoryDays int
	// MaxEvents stops the run after that many events; zero: no limit.
	MaxEvents int64
	// RequestTimeout bounds one request; DrainTimeout bounds the flushing of batches
	// in flight after cancellation.
	RequestTimeout time.Duration
	DrainTimeout   time.Duration
	// Progress receives a progress line every ProgressInterval; nil: none. Terminal
	// makes it one updating line instead of a line per interval.
	Progress         io.Writer
	Terminal         bool
	ProgressInterval time.Duration
	// Log is the logger; nil discards.
	Log *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// HTTPClient sends the requests; nil: a client of its own.
	HTTPClient *http.Client
}

func (c *Config) setDefaults() {
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the configuration after defaults are applied. The error joins one
// error per problem, each naming its field.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := url.Parse(c.Gateway); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("simulate: Gateway %q: want an http:// or https:// URL", c.Gateway)
	}
	if c.Params == nil {
		add("simulate: Params: required")
	} else if err := c.Params.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("simulate: Params: %w", err))
	}
	if len(c.Channels) == 0 {
		add("simulate: Channels: at least one channel is required")
	}
	names := map[string]bool{}
	for i, ch := range c.Channels {
		switch {
		case ch.Name == "":
			add("simulate: Channels[%d].Name: required", i)
		case names[ch.Name]:
			add("simulate: Channels[%d].Name %q: listed twice", i, ch.Name)
		}
		names[ch.Name] = true
		if ch.Source == "" {
			add("simulate: Channels[%d] (%s).Source: required", i, ch.Name)
		}
		if ch.APIKey == "" {
			add("simulate: Channels[%d] (%s).APIKey: required", i, ch.Name)
		}
		if ch.MaxAge < 0 {
			add("simulate: Channels[%d] (%s).MaxAge: must not be negative", i, ch.Name)
		}
	}
	if c.Params != nil && len(c.Channels) > 0 {
		chs := map[string]*Channel{}
		for i := range c.Channels {
			chs[c.Channels[i].Name] = &c.Channels[i]
		}
		if err := checkRoutes(c.Params, chs); err != nil {
			errs = append(errs, fmt.Errorf("simulate: Channels: %w", err))
		}
	}
	if c.Customers < 0 || c.Customers > 10_000_000 {
		add("simulate: Customers %d: must be between 0 (the parameter file's) and 10,000,000", c.Customers)
	}
	if !(c.Rate > 0 && c.Rate <= 1_000_000) {
		add("simulate: Rate %v: must be positive, at most 1,000,000 events/s", c.Rate)
	}
	if c.BatchSize < 1 || c.BatchSize > 1000 {
		add("simulate: BatchSize %d: must be between 1 and 1000 (the gateway's batch limit)", c.BatchSize)
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		add("simulate: Concurrency %d: must be between 1 and 256", c.Concurrency)
	}
	if c.HistoryDays < 0 || c.HistoryDays > 3650 {
		add("simulate: HistoryDays %d: must be between 0 (live) and 3650", c.HistoryDays)
	}
	if c.MaxEvents < 0 {
		add("simulate: MaxEvents %d: must not be negative", c.MaxEvents)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"Linger", c.Linger}, {"RequestTimeout", c.RequestTimeout}, {"DrainTimeout", c.DrainTimeout}, {"ProgressInterval", c.ProgressInterval}} {
		if d.d < 0 {
			add("simulate: %s %s: must be positive", d.name, d.d)
		}
	}
	return errors.Join(errs...)
}

// Simulator generates a population's traffic and sends it through the gateway.
type Simulator struct {
	cfg      Config
	log      *slog.Logger
	gen      *Generator
	stamp    *stamper
	channels map[string]*Channel
	client   *client
	stats    stats

	mu     sync.Mutex // guards refusal bookkeeping and the generator's truth after Run
	refuse refusals
}

// New builds a simulator and its initial population. It does not send: call Run.
func New(cfg Config) (*Simulator, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now().Truncate(time.Second)
	gc := GeneratorConfig{Params: cfg.Params, Channels: cfg.Channels, Seed: cfg.Seed, Customers: cfg.Customers, Start: now}
	if cfg.HistoryDays > 0 {
		gc.Start = now.AddDate(0, 0, -cfg.HistoryDays)
		gc.End, gc.SendTime = now, now
	}
	gen, err := NewGenerator(gc)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency * 2, IdleConnTimeout: time.Minute}}
	}
	s := &Simulator{cfg: cfg, log: log, gen: gen, channels: gen.channels,
		client: &client{url: strings.TrimRight(cfg.Gateway, "/") + "/v1/events", http: hc}}
	s.stamp = newStamper(cfg.HistoryDays == 0, cfg.Now, gen.loc, gen.channels)
	return s, nil
}

// Stats are the counts of a run.
type Stats struct {
	Generated int64 // events handed to the sender
	Dropped   int64 // live mode: summaries and bills of a calendar period already covered
	Sent      int64 // events sent at least once
	Stored    int64
	Duplicate int64
	Refused   int64
	Abandoned int64 // not settled when the run stopped (cancelled past the drain timeout)
	Retries   int64 // requests repeated (rate limits, unknown outcomes, errors)
	Customers int64 // active customers
	Day       time.Time
}

type stats struct {
	generated, dropped, sent, stored, duplicate, refused, abandoned, retries, customers atomic.Int64
	day                                                                                 atomic.Int64 // unix seconds of the behaviour time reached
}

// Stats returns the counts so far.
func (s *Simulator) Stats() Stats {
	st := &s.stats
	return Stats{Generated: st.generated.Load(), Dropped: st.dropped.Load(), Sent: st.sent.Load(), Stored: st.stored.Load(),
		Duplicate: st.duplicate.Load(), Refused: st.refused.Load(), Abandoned: st.abandoned.Load(), Retries: st.retries.Load(),
		Customers: st.customers.Load(), Day: time.Unix(st.day.Load(), 0).In(s.gen.loc)}
}

// Truth returns the ground truth of the population; call it after Run returns.
func (s *Simulator) Truth() []Truth {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen.Truth()
}

// Run generates and sends events until the history is complete, MaxEvents are sent,
// or ctx is cancelled; call it once. On cancellation it stops generating, flushes the batches in
// flight (their retries included) within DrainTimeout and returns nil. It returns an
// error only when the gateway refuses a channel's key.
func (s *Simulator) Run(ctx context.Context) error {
	cfg := s.cfg
	hard, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	defer s.client.http.CloseIdleConnections()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(cfg.DrainTimeout, hardCancel)
		context.AfterFunc(hard, func() { t.Stop() })
	})
	defer stopDrain()

	mode := "live"
	if cfg.HistoryDays > 0 {
		mode = "history"
	}
	s.log.Info("simulation starting", "mode", mode, "seed", cfg.Seed, "customers", len(s.gen.customers),
		"rate", cfg.Rate, "history_days", cfg.HistoryDays, "max_events", cfg.MaxEvents, "params", cfg.Params.Name)
	var short []string
	for _, ch := range cfg.Channels {
		limit := ch.MaxAge
		if limit == 0 {
			limit = DefaultMaxAge
		}
		if time.Duration(cfg.HistoryDays)*day > limit-ageMargin && ch.Name != cfg.Params.HistoryChannel {
			short = append(short, ch.Name)
		}
	}
	if len(short) > 0 {
		s.log.Info("history reaches beyond some channels' late-arrival limits: their older events go through the history channel when it may write them, and are not generated otherwise",
			"channels", strings.Join(short, ","), "history_channel", cfg.Params.HistoryChannel)
	}
	start := time.Now()

	in := make(chan item, cfg.BatchSize)
	work := make(chan *batch)
	done := make(chan settled, cfg.Concurrency)
	var wg sync.WaitGroup
	wg.Go(func() { s.produce(ctx, hard, in) })
	for range cfg.Concurrency {
		wg.Go(func() {
			for b := range work {
				done <- settled{b: b, err: s.deliver(hard, b)}
			}
		})
	}
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		s.progress(stopProgress, start)
	}()

	err := s.dispatch(hard, in, work, done)
	if err != nil {
		hardCancel()
	}
	close(work)
	// Let a producer blocked on in and workers blocked on done finish.
	go func() {
		for range in {
			s.stats.abandoned.Add(1)
		}
	}()
	go func() {
		for range done {
		}
	}()
	wg.Wait()
	close(done)
	close(stopProgress)
	<-progressDone
	s.logRefusals()
	st := s.Stats()
	s.log.Info("simulation finished", "sent", st.Sent, "stored", st.Stored, "duplicates", st.Duplicate,
		"refused", st.Refused, "abandoned", st.Abandoned, "retries", st.Retries, "dropped", st.Dropped,
		"customers", st.Customers, "duration_ms", time.Since(start).Milliseconds())
	return err
}

// produce generates events, stamps them and hands them to the dispatcher at the
// configured rate. It closes in when it stops.
func (s *Simulator) produce(ctx, hard context.Context, in chan<- item) {
	defer close(in)
	burst := max(1, min(int(s.cfg.Rate/5), s.cfg.BatchSize))
	lim := rate.NewLimiter(rate.Limit(s.cfg.Rate), burst)
	for s.cfg.MaxEvents == 0 || s.stats.generated.Load() < s.cfg.MaxEvents {
		if ctx.Err() != nil || hard.Err() != nil {
			return
		}
		s.mu.Lock()
		d, ok := s.gen.Next()
		var it item
		var err error
		if ok {
			it.ev, err = s.stamp.stamp(d)
			it.ch, it.cust = s.channels[d.Channel], d.Index
			s.stats.day.Store(d.At.Unix())
		}
		s.stats.customers.Store(int64(s.gen.activeN))
		s.mu.Unlock()
		if !ok {
			return
		}
		if err != nil {
			s.log.Error("event not encoded", "event_id", d.ID, "error", err)
			continue
		}
		if it.ev == nil {
			s.stats.dropped.Add(1)
			continue
		}
		if err := lim.Wait(ctx); err != nil {
			return
		}
		select {
		case in <- it:
			s.stats.generated.Add(1)
		case <-ctx.Done():
			return
		case <-hard.Done():
			return
		}
	}
}
