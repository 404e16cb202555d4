package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Forwarder defaults.
const (
	DefaultStream        = "SIGNALS"
	DefaultSubjectPrefix = "signals."
	DefaultGroup         = "signals_forwarder"
)

// Forwarder moves committed signals from the outbox to the SIGNALS stream, in outbox
// order, each acknowledged in the outbox only after JetStream stored it (or reported
// it a duplicate). Run it beside the projections; several processes may run one:
// the outbox's consumer-group lock lets one forward at a time.
type Forwarder struct {
	Pool *pgxpool.Pool
	JS   jetstream.JetStream
	// Stream is the stream expected to store the signals; default SIGNALS.
	Stream string
	// SubjectPrefix is prepended to the signal type; default "signals.".
	SubjectPrefix string
	// Group is the outbox consumer group, whose position is kept in
	// outbox.signals_offsets; default "signals_forwarder".
	Group string
	// PollInterval is the wait after finding the outbox empty; default 100ms.
	PollInterval time.Duration
	// RetryInterval is the wait after a failed read of the outbox or a failed publish;
	// default 500ms.
	RetryInterval time.Duration
	// PublishTimeout bounds one publish; default 5s.
	PublishTimeout time.Duration
	// Retention is how long forwarded rows stay in the outbox (for inspection) before
	// the forwarder prunes them, every PruneInterval; defaults 7 days and 10 minutes.
	// A negative Retention keeps them forever.
	Retention     time.Duration
	PruneInterval time.Duration
	// Registry receives the metrics; nil: not exported.
	Registry prometheus.Registerer
	Log      *slog.Logger
}

func (f *Forwarder) setDefaults() {
	if f.Stream == "" {
		f.Stream = DefaultStream
	}
	if f.SubjectPrefix == "" {
		f.SubjectPrefix = DefaultSubjectPrefix
	}
	if f.Group == "" {
		f.Group = DefaultGroup
	}
	if f.PollInterval == 0 {
		f.PollInterval = 100 * time.Millisecond
	}
	if f.RetryInterval == 0 {
		f.RetryInterval = 500 * time.Millisecond
	}
	if f.PublishTimeout == 0 {
		f.PublishTimeout = 5 * time.Second
	}
	if f.Retention == 0 {
		f.Retention = 7 * 24 * time.Hour
	}
	if f.PruneInterval == 0 {
		f.PruneInterval = 10 * time.Minute
	}
	if f.Log == nil {
		f.Log = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the forwarder's settings.
func (f Forwarder) Validate() error {
	var errs []error
	if f.Pool == nil {
		errs = append(errs, errors.New("outbox forwarder: Pool is required"))
	}
	if f.JS == nil {
		errs = append(errs, errors.New("outbox forwarder: JS is required"))
	}
	if f.PollInterval < 0 || f.RetryInterval < 0 || f.PublishTimeout < 0 || f.PruneInterval < 0 {
		errs = append(errs, errors.New("outbox forwarder: intervals and timeouts must not be negative"))
	}
	return errors.Join(errs...)
}

// Run forwards until ctx ends, then returns nil. It creates the outbox tables if
// missing. Failures of PostgreSQL or NATS are retried forever (logged); an abrupt end
// (ctx cancelled, process killed, connections dropped) loses nothing: what was
// published but not yet acknowledged in the outbox is published again, with the same
// Nats-Msg-Id.
func (f Forwarder) Run(ctx context.Context) error {
	f.setDefaults()
	if err := f.Validate(); err != nil {
		return err
	}
	m := newMetrics(f.Registry)
	log := f.Log.With("component", "outbox_forwarder", "stream", f.Stream)
	for {
		err := Migrate(ctx, f.Pool)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("cannot create the outbox tables, retrying", "error", err)
		if !sleep(ctx, f.RetryInterval) {
			return nil
		}
	}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(f.Pool), wsql.SubscriberConfig{
		ConsumerGroup:  f.Group,
		PollInterval:   f.PollInterval,
		ResendInterval: f.RetryInterval,
		RetryInterval:  f.RetryInterval,
		SchemaAdapter:  schemaAdapter,
		OffsetsAdapter: offsetsAdapter,
	}, watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{
		// Per-message debug lines become trace; query errors are retried, so warnings.
		slog.LevelDebug: watermill.LevelTrace,
		slog.LevelError: slog.LevelWarn,
	}))
	if err != nil {
		return fmt.Errorf("outbox forwarder: %w", err)
	}
	defer sub.Close()
	var msgs <-chan *message.Message
	for {
		if msgs, err = sub.Subscribe(ctx, topic); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("cannot subscribe to the outbox, retrying", "error", err)
		if !sleep(ctx, f.RetryInterval) {
			return nil
		}
	}
	log.Info("forwarding signals", "group", f.Group)
	pctx, stopPruning := context.WithCancel(ctx)
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		if f.Retention >= 0 {
			f.prune(pctx, log)
		}
	}()
	defer func() { stopPruning(); <-pruned }()
	failing := 0
	for msg := range msgs {
		err := f.forward(msg, m)
		if err == nil {
			if failing > 0 {
				log.Info("forwarding again", "failed_attempts", failing)
				failing = 0
			}
			msg.Ack()
			continue
		}
		m.errors.Inc()
		// Every failed attempt is counted; the log says so on the first and then every
		// hundredth, so a stream that is missing for an hour does not flood it.
		if failing%100 == 0 {
			log.Warn("cannot forward a signal, retrying", "signal_id", msg.UUID, "failed_attempts", failing+1, "error", err)
		}
		failing++
		msg.Nack()
	}
	return nil
}

// forward publishes one outbox message and waits for the stream's acknowledgement.
func (f Forwarder) forward(msg *message.Message, m *metrics) error {
	typ := msg.Metadata.Get(metaType)
	if typ == "" {
		// Written by Emit, a row always has a type; one written by hand may not. Take it
		// from the payload.
		var s struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(msg.Payload, &s)
		typ = s.Type
	}
	if !typePattern.MatchString(typ) {
		// No subject can carry it: skip it rather than block every signal behind it.
		m.forwarded.WithLabelValues("invalid").Inc()
		f.Log.Error("outbox row without a valid signal type skipped", "signal_id", msg.UUID)
		return nil
	}
	ctx, cancel := context.WithTimeout(msg.Context(), f.PublishTimeout)
	defer cancel()
	out := &nats.Msg{Subject: f.SubjectPrefix + typ, Data: msg.Payload, Header: nats.Header{}}
	out.Header.Set("Content-Type", "application/json")
	ack, err := f.JS.PublishMsg(ctx, out, jetstream.WithMsgID(msg.UUID), jetstream.WithExpectStream(f.Stream))
	if err != nil {
		return fmt.Errorf("publish %s: %w", out.Subject, err)
	}
	if ack.Duplicate {
		m.forwarded.WithLabelValues("duplicate").Inc()
	} else {
		m.forwarded.WithLabelValues("stored").Inc()
	}
	if at, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(metaEmittedAt)); err == nil {
		m.delay.Observe(time.Since(at).Seconds())
	}
	return nil
}

// prune deletes forwarded rows older than Retention every PruneInterval until ctx ends.
func (f Forwarder) prune(ctx context.Context, log *slog.Logger) {
	for sleep(ctx, f.PruneInterval) {
		n, err := Prune(ctx, f.Pool, f.Group, f.Retention)
		if err != nil && ctx.Err() == nil {
			log.Warn("cannot prune the outbox", "error", err)
		} else if n > 0 {
			log.Info("pruned forwarded signals from the outbox", "rows", n)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
