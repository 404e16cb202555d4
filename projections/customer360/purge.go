package customer360

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/projections"
)

var _ projections.Purger = (*Projection)(nil)

// Purge implements projections.Purger: the customer's profile loses its sealed
// identity and contact fields (name, phone, id number, address) and the phone search
// hash derived from the phone; everything else (plan, spend, channels, tier) stays. It
// returns 1 if the profile held any of them, 0 otherwise (no profile, or purged
// already).
func (p *Projection) Purge(ctx context.Context, tx pgx.Tx, customer string) (int64, error) {
	profiles, err := p.load(ctx, tx, []string{customer})
	if err != nil {
		return 0, err
	}
	prof := profiles[customer]
	if prof == nil || !prof.erase() {
		return 0, nil
	}
	if err := p.store(ctx, tx, nil, []string{customer}, profiles, nil); err != nil {
		return 0, err
	}
	return 1, nil
}

// erase drops the personal fields and what was derived from them, as a fold of
// customer.erased does. It reports whether there was anything to drop.
func (p *Profile) erase() bool {
	had := p.Name != nil || p.Phone != nil || p.IDNumber != nil || p.Address != nil || p.PhoneHash != nil
	p.Name, p.Phone, p.IDNumber, p.Address, p.PhoneHash = nil, nil, nil, nil, nil
	p.phoneChanged = false
	return had
}
