package keystore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
)

// MaxRequestBytes bounds a request's payload: MaxNames ids of 64 characters fit many
// times over.
const MaxRequestBytes = 256 << 10

// Outcomes of a request, the outcome label of touchstream_keys_requests_total.
const (
	OutcomeOK       = "ok"       // answered with keys
	OutcomeInvalid  = "invalid"  // refused: malformed, oversized, or on the wrong subject
	OutcomeError    = "error"    // the store failed; answered with a generic error and a reference
	OutcomeBusy     = "busy"     // every worker busy and the backlog full: answered "busy"
	OutcomeExpired  = "expired"  // waited longer than MaxWait: dropped, its caller has given up
	OutcomeShutdown = "shutdown" // arrived while the service was stopping: answered with an error
)

// ServiceConfig tunes a Service. Zero values take the defaults.
type ServiceConfig struct {
	// Queue is the NATS queue group shared by every key service instance
	// (default "touchstream-keys").
	Queue string
	// Workers is how many requests are served at once, each holding at most one
	// database connection (default: the pool's MaxConns).
	Workers int
	// Backlog is how many requests may wait for a worker; beyond it requests are
	// answered "busy" at once (default 16 per worker).
	Backlog int
	// MaxWait: a request that waited longer than this for a worker is dropped
	// unanswered, since its caller has given up (default 2s, events.KeyClient's timeout).
	MaxWait time.Duration
	// RequestTimeout bounds the store's work for one request (default 5s).
	RequestTimeout time.Duration
	// DrainTimeout bounds the shutdown: answering the requests already accepted
	// (default 10s).
	DrainTimeout time.Duration
}

func (c *ServiceConfig) defaults(poolSize int) {
	if c.Queue == "" {
		c.Queue = "touchstream-keys"
	}
	if c.Workers == 0 {
		c.Workers = max(poolSize, 1)
	}
	if c.Backlog == 0 {
		c.Backlog = 16 * c.Workers
	}
	if c.MaxWait == 0 {
		c.MaxWait = 2 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
}

// Validate checks the configuration.
func (c *ServiceConfig) Validate() error {
	var errs []error
	if c.Workers < 0 || c.Workers > 1024 {
		errs = append(errs, fmt.Errorf("workers %d: want 1 to 1024 (0: the database pool's size)", c.Workers))
	}
	if c.Backlog < 0 {
		errs = append(errs, fmt.Errorf("backlog %d: must not be negative", c.Backlog))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"max wait", c.MaxWait}, {"request timeout", c.RequestTimeout}, {"drain timeout", c.DrainTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must not be negative", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// ServiceDeps are a Service's collaborators.
type ServiceDeps struct {
	Store    *Store
	NC       *nats.Conn
	Log      *slog.Logger          // default: discard
	Registry prometheus.Registerer // default: a private registry
	// Erasures is the log whose customer.erased events Run re-applies before serving
	// (a key store restored from a backup older than an erasure). nil: none are
	// re-applied; only for a store that has no log.
	Erasures *ErasureLog
}

// Service answers the key service's NATS request-reply API (events.KeySubjectCustomers
// and events.KeySubjectIDs) from a Store.
type Service struct {
	cfg      ServiceConfig
	store    *Store
	nc       *nats.Conn
	log      *slog.Logger
	m        *metrics
	erasures *ErasureLog
}

// NewService returns a service answering from deps.Store over deps.NC.
func NewService(cfg ServiceConfig, deps ServiceDeps) (*Service, error) {
	if deps.Store == nil || deps.NC == nil {
		return nil, errors.New("keystore: new service: store and nats connection are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("keystore: new service: %w", err)
	}
	cfg.defaults(int(deps.Store.pool.Config().MaxConns))
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("keystore: new service: %w", err)
	}
	if deps.Erasures != nil && deps.Erasures.JS == nil {
		return nil, errors.New("keystore: new service: Erasures.JS is required")
	}
	if deps.Erasures != nil {
		if err := deps.Erasures.Layout.Validate(); err != nil {
			return nil, fmt.Errorf("keystore: new service: Erasures.Layout: %w", err)
		}
	}
	return &Service{cfg: cfg, store: deps.Store, nc: deps.NC, log: deps.Log, m: m, erasures: deps.Erasures}, nil
}

type job struct {
	msg     *nats.Msg
	subject string
	arrived time.Time
}

// Run serves requests until ctx is cancelled, then stops taking new ones, answers those
// already accepted (within DrainTimeout) and returns nil. It returns an error if it
// cannot subscribe or if the NATS connection is closed under it; a disconnection is
// not an error: the connection reconnects and the subscriptions resume. Call Run once.
func (s *Service) Run(ctx context.Context) error {
	closed := s.nc.StatusChanged(nats.CLOSED)
	defer s.nc.RemoveStatusListener(closed)
	if s.nc.IsClosed() {
		return errors.New("keystore: nats connection is closed")
	}
	if s.erasures != nil && !s.reapplyAtStart(ctx) {
		return nil // cancelled before serving anything
	}

	jobs := make(chan job, s.cfg.Backlog)
	var (
		gate     sync.RWMutex // held shared while enqueueing, exclusively to stop
		stopping bool
	)
	subscribe := func(subject string) (*nats.Subscription, error) {
		return s.nc.QueueSubscribe(subject, s.cfg.Queue, func(m *nats.Msg) {
			j := job{msg: m, subject: subject, arrived: time.Now()}
			gate.RLock()
			defer gate.RUnlock()
			if stopping {
				s.refuse(j, "key service is stopping: retry", OutcomeShutdown)
				return
			}
			select {
			case jobs <- j:
			default:
				s.refuse(j, "key service busy: retry later", OutcomeBusy)
			}
		})
	}
	var subs []*nats.Subscription
	for _, subject := range []string{events.KeySubjectCustomers, events.KeySubjectIDs, SubjectErase} {
		sub, err := subscribe(subject)
		if err != nil {
			for _, sub := range subs {
				_ = sub.Unsubscribe()
			}
			return fmt.Errorf("keystore: subscribe %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	// Make sure the server knows our interest before we say we are ready. If it is
	// unreachable right now, the subscriptions are sent when the connection is back.
	if err := s.nc.FlushTimeout(5 * time.Second); err != nil {
		s.log.Warn("key service: nats flush failed; serving once reconnected", "error", err)
	}

	// Workers answer accepted requests, through the drain too: their context outlives
	// ctx by at most DrainTimeout.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() {
			for j := range jobs {
				s.serve(work, j)
			}
		})
	}
	s.log.Info("key service ready", "queue", s.cfg.Queue, "workers", s.cfg.Workers, "backlog", s.cfg.Backlog)

	var err error
	select {
	case <-ctx.Done():
	case <-closed:
		err = errors.New("keystore: nats connection closed")
	}

	deadline := time.AfterFunc(s.cfg.DrainTimeout, stopWork)
	defer deadline.Stop()
	s.drain(work, subs)
	gate.Lock()
	stopping = true
	close(jobs)
	gate.Unlock()
	wg.Wait()
	s.log.Info("key service stopped")
	return err
}

// drain stops the subscriptions' interest and waits until the messages they had
// received are handed over (or the drain deadline passes). Without a connection there
// is no interest to withdraw and no way to answer: it just unsubscribes.
func (s *Service) drain(ctx context.Context, subs []*nats.Subscription) {
	for _, sub := range subs {
		if !s.nc.IsConnected() {
			_ = sub.Unsubscribe()
			continue
		}
		done := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			_ = sub.Unsubscribe()
			continue
		}
	wait:
		for {
			select {
			case _, ok := <-done:
				if !ok {
					break wait
				}
			case <-ctx.Done():
				_ = sub.Unsubscribe()
				break wait
			}
		}
	}
}

// refuse answers a request it will not serve.
func (s *Service) refuse(j job, reason, outcome string) {
	if j.msg.Reply != "" {
		body, _ := json.Marshal(events.KeyReply{Error: reason})
		_ = j.msg.Respond(body)
	}
	s.m.observe(j.subject, outcome, time.Since(j.arrived))
}

func (s *Service) serve(ctx context.Context, j job) {
	if wait := time.Since(j.arrived); wait > s.cfg.MaxWait {
		s.log.Debug("key request dropped after waiting too long", "subject", j.subject, "wait", wait)
		s.m.observe(j.subject, OutcomeExpired, wait)
		return
	}
	if j.msg.Reply == "" {
		s.m.observe(j.subject, OutcomeInvalid, time.Since(j.arrived))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	var (
		reply   any
		outcome string
	)
	if j.subject == SubjectErase {
		reply, outcome = s.eraseJob(ctx, j)
	} else {
		reply, outcome = s.answer(ctx, j)
	}
	cancel()
	body, err := json.Marshal(reply)
	if err != nil { // cannot happen: the reply is strings and bytes
		body, outcome = []byte(`{"error":"key service internal error"}`), OutcomeError
	}
	if err := j.msg.Respond(body); err != nil {
		s.log.Warn("key reply not sent", "subject", j.subject, "error", err)
	}
	s.m.observe(j.subject, outcome, time.Since(j.arrived))
}

// answer computes the reply to one request. Errors shown to the caller are either
// ErrInvalidRequest messages, which name fields but never echo values, or a generic
// message with a reference to the log line.
func (s *Service) answer(ctx context.Context, j job) (events.KeyReply, string) {
	if n := len(j.msg.Data); n > MaxRequestBytes {
		return events.KeyReply{Error: fmt.Sprintf("%s: request is %d bytes, at most %d", ErrInvalidRequest, n, MaxRequestBytes)}, OutcomeInvalid
	}
	var req events.KeyRequest
	if err := json.Unmarshal(j.msg.Data, &req); err != nil {
		return events.KeyReply{Error: fmt.Sprintf("%s: body is not a JSON key request", ErrInvalidRequest)}, OutcomeInvalid
	}
	var (
		reply events.KeyReply
		err   error
	)
	switch j.subject {
	case events.KeySubjectCustomers:
		if len(req.IDs) > 0 {
			return events.KeyReply{Error: fmt.Sprintf("%s: ids: not accepted on %s, ask %s", ErrInvalidRequest, j.subject, events.KeySubjectIDs)}, OutcomeInvalid
		}
		var (
			keys    map[string]events.DataKey
			created int
		)
		keys, created, err = s.store.customerKeys(ctx, req.Customers)
		s.m.created.Add(float64(created))
		if err == nil {
			reply.Keys = ordered(dedup(req.Customers), keys)
		}
	case events.KeySubjectIDs:
		if len(req.Customers) > 0 {
			return events.KeyReply{Error: fmt.Sprintf("%s: customers: not accepted on %s, ask %s", ErrInvalidRequest, j.subject, events.KeySubjectCustomers)}, OutcomeInvalid
		}
		var keys map[string]events.DataKey
		keys, reply.Erased, err = s.store.keysByID(ctx, req.IDs)
		if err == nil {
			reply.Keys = ordered(dedup(req.IDs), keys)
		}
	}
	switch {
	case err == nil:
		return reply, OutcomeOK
	case errors.Is(err, ErrInvalidRequest):
		return events.KeyReply{Error: err.Error()}, OutcomeInvalid
	default:
		ref := newRef()
		s.log.Error("key request failed", "subject", j.subject, "ref", ref, "error", err)
		return events.KeyReply{Error: "key service internal error (ref " + ref + ")"}, OutcomeError
	}
}

// ordered lists keys in the order of names.
func ordered(names []string, keys map[string]events.DataKey) []events.DataKey {
	out := make([]events.DataKey, 0, len(keys))
	for _, n := range names {
		if k, ok := keys[n]; ok {
			out = append(out, k)
		}
	}
	return out
}

func newRef() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type metrics struct {
	requests *prometheus.CounterVec   // subject, outcome
	seconds  *prometheus.HistogramVec // subject
	created  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var errs []error
	m := &metrics{
		requests: register(reg, &errs, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "touchstream_keys_requests_total",
			Help: "Key service requests, by subject and outcome (ok, invalid, error, busy, expired, shutdown).",
		}, []string{"subject", "outcome"})),
		seconds: register(reg, &errs, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "touchstream_keys_request_seconds",
			Help:    "Time from a key request's arrival to its answer, waiting for a worker included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"subject"})),
		created: register(reg, &errs, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "touchstream_keys_created_total",
			Help: "Data keys created for customers that had none.",
		})),
	}
	return m, errors.Join(errs...)
}

func (m *metrics) observe(subject, outcome string, d time.Duration) {
	m.requests.WithLabelValues(subject, outcome).Inc()
	m.seconds.WithLabelValues(subject).Observe(d.Seconds())
}

// register registers c, or returns the collector already registered under its name, so
// that a service restarted in one process keeps counting on the same series.
func register[C prometheus.Collector](reg prometheus.Registerer, errs *[]error, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		*errs = append(*errs, err)
	}
	return c
}
