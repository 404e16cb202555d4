package redeem

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/dedup"
)

// reversalSuffix makes a reversal's event id from its redemption's: deterministic, so
// publishing a reversal again is a duplicate, never a second retraction.
const reversalSuffix = ".reversal"

// redemptionEvent is the reservation's points.redeemed, the same bytes of meaning on
// every attempt: id, source and time come from the reservation.
func redemptionEvent(r *reservation) (*events.Event, error) {
	e, err := events.NewEvent(r.Customer, r.CreatedAt, events.PointsRedeemed{
		RedemptionID: r.ID, Points: r.Points, Partner: r.Partner, Item: r.Item, ReservationID: r.ID,
	})
	if err != nil {
		return nil, err
	}
	e.ID, e.Source = r.EventID, r.EventSource
	return e, nil
}

// reversalEvent is the event.retracted that reverses the reservation's redemption.
func reversalEvent(r *reservation) (*events.Event, error) {
	if r.ReversalEventID == nil || r.ReversalReason == nil || r.ReversedAt == nil {
		return nil, fmt.Errorf("reservation %s: no reversal recorded", r.ID)
	}
	e, err := events.NewEvent(r.Customer, *r.ReversedAt, events.EventRetracted{
		Target: events.EventRef{Source: r.EventSource, ID: r.EventID}, Reason: *r.ReversalReason,
	})
	if err != nil {
		return nil, err
	}
	e.ID, e.Source = *r.ReversalEventID, r.EventSource
	return e, nil
}

// publish appends e, publishing it again (same id: the stream keeps one) while its
// acknowledgement is lost, up to PublishAttempts times. With again set the event may
// already be stored from an earlier attempt beyond the stream's duplicate window, so
// the durable idempotency index (dedup) is asked first.
func (s *Server) publish(ctx context.Context, e *events.Event, again bool) (uint64, error) {
	if again {
		key := e.DedupKey()
		hits, err := dedup.Lookup(ctx, s.pool, []string{key})
		switch {
		case err == nil:
			if h, ok := hits[key]; ok {
				return h.Seq, nil
			}
		case isUndefinedTable(err): // no index in this database: the stream's window only
		default:
			return 0, err
		}
	}
	var err error
	for attempt := 1; attempt <= s.cfg.PublishAttempts; attempt++ {
		var res events.Result
		if res, err = s.pub.Publish(ctx, e); err == nil {
			if res.Duplicate {
				s.m.duplicates.Inc()
			}
			return res.Seq, nil
		}
		if !errors.Is(err, events.ErrAckUnknown) || ctx.Err() != nil {
			break
		}
		s.m.ackRetries.Inc()
	}
	return 0, fmt.Errorf("publish %s %s: %w", e.Type, e.ID, err)
}

// completeRedemption publishes a pending reservation's event and records it.
func (s *Server) completeRedemption(ctx context.Context, r *reservation, again bool) (*reservation, error) {
	e, err := redemptionEvent(r)
	if err != nil {
		return nil, err
	}
	seq, err := s.publish(ctx, e, again)
	if err != nil {
		if errors.Is(err, events.ErrInvalid) {
			// The contract refuses it: no attempt can store it. Release the points.
			if ferr := markFailed(context.WithoutCancel(ctx), s.pool, r.ID); ferr != nil {
				return nil, errors.Join(err, ferr)
			}
		}
		return nil, err
	}
	// Record it even if the client has gone: the event is in the log.
	return markPublished(context.WithoutCancel(ctx), s.pool, r.ID, seq, s.cfg.Now())
}

// completeReversal publishes a pending reversal's event and records it.
func (s *Server) completeReversal(ctx context.Context, r *reservation, again bool) (*reservation, error) {
	e, err := reversalEvent(r)
	if err != nil {
		return nil, err
	}
	seq, err := s.publish(ctx, e, again)
	if err != nil {
		return nil, err
	}
	return markReversed(context.WithoutCancel(ctx), s.pool, r.ID, seq)
}

// sweep republishes what requests left pending for longer than PendingGrace (a lost
// acknowledgement, a client gone, a crash between commit and publish): each with its
// own event id, so the log holds every redemption and reversal exactly once.
func (s *Server) sweep(ctx context.Context) error {
	cutoff := s.cfg.Now().Add(-s.cfg.PendingGrace)
	rows, err := s.pool.Query(ctx, `SELECT `+reservationColumns+` FROM redeem.reservations
		WHERE (status = 'pending' OR reversal_status = 'pending') AND created_at < $1
		ORDER BY created_at LIMIT 500`, cutoff)
	if err != nil {
		return fmt.Errorf("sweep: list pending: %w", err)
	}
	var pending []*reservation
	for rows.Next() {
		r, err := scanReservation(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("sweep: %w", err)
		}
		pending = append(pending, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sweep: list pending: %w", err)
	}
	var errs []error
	for _, r := range pending {
		if r.Status == statusPending {
			if _, err := s.completeRedemption(ctx, r, true); err != nil {
				errs = append(errs, err)
				continue
			}
			s.m.swept.WithLabelValues("redemption").Inc()
		}
		if r.ReversalStatus != nil && *r.ReversalStatus == statusPending && r.ReversedAt != nil && r.ReversedAt.Before(cutoff) {
			if _, err := s.completeReversal(ctx, r, true); err != nil {
				errs = append(errs, err)
				continue
			}
			s.m.swept.WithLabelValues("reversal").Inc()
		}
	}
	return errors.Join(errs...)
}

// sweepLoop runs sweep every SweepInterval until ctx ends. Failures are logged and
// retried at the next round.
func (s *Server) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("republishing pending redemptions failed; retrying at the next round", "error", err)
			}
		}
	}
}
