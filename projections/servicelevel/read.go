package servicelevel

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/projections"
)

// HourRate is the inbound traffic of one queue (or of every queue) in one local hour.
type HourRate struct {
	Queue string    `json:"queue,omitempty"` // "" when summed over every queue
	Hour  time.Time `json:"hour"`            // start of the operator's local hour
	// Inbound calls offered, answered, answered within AnswerWithinSeconds, abandoned
	// (not answered).
	Offered   int64 `json:"offered"`
	Answered  int64 `json:"answered"`
	Within20  int64 `json:"answered_within_20s"`
	Abandoned int64 `json:"abandoned"`
	// Outbound calls, counted apart: no part of the answer rate.
	Outbound int64 `json:"outbound"`
	// AvgWaitSeconds is over every inbound call offered (answered or abandoned);
	// AvgHandlingSeconds over the answered ones. 0 when there are none.
	AvgWaitSeconds     float64 `json:"avg_wait_seconds"`
	AvgHandlingSeconds float64 `json:"avg_handling_seconds"`
	// AnswerRate is Within20 / Offered (0 when nothing was offered), against Target.
	AnswerRate  float64 `json:"answer_rate"`
	Target      float64 `json:"target"`
	MeetsTarget bool    `json:"meets_target"` // AnswerRate >= Target, false when nothing was offered
}

func (r *HourRate) derive(wait, handling int64) {
	if r.Offered > 0 {
		r.AvgWaitSeconds = float64(wait) / float64(r.Offered)
		r.AnswerRate = float64(r.Within20) / float64(r.Offered)
		r.MeetsTarget = r.AnswerRate >= AnswerTarget
	}
	if r.Answered > 0 {
		r.AvgHandlingSeconds = float64(handling) / float64(r.Answered)
	}
	r.Target = AnswerTarget
}

// AnswerRate is the hourly series of a queue ("" : every queue summed) for the hours
// starting in [from, to), oldest first. Hours without calls are absent.
func AnswerRate(ctx context.Context, q projections.Querier, target, queue string, from, to time.Time) ([]HourRate, error) {
	rows, err := q.Query(ctx, `SELECT CASE WHEN $1 = '' THEN '' ELSE min(queue) END, hour, sum(offered), sum(answered), sum(within_20s),
			sum(abandoned), sum(outbound), sum(wait_seconds), sum(handling_seconds)
		FROM `+pgx.Identifier{target, "calls_hourly"}.Sanitize()+`
		WHERE ($1 = '' OR queue = $1) AND hour >= $2 AND hour < $3
		GROUP BY hour ORDER BY hour`, queue, from, to)
	if err != nil {
		return nil, fmt.Errorf("servicelevel answer rate %q: %w", queue, err)
	}
	var out []HourRate
	var r HourRate
	var wait, handling int64
	_, err = pgx.ForEachRow(rows, []any{&r.Queue, &r.Hour, &r.Offered, &r.Answered, &r.Within20, &r.Abandoned, &r.Outbound, &wait, &handling}, func() error {
		r.derive(wait, handling)
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("servicelevel answer rate %q: %w", queue, err)
	}
	return out, nil
}

// Complaint is a complaint as the service-level reads show it.
type Complaint struct {
	Customer    string     `json:"customer_id"`
	ComplaintID string     `json:"complaint_id"`
	OpenedAt    *time.Time `json:"opened_at,omitempty"` // nil: only the resolution is known yet
	PromisedBy  *time.Time `json:"promised_by,omitempty"`
	ResolvedAt  *time.Time `json:"resolved_at,omitempty"`
	Enterprise  bool       `json:"enterprise"` // an enterprise SLA deadline
	Breached    bool       `json:"breached"`
	BreachedAt  *time.Time `json:"breached_at,omitempty"`
	Reason      string     `json:"breach_reason,omitempty"` // deadline_passed, resolved_late
}

const complaintCols = `customer_id, complaint_id, opened_at, promised_by, resolved_at, enterprise, breached, breached_at, coalesce(breach_reason, '')`

func scanComplaints(rows pgx.Rows) ([]Complaint, error) {
	var out []Complaint
	var c Complaint
	_, err := pgx.ForEachRow(rows, []any{&c.Customer, &c.ComplaintID, &c.OpenedAt, &c.PromisedBy, &c.ResolvedAt, &c.Enterprise, &c.Breached, &c.BreachedAt, &c.Reason}, func() error {
		out = append(out, c)
		return nil
	})
	return out, err
}

// Breaches lists the complaints breached at a time in [from, to), oldest breach first,
// at most limit (default 100).
func Breaches(ctx context.Context, q projections.Querier, target string, from, to time.Time, limit int) ([]Complaint, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := q.Query(ctx, `SELECT `+complaintCols+` FROM `+pgx.Identifier{target, "complaints"}.Sanitize()+`
		WHERE breached AND breached_at >= $1 AND breached_at < $2 ORDER BY breached_at, customer_id, complaint_id LIMIT $3`, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("servicelevel breaches: %w", err)
	}
	out, err := scanComplaints(rows)
	if err != nil {
		return nil, fmt.Errorf("servicelevel breaches: %w", err)
	}
	return out, nil
}

// OpenComplaints lists a customer's open complaints (opened, not resolved), earliest
// deadline first; breached ones are flagged.
func OpenComplaints(ctx context.Context, q projections.Querier, target, customer string) ([]Complaint, error) {
	rows, err := q.Query(ctx, `SELECT `+complaintCols+` FROM `+pgx.Identifier{target, "complaints"}.Sanitize()+`
		WHERE customer_id = $1 AND promised_by IS NOT NULL AND resolved_at IS NULL ORDER BY promised_by, complaint_id`, customer)
	if err != nil {
		return nil, fmt.Errorf("servicelevel open complaints %s: %w", customer, err)
	}
	out, err := scanComplaints(rows)
	if err != nil {
		return nil, fmt.Errorf("servicelevel open complaints %s: %w", customer, err)
	}
	return out, nil
}

// Summary is the service level at a glance.
type Summary struct {
	AsOf time.Time `json:"as_of"`
	Day  string    `json:"day"` // YYYY-MM-DD, the local day of AsOf
	// Queues: each queue's inbound traffic of the day so far (Hour is the day's
	// start); Total: every queue's.
	Queues []HourRate `json:"queues"`
	Total  HourRate   `json:"total"`
	// OpenComplaints: opened, not resolved. PastDeadline: of those, the ones whose
	// deadline is before AsOf (EnterprisePastDeadline: of enterprise customers).
	OpenComplaints         int64 `json:"open_complaints"`
	PastDeadline           int64 `json:"past_deadline"`
	EnterprisePastDeadline int64 `json:"enterprise_past_deadline"`
	// BreachedToday: complaints breached during the day up to AsOf.
	BreachedToday int64 `json:"breached_today"`
}

// SummaryOf reads the summary as of asOf. The day is asOf's calendar day in asOf's
// location: pass a time in the operator's zone.
func SummaryOf(ctx context.Context, q projections.Querier, target string, asOf time.Time) (*Summary, error) {
	day := time.Date(asOf.Year(), asOf.Month(), asOf.Day(), 0, 0, 0, 0, asOf.Location())
	s := &Summary{AsOf: asOf, Day: day.Format(time.DateOnly), Total: HourRate{Hour: day}}
	rows, err := q.Query(ctx, `SELECT queue, sum(offered), sum(answered), sum(within_20s), sum(abandoned), sum(outbound), sum(wait_seconds), sum(handling_seconds)
		FROM `+pgx.Identifier{target, "calls_hourly"}.Sanitize()+` WHERE hour >= $1 AND hour <= $2 GROUP BY queue ORDER BY queue`, day, asOf)
	if err != nil {
		return nil, fmt.Errorf("servicelevel summary: %w", err)
	}
	var r HourRate
	var wait, handling, totalWait, totalHandling int64
	_, err = pgx.ForEachRow(rows, []any{&r.Queue, &r.Offered, &r.Answered, &r.Within20, &r.Abandoned, &r.Outbound, &wait, &handling}, func() error {
		r.Hour = day
		r.derive(wait, handling)
		s.Queues = append(s.Queues, r)
		t := &s.Total
		t.Offered, t.Answered, t.Within20, t.Abandoned, t.Outbound = t.Offered+r.Offered, t.Answered+r.Answered, t.Within20+r.Within20, t.Abandoned+r.Abandoned, t.Outbound+r.Outbound
		totalWait, totalHandling = totalWait+wait, totalHandling+handling
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("servicelevel summary: %w", err)
	}
	s.Total.derive(totalWait, totalHandling)
	err = q.QueryRow(ctx, `SELECT count(*) FILTER (WHERE promised_by IS NOT NULL AND resolved_at IS NULL),
			count(*) FILTER (WHERE promised_by < $1 AND resolved_at IS NULL),
			count(*) FILTER (WHERE promised_by < $1 AND resolved_at IS NULL AND enterprise),
			count(*) FILTER (WHERE breached AND breached_at >= $2 AND breached_at <= $1)
		FROM `+pgx.Identifier{target, "complaints"}.Sanitize(), asOf, day).
		Scan(&s.OpenComplaints, &s.PastDeadline, &s.EnterprisePastDeadline, &s.BreachedToday)
	if err != nil {
		return nil, fmt.Errorf("servicelevel summary: %w", err)
	}
	return s, nil
}
