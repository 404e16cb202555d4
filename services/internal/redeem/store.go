package redeem

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/projections/migrate"
)

// Schema is the PostgreSQL schema of the reservations.
const Schema = "redeem"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or upgrades the reservations table.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "redeem", Schema, migrations, "migrations")
}

// Reservation states.
const (
	statusPending   = "pending"   // reserved; points.redeemed not yet acknowledged
	statusPublished = "published" // in the log; not yet folded by the loyalty projection
	statusSettled   = "settled"   // folded: the balance holds it
	statusFailed    = "failed"    // the log refused the event for good; holds nothing
)

// reservation is one row of redeem.reservations.
type reservation struct {
	ID              string
	Customer        string
	Key             string
	Points          int64
	Partner         string
	Item            string
	Status          string
	CreatedAt       time.Time
	EventSource     string
	EventID         string
	Seq             *int64
	ReversalReason  *string
	ReversalStatus  *string
	ReversalEventID *string
	ReversalSeq     *int64
	ReversedAt      *time.Time
}

const reservationColumns = `id, customer_id, idempotency_key, points, partner, item, status, created_at,
	event_source, event_id, stream_seq, reversal_reason, reversal_status, reversal_event_id, reversal_seq, reversed_at`

func scanReservation(row pgx.Row) (*reservation, error) {
	var r reservation
	err := row.Scan(&r.ID, &r.Customer, &r.Key, &r.Points, &r.Partner, &r.Item, &r.Status, &r.CreatedAt,
		&r.EventSource, &r.EventID, &r.Seq, &r.ReversalReason, &r.ReversalStatus, &r.ReversalEventID, &r.ReversalSeq, &r.ReversedAt)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// lockKey is the advisory lock of a member: every reservation of the member is
// decided holding it, and nothing else in the service takes a lock.
func lockKey(customer string) string { return "touchstream.redeem/" + customer }

// errNoRows reports a query that found nothing.
func errNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// isUndefinedTable: a table (or its schema) does not exist.
func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
}

// markPublished records the stream sequence of a reservation's points.redeemed. A
// reservation the projection already settled stays settled.
func markPublished(ctx context.Context, pool *pgxpool.Pool, id string, seq uint64, at time.Time) (*reservation, error) {
	r, err := scanReservation(pool.QueryRow(ctx, `UPDATE redeem.reservations
		SET stream_seq = $2, published_at = coalesce(published_at, $3),
		    status = CASE WHEN status = 'pending' THEN 'published' ELSE status END
		WHERE id = $1 RETURNING `+reservationColumns, id, int64(seq), at))
	if err != nil {
		return nil, fmt.Errorf("mark reservation %s published: %w", id, err)
	}
	return r, nil
}

// markFailed releases a reservation whose event the log refused for good.
func markFailed(ctx context.Context, pool *pgxpool.Pool, id string) error {
	if _, err := pool.Exec(ctx, `UPDATE redeem.reservations SET status = 'failed' WHERE id = $1 AND status = 'pending'`, id); err != nil {
		return fmt.Errorf("mark reservation %s failed: %w", id, err)
	}
	return nil
}

// markReversed records the stream sequence of a reservation's event.retracted.
func markReversed(ctx context.Context, pool *pgxpool.Pool, id string, seq uint64) (*reservation, error) {
	r, err := scanReservation(pool.QueryRow(ctx, `UPDATE redeem.reservations
		SET reversal_seq = $2, reversal_status = 'published'
		WHERE id = $1 RETURNING `+reservationColumns, id, int64(seq)))
	if err != nil {
		return nil, fmt.Errorf("mark reservation %s reversed: %w", id, err)
	}
	return r, nil
}

// getReservation reads one reservation; nil when there is none.
func getReservation(ctx context.Context, pool *pgxpool.Pool, id string) (*reservation, error) {
	r, err := scanReservation(pool.QueryRow(ctx, `SELECT `+reservationColumns+` FROM redeem.reservations WHERE id = $1`, id))
	if errNoRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read reservation %s: %w", id, err)
	}
	return r, nil
}
