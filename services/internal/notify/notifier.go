package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Metadata keys of a delivery's watermill message.
const (
	metaType      = "signal_type"
	metaWebhook   = "notify_webhook"
	metaAttempts  = "notify_attempts"
	metaStreamSeq = "stream_seq"
	// parkTopic is the poison queue's topic: the Parking publisher's only topic.
	parkTopic = "notify.parked"
)

// endpoint is a webhook with its secret resolved.
type endpoint struct {
	Webhook
	secret []byte
}

// Notifier delivers the signals of SIGNALS to webhooks.
type Notifier struct {
	cfg     Config
	deps    Deps
	hooks   map[string]*endpoint
	order   []string
	metrics *metrics
	log     *slog.Logger
}

// New returns a notifier. The parked table must exist (Migrate) before Run parks or
// Redeliver reads.
func New(cfg Config, deps Deps) (*Notifier, error) {
	cfg.setDefaults()
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if deps.Pool == nil {
		errs = append(errs, errors.New("notify: Deps.Pool: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{cfg: cfg, deps: deps, hooks: map[string]*endpoint{}, metrics: newMetrics(deps.Registry),
		log: deps.Log.With("component", "notify")}
	for _, h := range cfg.Webhooks {
		n.hooks[h.Name] = &endpoint{Webhook: h, secret: []byte(cfg.Env(h.SecretEnv))}
		n.order = append(n.order, h.Name)
	}
	return n, nil
}

// Durable is the name of a webhook's durable consumer on the signals stream.
func (n *Notifier) Durable(webhook string) string { return n.cfg.DurablePrefix + webhook }

// subjects are the filter subjects of a webhook's durable.
func (n *Notifier) subjects(h Webhook) []string {
	if len(h.Types) == 0 {
		return []string{n.cfg.SubjectPrefix + ">"}
	}
	var out []string
	for _, t := range h.Types {
		out = append(out, n.cfg.SubjectPrefix+t, n.cfg.SubjectPrefix+t+".>")
	}
	return out
}

// ensureConsumers creates or updates every webhook's durable. An existing durable
// keeps its position and start policy; its filter and ack wait follow the config.
func (n *Notifier) ensureConsumers(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, n.cfg.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", n.cfg.Stream, err)
	}
	for _, name := range n.order {
		h := n.hooks[name]
		cc := jetstream.ConsumerConfig{
			Durable:        n.Durable(name),
			Description:    "touchstream notify: deliveries to webhook " + name,
			DeliverPolicy:  jetstream.DeliverNewPolicy,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        n.cfg.AckWait,
			MaxDeliver:     -1,
			MaxAckPending:  1, // one delivery at a time, in stream order
			FilterSubjects: n.subjects(h.Webhook),
		}
		if h.Start == StartAll {
			cc.DeliverPolicy = jetstream.DeliverAllPolicy
		}
		c, err := s.Consumer(ctx, cc.Durable)
		switch {
		case err == nil:
			have := c.CachedInfo().Config
			cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = have.DeliverPolicy, have.OptStartSeq, have.OptStartTime
			_, err = s.UpdateConsumer(ctx, cc)
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			_, err = s.CreateConsumer(ctx, cc)
		}
		if err != nil {
			return fmt.Errorf("durable %s: %w", cc.Durable, err)
		}
	}
	return nil
}

// Run delivers until ctx ends, then returns nil once the deliveries in progress are
// done or CloseTimeout passed (an unfinished one is handed out again after AckWait).
// It creates the parked table and the durables; while SIGNALS is missing it waits,
// logging.
func (n *Notifier) Run(ctx context.Context) error {
	if n.deps.NATS == nil {
		return errors.New("notify: Deps.NATS: required by Run")
	}
	if err := Migrate(ctx, n.deps.Pool); err != nil {
		return err
	}
	// The watermill subscriber drains its connection when it closes, so it gets its
	// own, made with the caller's options.
	opts := n.deps.NATS.Opts
	opts.Name = strings.TrimSuffix(opts.Name, "-notify") + "-notify"
	nc, err := opts.Connect()
	if err != nil {
		return fmt.Errorf("notify: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	for {
		err := n.ensureConsumers(ctx, js)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		n.log.Warn("cannot create the webhooks' durables, retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(n.log, map[slog.Level]slog.Level{
		// Per-message lines become trace, lifecycle lines debug.
		slog.LevelDebug: watermill.LevelTrace,
		slog.LevelInfo:  slog.LevelDebug,
	})
	var consuming consumeContexts
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
		Conn:           nc,
		Logger:         wlog,
		AckWaitTimeout: n.cfg.AckWait,
		ResourceInitializer: func(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
			c, err := js.Consumer(ctx, n.cfg.Stream, n.Durable(topic))
			if err != nil {
				return nil, nil, err
			}
			return &stoppable{Consumer: c, consuming: &consuming}, nil, nil
		},
		NakDelay:    wmjs.NewStaticDelay(n.cfg.InitialInterval),
		Unmarshaler: unmarshaler{prefix: n.cfg.SubjectPrefix},
	})
	if err != nil {
		return fmt.Errorf("notify: subscriber: %w", err)
	}
	defer sub.Close()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: n.cfg.CloseTimeout}, wlog)
	if err != nil {
		return fmt.Errorf("notify: router: %w", err)
	}
	poison, err := middleware.PoisonQueueWithFilter(&Parking{Pool: n.deps.Pool, metrics: n.metrics, log: n.log}, parkTopic,
		func(err error) bool {
			// A delivery cut short by shutdown is not parked: it is handed out again.
			return ctx.Err() == nil && !errors.Is(err, context.Canceled)
		})
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	router.AddMiddleware(
		middleware.CorrelationID,
		poison,
		middleware.Retry{
			MaxRetries:          n.cfg.MaxRetries,
			InitialInterval:     n.cfg.InitialInterval,
			MaxInterval:         n.cfg.MaxInterval,
			Multiplier:          n.cfg.Multiplier,
			RandomizationFactor: n.cfg.Jitter,
			// Each attempt gets a fresh Timeout below.
			ResetContextOnRetry: true,
		}.Middleware,
	)
	for _, name := range n.order {
		h := n.hooks[name]
		handler := router.AddConsumerHandler(name, name, sub, func(msg *message.Message) error { return n.handle(h, msg) })
		handler.AddMiddleware(middleware.Timeout(h.timeout()), middleware.Recoverer)
	}
	n.log.Info("delivering signals", "stream", n.cfg.Stream, "webhooks", len(n.order), "ack_wait", n.cfg.AckWait)
	// Shutdown stops taking signals first and lets the deliveries in progress finish
	// (up to CloseTimeout); only then is the router's context cancelled. Cancelling it
	// while a signal is being handed to the router races the watermill-nats
	// subscriber's closing of its channel.
	rctx, cancelRouter := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRouter()
	routerDone := make(chan struct{})
	go func() {
		select {
		case <-routerDone:
			return
		case <-ctx.Done():
		}
		if !consuming.stop(n.cfg.CloseTimeout) {
			n.log.Warn("deliveries still in progress at shutdown: they will be handed out again after the ack wait",
				"close_timeout", n.cfg.CloseTimeout, "ack_wait", n.cfg.AckWait)
		}
		cancelRouter()
	}()
	err = router.Run(rctx)
	close(routerDone)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// stoppable is a durable whose consumption Run can stop before the router closes.
type stoppable struct {
	jetstream.Consumer
	consuming *consumeContexts
}

func (s *stoppable) Consume(h jetstream.MessageHandler, opts ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	cc, err := s.Consumer.Consume(h, opts...)
	if err == nil {
		s.consuming.add(cc)
	}
	return cc, err
}

// consumeContexts are the durables being consumed.
type consumeContexts struct {
	mu  sync.Mutex
	ccs []jetstream.ConsumeContext
}

func (c *consumeContexts) add(cc jetstream.ConsumeContext) {
	c.mu.Lock()
	c.ccs = append(c.ccs, cc)
	c.mu.Unlock()
}

// stop stops every consumption and waits, up to timeout, until no signal is being
// handled; false if the wait timed out.
func (c *consumeContexts) stop(timeout time.Duration) bool {
	c.mu.Lock()
	ccs := slices.Clone(c.ccs)
	c.mu.Unlock()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, cc := range ccs {
		cc.Stop()
	}
	for _, cc := range ccs {
		select {
		case <-cc.Closed():
		case <-deadline.C:
			return false
		}
	}
	return true
}

// handle is one attempt to deliver msg to h, run under the Retry middleware: nil on
// success, a permanent error (no retry) for a refusal, a transient one otherwise.
func (n *Notifier) handle(h *endpoint, msg *message.Message) error {
	attempt, _ := strconv.Atoi(msg.Metadata.Get(metaAttempts))
	attempt++
	msg.Metadata.Set(metaAttempts, strconv.Itoa(attempt))
	msg.Metadata.Set(metaWebhook, h.Name)
	typ := msg.Metadata.Get(metaType)
	err := n.post(msg.Context(), h, delivery{id: msg.UUID, typ: typ, body: msg.Payload, attempt: attempt})
	if err == nil {
		n.metrics.deliveries.WithLabelValues(h.Name, "delivered").Inc()
		n.log.Debug("signal delivered", "webhook", h.Name, "signal_id", msg.UUID, "signal_type", typ, "attempt", attempt)
		return nil
	}
	var de *DeliveryError
	if errors.As(err, &de) && de.Permanent {
		n.log.Info("webhook refused a signal", "webhook", h.Name, "signal_id", msg.UUID, "signal_type", typ,
			"attempt", attempt, "error", err)
		return backoff.Permanent(err)
	}
	if msg.Context().Err() != nil && errors.Is(context.Cause(msg.Context()), context.Canceled) {
		return err // shutting down
	}
	retry := attempt <= n.cfg.MaxRetries
	if retry {
		n.metrics.deliveries.WithLabelValues(h.Name, "retried").Inc()
	}
	n.log.Info("webhook delivery failed", "webhook", h.Name, "signal_id", msg.UUID, "signal_type", typ,
		"attempt", attempt, "retry", retry, "error", err)
	if de != nil && de.RetryAfter > 0 {
		return &retryAfterError{err: err, after: &backoff.RetryAfterError{Duration: de.RetryAfter}}
	}
	return err
}

// retryAfterError carries a receiver's Retry-After to the Retry middleware's backoff
// (which waits that long instead of its next interval).
type retryAfterError struct {
	err   error
	after *backoff.RetryAfterError
}

func (e *retryAfterError) Error() string   { return e.err.Error() }
func (e *retryAfterError) Unwrap() []error { return []error{e.err, e.after} }

// unmarshaler turns a SIGNALS message into a watermill message: the id is the
// Nats-Msg-Id (the signal id), the payload the body as stored. It never fails (the
// watermill-nats subscriber cannot handle a failure): a message without an id takes
// the one in its body, or its stream sequence.
type unmarshaler struct{ prefix string }

func (u unmarshaler) Unmarshal(m jetstream.Msg) (*message.Message, error) {
	id := m.Headers().Get(nats.MsgIdHdr)
	var seq uint64
	if md, err := m.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	if id == "" {
		var s struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(m.Data(), &s)
		id = s.ID
	}
	if id == "" {
		id = "stream-seq-" + strconv.FormatUint(seq, 10)
	}
	msg := message.NewMessage(id, m.Data())
	msg.Metadata.Set(metaType, strings.TrimPrefix(m.Subject(), u.prefix))
	msg.Metadata.Set(metaStreamSeq, strconv.FormatUint(seq, 10))
	middleware.SetCorrelationID(id, msg)
	return msg, nil
}
