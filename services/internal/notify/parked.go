package notify

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/projections/migrate"
)

// Schema is the PostgreSQL schema of the parked deliveries (table parked).
const Schema = "notify"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates the parked table (schema notify). Run calls it.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "notify", Schema, migrations, "migrations")
}

// ErrNotParked: no parked delivery of that signal to that webhook.
var ErrNotParked = errors.New("not parked")

// maxErrorLen bounds the stored last error.
const maxErrorLen = 1000

// Parking is the poison queue: a watermill message.Publisher that writes each message
// to notify.parked, keyed by (webhook, signal id). The router's PoisonQueue middleware
// publishes to it a delivery that failed permanently or after every retry; the
// message is acknowledged on the stream only once its row is written.
type Parking struct {
	Pool    *pgxpool.Pool
	metrics *metrics
	log     *slog.Logger
}

var _ message.Publisher = (*Parking)(nil)

// Publish parks msgs; topic is ignored (there is one table). Each message carries its
// webhook, signal type, attempts and the reason in its metadata.
func (p *Parking) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		webhook := m.Metadata.Get(metaWebhook)
		if webhook == "" {
			webhook = m.Metadata.Get(middleware.PoisonedHandlerKey)
		}
		attempts, _ := strconv.Atoi(m.Metadata.Get(metaAttempts))
		reason := truncate(m.Metadata.Get(middleware.ReasonForPoisonedKey), maxErrorLen)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(m.Context()), 10*time.Second)
		err := park(ctx, p.Pool, webhook, m.UUID, m.Metadata.Get(metaType), string(m.Payload), reason, attempts)
		cancel()
		if err != nil {
			return err
		}
		if p.metrics != nil {
			p.metrics.deliveries.WithLabelValues(webhook, "parked").Inc()
		}
		if p.log != nil {
			p.log.Warn("delivery parked", "webhook", webhook, "signal_id", m.UUID, "signal_type", m.Metadata.Get(metaType),
				"attempts", attempts, "error", reason)
		}
	}
	return nil
}

// Close does nothing: the pool belongs to the caller.
func (p *Parking) Close() error { return nil }

func park(ctx context.Context, pool *pgxpool.Pool, webhook, id, typ, body, reason string, attempts int) error {
	_, err := pool.Exec(ctx, `INSERT INTO notify.parked (webhook, signal_id, signal_type, body, last_error, attempts)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (webhook, signal_id) DO UPDATE SET last_error = excluded.last_error,
			attempts = parked.attempts + excluded.attempts, parked_at = now()`,
		webhook, id, typ, body, reason, attempts)
	if err != nil {
		return fmt.Errorf("park signal %s for %s: %w", id, webhook, err)
	}
	return nil
}

// ParkedDelivery is a parked row.
type ParkedDelivery struct {
	Webhook    string    `json:"webhook"`
	SignalID   string    `json:"signal_id"`
	SignalType string    `json:"signal_type"`
	Body       string    `json:"body"`
	LastError  string    `json:"last_error"`
	Attempts   int       `json:"attempts"`
	ParkedAt   time.Time `json:"parked_at"`
}

// Parked lists parked deliveries, oldest first: those of webhook, or of every webhook
// when it is empty; at most limit (0: 100).
func Parked(ctx context.Context, pool *pgxpool.Pool, webhook string, limit int) ([]ParkedDelivery, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := pool.Query(ctx, `SELECT webhook, signal_id, signal_type, body, last_error, attempts, parked_at
		FROM notify.parked WHERE $1 = '' OR webhook = $1 ORDER BY parked_at, webhook, signal_id LIMIT $2`, webhook, limit)
	if err != nil {
		return nil, fmt.Errorf("parked %s: %w", webhook, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ParkedDelivery, error) {
		var p ParkedDelivery
		err := r.Scan(&p.Webhook, &p.SignalID, &p.SignalType, &p.Body, &p.LastError, &p.Attempts, &p.ParkedAt)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("parked %s: %w", webhook, err)
	}
	return out, nil
}

// Discard deletes a parked delivery without delivering it (ErrNotParked if there is
// none).
func Discard(ctx context.Context, pool *pgxpool.Pool, webhook, signalID string) error {
	tag, err := pool.Exec(ctx, "DELETE FROM notify.parked WHERE webhook = $1 AND signal_id = $2", webhook, signalID)
	if err != nil {
		return fmt.Errorf("discard %s for %s: %w", signalID, webhook, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("discard %s for %s: %w", signalID, webhook, ErrNotParked)
	}
	return nil
}

// Redeliver posts a parked delivery now, once (no retries), with its stored body and
// attempt number attempts+1. On a 2xx the row is deleted; otherwise its attempts and
// last error are updated and the *DeliveryError returned. Concurrent Redelivers of
// one row are serialised (row lock), and the second finds it gone (ErrNotParked).
func (n *Notifier) Redeliver(ctx context.Context, webhook, signalID string) error {
	h, ok := n.hooks[webhook]
	if !ok {
		return fmt.Errorf("redeliver %s: webhook %q is not configured", signalID, webhook)
	}
	return pgx.BeginFunc(ctx, n.deps.Pool, func(tx pgx.Tx) error {
		var d delivery
		var attempts int
		err := tx.QueryRow(ctx, `SELECT signal_type, body, attempts FROM notify.parked
			WHERE webhook = $1 AND signal_id = $2 FOR UPDATE`, webhook, signalID).Scan(&d.typ, &d.body, &attempts)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("redeliver %s to %s: %w", signalID, webhook, ErrNotParked)
		}
		if err != nil {
			return fmt.Errorf("redeliver %s to %s: %w", signalID, webhook, err)
		}
		d.id, d.attempt = signalID, attempts+1
		if perr := n.post(ctx, h, d); perr != nil {
			if _, err := tx.Exec(ctx, `UPDATE notify.parked SET attempts = attempts + 1, last_error = $3
				WHERE webhook = $1 AND signal_id = $2`, webhook, signalID, truncate(perr.Error(), maxErrorLen)); err != nil {
				return errors.Join(perr, err)
			}
			return fmt.Errorf("redeliver %s: %w", signalID, perr)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM notify.parked WHERE webhook = $1 AND signal_id = $2", webhook, signalID); err != nil {
			return fmt.Errorf("redeliver %s to %s: delivered, but not removed from parked: %w", signalID, webhook, err)
		}
		n.metrics.deliveries.WithLabelValues(webhook, "redelivered").Inc()
		n.log.Info("parked delivery redelivered", "webhook", webhook, "signal_id", signalID, "signal_type", d.typ)
		return nil
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
