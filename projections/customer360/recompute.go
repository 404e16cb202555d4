package customer360

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/projections"
)

var _ projections.CustomerRecomputer = (*Projection)(nil)

// RecomputeCustomer implements projections.CustomerRecomputer: the customer's profile
// is replaced by Recompute over its history (retracted events count in no aggregate),
// its phone search hash derived again, and stored with the same upsert as a batch. The
// month the profile is computed for never goes back: clock ticks are partition-wide
// and not in a customer's history, so the month the stored profile had reached (by a
// tick) is kept when it is later than the last event's. A customer without events
// loses its profile.
func (p *Projection) RecomputeCustomer(ctx context.Context, tx pgx.Tx, customer string, partition int, history []*projections.Envelope) error {
	if len(history) == 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM `+p.table+` WHERE customer_id = $1`, customer); err != nil {
			return fmt.Errorf("customer360 recompute: delete profile: %w", err)
		}
		return nil
	}
	fresh, err := Recompute(customer, partition, history, p.opts.Tiers)
	if err != nil {
		return fmt.Errorf("customer360 recompute: %w", err)
	}
	old, err := p.load(ctx, tx, []string{customer})
	if err != nil {
		return err
	}
	if prev := old[customer]; prev != nil && prev.AsOfMonth > fresh.AsOfMonth {
		fresh.AsOfMonth = prev.AsOfMonth
		fresh.derive(p.opts.Tiers)
	}
	fresh.phoneChanged = true
	profiles := map[string]*Profile{customer: fresh}
	hashes, err := p.phoneHashes(ctx, profiles)
	if err != nil {
		return err
	}
	return p.store(ctx, tx, nil, []string{customer}, profiles, hashes)
}
