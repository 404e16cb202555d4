package loyalty

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/loyalty/ledger"
)

// ErrNotMember: the customer has no ledger (never earned under a rule version).
var ErrNotMember = errors.New("not a loyalty member")

// Get reads one member from a target.
func Get(ctx context.Context, q projections.Querier, target, customer string) (*ledger.Member, error) {
	var doc []byte
	err := q.QueryRow(ctx, `SELECT doc FROM `+pgx.Identifier{target, "members"}.Sanitize()+` WHERE customer_id = $1`, customer).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotMember
	}
	if err != nil {
		return nil, fmt.Errorf("loyalty get %s: %w", customer, err)
	}
	return ledger.Decode(doc)
}

// Available is the points a member may spend as of asOf: the sum of the lots still
// unexpired at asOf minus any overdraft, never below zero; 0 for a customer who is not
// a member. The redemption service subtracts its pending reservations from it.
func Available(ctx context.Context, q projections.Querier, target, customer string, asOf time.Time) (int64, error) {
	m, err := Get(ctx, q, target, customer)
	if errors.Is(err, ErrNotMember) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Available(asOf), nil
}

// Account is a member as the club's queries show it.
type Account struct {
	Customer   string          `json:"customer_id"`
	Balance    int64           `json:"balance"` // as of AsOf
	AsOf       time.Time       `json:"as_of"`
	Tier       string          `json:"tier"`
	Progress   ledger.Progress `json:"progress"`
	Overdraft  int64           `json:"overdraft,omitempty"`
	Lots       []ledger.Lot    `json:"lots"` // open at AsOf, oldest expiry first
	Expiring90 int64           `json:"expiring_within_90_days"`
	Entries    []ledger.Entry  `json:"entries,omitempty"`
	Member     *ledger.Member  `json:"-"`
	Rules      *ledger.RuleSet `json:"-"`
}

// Account reads a member as of asOf (zero: the member's own time), with the tier's
// progress under the rule version in force at the member's time, and the newest
// entries (up to limit).
func AccountOf(ctx context.Context, q projections.Querier, target string, rules *ledger.RuleSet, customer string, asOf time.Time, limit int) (*Account, error) {
	m, err := Get(ctx, q, target, customer)
	if err != nil {
		return nil, err
	}
	if asOf.IsZero() {
		asOf = m.Now
	}
	a := &Account{Customer: customer, Balance: m.Balance(asOf), AsOf: asOf, Tier: m.Tier, Overdraft: m.Overdraft, Member: m, Rules: rules}
	for _, l := range m.Lots {
		// Lots are the member's present: listed for a moment at or after its time only
		// (a past balance is summed from the ledger).
		if !asOf.Before(m.Now) && asOf.Before(l.ExpiresAt) {
			a.Lots = append(a.Lots, l)
			if l.ExpiresAt.Before(asOf.AddDate(0, 0, 90)) {
				a.Expiring90 += l.Remaining
			}
		}
	}
	if r, err := rulesAt(ctx, q, target, rules, m); err == nil {
		a.Progress = m.Progress(r)
	}
	if limit > 0 {
		from := max(0, len(m.Entries)-limit)
		for i := len(m.Entries) - 1; i >= from; i-- {
			a.Entries = append(a.Entries, m.Entries[i])
		}
	}
	return a, nil
}

// rulesAt is the rule version in force at the member's time: the last activation met
// in its partition, else the version of its newest entry.
func rulesAt(ctx context.Context, q projections.Querier, target string, rules *ledger.RuleSet, m *ledger.Member) (*ledger.Rules, error) {
	var version string
	err := q.QueryRow(ctx, `SELECT version FROM `+pgx.Identifier{target, "activations"}.Sanitize()+`
		WHERE effective_at <= $1 ORDER BY effective_at DESC, seq DESC LIMIT 1`, m.Now).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		for i := len(m.Entries) - 1; i >= 0 && version == ""; i-- {
			version = m.Entries[i].Rules
		}
		err = nil
	}
	if err != nil {
		return nil, err
	}
	if version == "" {
		ids := rules.IDs()
		version = ids[len(ids)-1]
	}
	return rules.Version(version)
}

// MonthTotal is one month of the club's points: what was earned (spend and bonuses),
// redeemed, expired, adjusted and reversed, and the net.
type MonthTotal struct {
	Month    string `json:"month"` // YYYY-MM, local
	Earned   int64  `json:"earned"`
	Bonus    int64  `json:"bonus"`
	Redeemed int64  `json:"redeemed"` // positive
	Expired  int64  `json:"expired"`  // positive
	Reversed int64  `json:"reversed"` // positive
	Adjusted int64  `json:"adjusted"` // signed
	Net      int64  `json:"net"`
}

// Totals are the club's figures: points outstanding (the liability) and movements per
// month.
type Totals struct {
	Members     int64            `json:"members"`
	Outstanding int64            `json:"points_outstanding"` // sum of balances at each member's time
	Overdrawn   int64            `json:"points_overdrawn"`
	Tiers       map[string]int64 `json:"tiers"` // members per tier
	Months      []MonthTotal     `json:"months"`
}

// ClubTotals reads the club's totals: per tier and per month, summed over the
// partitions' rows that the 0002 migration's triggers keep up to date with every write
// to members and entries (a few hundred rows, whatever the club's size).
func ClubTotals(ctx context.Context, q projections.Querier, target string, months int) (*Totals, error) {
	t := &Totals{Tiers: map[string]int64{}}
	rows, err := q.Query(ctx, `SELECT tier, sum(members), sum(balance), sum(overdraft) FROM `+pgx.Identifier{target, "tier_totals"}.Sanitize()+`
		GROUP BY tier HAVING sum(members) > 0`)
	if err != nil {
		return nil, fmt.Errorf("loyalty totals: %w", err)
	}
	var tier string
	var n, bal, od int64
	if _, err := pgx.ForEachRow(rows, []any{&tier, &n, &bal, &od}, func() error {
		t.Tiers[tier] = n
		t.Members += n
		t.Outstanding += bal
		t.Overdrawn += od
		return nil
	}); err != nil {
		return nil, fmt.Errorf("loyalty totals: %w", err)
	}
	rows, err = q.Query(ctx, `WITH k AS (
			SELECT month, kind, sum(points) AS points, sum(negative) AS negative FROM `+pgx.Identifier{target, "month_totals"}.Sanitize()+`
			GROUP BY month, kind HAVING sum(entries) > 0)
		SELECT month,
			coalesce(sum(points) FILTER (WHERE kind = 'earn'), 0),
			coalesce(sum(points) FILTER (WHERE kind = 'bonus'), 0),
			coalesce(-sum(negative) FILTER (WHERE kind IN ('redeem', 'overdraft')), 0),
			coalesce(-sum(points) FILTER (WHERE kind = 'expire'), 0),
			coalesce(-sum(points) FILTER (WHERE kind = 'reverse'), 0),
			coalesce(sum(points) FILTER (WHERE kind = 'adjust'), 0),
			coalesce(sum(points), 0)
		FROM k WHERE month > (SELECT coalesce(max(month), 0) FROM k) - $1
		GROUP BY month ORDER BY month`, months)
	if err != nil {
		return nil, fmt.Errorf("loyalty totals: %w", err)
	}
	var m int32
	var mtot MonthTotal
	if _, err := pgx.ForEachRow(rows, []any{&m, &mtot.Earned, &mtot.Bonus, &mtot.Redeemed, &mtot.Expired, &mtot.Reversed, &mtot.Adjusted, &mtot.Net}, func() error {
		mtot.Month = fmt.Sprintf("%04d-%02d", m/12, m%12+1)
		t.Months = append(t.Months, mtot)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("loyalty totals: %w", err)
	}
	return t, nil
}

// LedgerEntry is one row of a member's ledger as stored: its position n (0 first).
type LedgerEntry struct {
	N      int             `json:"n"`
	Kind   string          `json:"kind"`
	Points int64           `json:"points"`
	At     time.Time       `json:"at"`
	Event  events.EventRef `json:"event"`
	Rules  string          `json:"rules"`
}

// Ledger pages through a member's ledger, newest first: up to limit entries before
// position before (-1: from the newest). next is the position to pass as before for
// the following page, -1 on the last page.
func Ledger(ctx context.Context, q projections.Querier, target, customer string, before, limit int) (entries []LedgerEntry, next int, err error) {
	if before < 0 {
		before = int(^uint32(0) >> 1)
	}
	rows, err := q.Query(ctx, `SELECT n, kind, points, at, event_source, event_id, rules FROM `+pgx.Identifier{target, "entries"}.Sanitize()+`
		WHERE customer_id = $1 AND n < $2 ORDER BY n DESC LIMIT $3`, customer, before, limit+1)
	if err != nil {
		return nil, -1, fmt.Errorf("loyalty ledger %s: %w", customer, err)
	}
	var e LedgerEntry
	if _, err := pgx.ForEachRow(rows, []any{&e.N, &e.Kind, &e.Points, &e.At, &e.Event.Source, &e.Event.ID, &e.Rules}, func() error {
		entries = append(entries, e)
		return nil
	}); err != nil {
		return nil, -1, fmt.Errorf("loyalty ledger %s: %w", customer, err)
	}
	next = -1
	if len(entries) > limit {
		entries = entries[:limit]
		next = entries[limit-1].N
	}
	return entries, next, nil
}
