package erase

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
)

// Serving versions the sweep reads when projections.serving names none.
const (
	defaultCustomer360 = "customer360_v1"
	defaultTimeline    = "timeline_v1"
)

// ErrNoRetention: deploy/privacy.json sets no retention limit.
var ErrNoRetention = errors.New("no retention limit configured (deploy/privacy.json: retention)")

// Candidate is a customer whose personal data is past the retention limit.
type Candidate struct {
	Customer     string    `json:"customer"`
	TerminatedAt time.Time `json:"terminated_at"` // event time of the last subscription.terminated
}

// Sweep is what a retention sweep found and did.
type Sweep struct {
	Now       time.Time   `json:"now"`
	Cutoff    time.Time   `json:"cutoff"` // terminated before this: erased
	DryRun    bool        `json:"dry_run"`
	Due       []Candidate `json:"due"`       // at most MaxPerSweep, oldest termination first
	More      bool        `json:"more"`      // more were due than MaxPerSweep: the next sweep continues
	Receipts  []*Receipt  `json:"receipts"`  // one per customer erased (none on a dry run)
	Remaining []Candidate `json:"remaining"` // due but not erased because of an error (see the error)
}

// Sweep erases the personal data of every customer past the retention limit: whose
// last subscription.terminated (by event time) is older than Retention.TerminatedFor,
// who did not register again after it and was not erased since. Each goes through
// Erase, with reason "retention" and the sweep's operator, so the log records it like
// any erasure. With dryRun it only lists them. Customers are found from the serving
// customer 360 (lifecycle terminated) and their event times from the serving timeline,
// by customer id: no scan of the log.
func (e *Eraser) Sweep(ctx context.Context, dryRun bool) (*Sweep, error) {
	r := e.cfg.Privacy.Retention
	if r == nil {
		return nil, ErrNoRetention
	}
	now := e.cfg.Now()
	s := &Sweep{Now: now, Cutoff: now.Add(-r.TerminatedFor), DryRun: dryRun, Due: []Candidate{}, Receipts: []*Receipt{}}
	due, more, err := e.due(ctx, s.Cutoff, r.MaxPerSweep)
	if err != nil {
		return nil, err
	}
	s.Due, s.More = due, more
	if dryRun {
		return s, nil
	}
	for i, c := range due {
		rc, err := e.Erase(ctx, Request{Customer: c.Customer, Reason: ReasonRetention, Operator: r.Operator})
		if err != nil {
			s.Remaining = due[i:]
			return s, fmt.Errorf("retention sweep: %w", err)
		}
		s.Receipts = append(s.Receipts, rc)
	}
	e.log.Info("retention sweep", "cutoff", s.Cutoff, "erased", len(s.Receipts), "more", more)
	return s, nil
}

// due lists up to limit customers past the cutoff, oldest termination first.
func (e *Eraser) due(ctx context.Context, cutoff time.Time, limit int) ([]Candidate, bool, error) {
	serving, err := projections.ServingTargets(ctx, e.d.Pool)
	if isUndefined(err) {
		return nil, false, nil // no projector ever ran here: nobody to sweep
	}
	if err != nil {
		return nil, false, err
	}
	c360, tl := serving["customer360"], serving["timeline"]
	if c360 == "" {
		c360 = defaultCustomer360
	}
	if tl == "" {
		tl = defaultTimeline
	}
	profiles := pgx.Identifier{c360, "profiles"}.Sanitize()
	timeline := pgx.Identifier{tl, "events"}.Sanitize()
	var out []Candidate
	after := ""
	for {
		rows, err := e.d.Pool.Query(ctx, `SELECT customer_id FROM `+profiles+`
			WHERE lifecycle = 'terminated' AND customer_id > $1 ORDER BY customer_id LIMIT 1000`, after)
		if isUndefined(err) {
			return nil, false, nil // no read model yet: nobody to sweep
		}
		if err != nil {
			return nil, false, fmt.Errorf("retention: terminated customers: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, false, fmt.Errorf("retention: terminated customers: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		after = ids[len(ids)-1]
		rows, err = e.d.Pool.Query(ctx, `SELECT customer_id, term FROM (
				SELECT customer_id,
					max(event_time) FILTER (WHERE type = $2) AS term,
					max(event_time) FILTER (WHERE type = $3) AS erased,
					max(event_time) FILTER (WHERE type = $4) AS registered
				FROM `+timeline+` WHERE customer_id = ANY($1) GROUP BY customer_id) AS t
			WHERE term < $5 AND (erased IS NULL OR erased < term) AND (registered IS NULL OR registered < term)`,
			ids, events.TypeSubscriptionTerminated, events.TypeCustomerErased, events.TypeCustomerRegistered, cutoff)
		if err != nil {
			return nil, false, fmt.Errorf("retention: termination times: %w", err)
		}
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Candidate, error) {
			var c Candidate
			err := r.Scan(&c.Customer, &c.TerminatedAt)
			return c, err
		})
		if err != nil {
			return nil, false, fmt.Errorf("retention: termination times: %w", err)
		}
		out = append(out, batch...)
	}
	slices.SortFunc(out, func(a, b Candidate) int {
		if c := a.TerminatedAt.Compare(b.TerminatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Customer, b.Customer)
	})
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// isUndefined: the table or schema does not exist (yet).
func isUndefined(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
}
