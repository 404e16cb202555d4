package churn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn/features"
)

// ErrNotFound: the version has no such customer or alert.
var ErrNotFound = errors.New("not found")

// HistoryPoint is a point of a customer's score history.
type HistoryPoint struct {
	At    time.Time `json:"at"`
	Seq   uint64    `json:"seq"`
	Score float64   `json:"score"`
	Model string    `json:"model"`
}

// Detail is one customer's churn view: the score with its reasons, the features as of
// the state's time, the state group, the current alert, the score history and every
// alert the customer had.
type Detail struct {
	Customer   string          `json:"customer_id"`
	Group      string          `json:"group"` // stable, warning, churned
	Region     string          `json:"region,omitempty"`
	Tier       string          `json:"tier,omitempty"`
	ValueFen   int64           `json:"value_fen"`
	Score      *features.Score `json:"score,omitempty"`
	ScoredAt   time.Time       `json:"scored_at,omitzero"`
	Terminated *time.Time      `json:"terminated_at,omitempty"`
	Features   features.Vector `json:"features"`
	Alert      *Alert          `json:"alert,omitempty"`
	Alerts     []Alert         `json:"alerts"`
	History    []HistoryPoint  `json:"history"`
}

// Customer reads one customer's churn view from a version; ErrNotFound if unknown.
func Customer(ctx context.Context, q projections.Querier, target, customer string) (*Detail, error) {
	s := pgx.Identifier{target}.Sanitize()
	var doc []byte
	d := &Detail{Customer: customer, Alerts: []Alert{}, History: []HistoryPoint{}}
	err := q.QueryRow(ctx, `SELECT region, tier, value_fen, terminated_at, doc FROM `+s+`.customers WHERE customer_id = $1`, customer).
		Scan(&d.Region, &d.Tier, &d.ValueFen, &d.Terminated, &doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("churn customer %s: %w", customer, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("churn customer %s: %w", customer, err)
	}
	var r record
	if err := json.Unmarshal(doc, &r); err != nil {
		return nil, fmt.Errorf("churn customer %s: %w", customer, err)
	}
	d.Score, d.ScoredAt, d.Alert = r.Score, r.ScoredAt, r.L.Alert
	d.Features = r.F.Snapshot(r.F.Now)
	d.Group = StateGroup(r.L.Terminated, r.L.open())
	rows, err := q.Query(ctx, `SELECT doc FROM `+s+`.alerts WHERE customer_id = $1 ORDER BY raised_at DESC, alert_id`, customer)
	if err != nil {
		return nil, fmt.Errorf("churn customer %s: alerts: %w", customer, err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&doc}, func() error {
		var a Alert
		if err := json.Unmarshal(doc, &a); err != nil {
			return err
		}
		d.Alerts = append(d.Alerts, a)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("churn customer %s: alerts: %w", customer, err)
	}
	rows, err = q.Query(ctx, `SELECT at, seq, score, model FROM `+s+`.scores WHERE customer_id = $1 ORDER BY seq DESC LIMIT 200`, customer)
	if err != nil {
		return nil, fmt.Errorf("churn customer %s: history: %w", customer, err)
	}
	var h HistoryPoint
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&h.At, &seq, &h.Score, &h.Model}, func() error {
		h.Seq = uint64(seq)
		d.History = append(d.History, h)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("churn customer %s: history: %w", customer, err)
	}
	return d, nil
}

// ScoreRow is a customer in the score list.
type ScoreRow struct {
	Customer string    `json:"customer_id"`
	Score    float64   `json:"score"`
	Model    string    `json:"model"`
	Group    string    `json:"group"`
	Region   string    `json:"region,omitempty"`
	Tier     string    `json:"tier,omitempty"`
	ValueFen int64     `json:"value_fen"`
	ScoredAt time.Time `json:"scored_at"`
	AlertID  string    `json:"alert_id,omitempty"`
}

// ScoreFilter selects and pages the score list: highest score first, ties by customer
// id; After is the last row of the previous page.
type ScoreFilter struct {
	Tier, Region       string
	MinScore, MaxScore float64 // MaxScore 0: no upper bound
	IncludeChurned     bool
	Limit              int // default 50, at most 500
	After              *ScoreRow
}

// Scores lists customers by score.
func Scores(ctx context.Context, q projections.Querier, target string, f ScoreFilter) ([]ScoreRow, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, 500)
	var where []string
	args := []any{}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	where = append(where, "score IS NOT NULL")
	if !f.IncludeChurned {
		where = append(where, "terminated_at IS NULL")
	}
	if f.Tier != "" {
		where = append(where, "tier = "+arg(f.Tier))
	}
	if f.Region != "" {
		where = append(where, "region = "+arg(f.Region))
	}
	if f.MinScore > 0 {
		where = append(where, "score >= "+arg(f.MinScore))
	}
	if f.MaxScore > 0 {
		where = append(where, "score <= "+arg(f.MaxScore))
	}
	if f.After != nil {
		where = append(where, "(score, customer_id) < ("+arg(f.After.Score)+", "+arg(f.After.Customer)+"::text COLLATE \"C\")")
	}
	rows, err := q.Query(ctx, `SELECT customer_id, score, model, region, tier, value_fen, scored_at, coalesce(alert_id, ''), terminated_at IS NOT NULL
		FROM `+pgx.Identifier{target}.Sanitize()+`.customers WHERE `+strings.Join(where, " AND ")+
		` ORDER BY score DESC, customer_id DESC LIMIT `+arg(f.Limit), args...)
	if err != nil {
		return nil, fmt.Errorf("churn scores: %w", err)
	}
	out := []ScoreRow{}
	var r ScoreRow
	var term bool
	if _, err := pgx.ForEachRow(rows, []any{&r.Customer, &r.Score, &r.Model, &r.Region, &r.Tier, &r.ValueFen, &r.ScoredAt, &r.AlertID, &term}, func() error {
		r.Group = StateGroup(term, r.AlertID != "")
		out = append(out, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("churn scores: %w", err)
	}
	return out, nil
}

// QueueRow is an alert in the desk's queue.
type QueueRow struct {
	Alert
	Priority float64 `json:"priority"` // score × monthly value in yuan
}

// Queue lists the alerts not closed, highest risk × value first; after is the last
// row of the previous page.
func Queue(ctx context.Context, q projections.Querier, target string, limit int, after *QueueRow) ([]QueueRow, error) {
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 500)
	args := []any{limit}
	cond := ""
	if after != nil {
		cond = ` AND (priority, alert_id) < ($2, $3)`
		args = append(args, after.Priority, after.ID)
	}
	rows, err := q.Query(ctx, `SELECT doc, priority FROM `+pgx.Identifier{target}.Sanitize()+`.alerts WHERE state <> 'closed'`+cond+
		` ORDER BY priority DESC, alert_id DESC LIMIT $1`, args...)
	if err != nil {
		return nil, fmt.Errorf("churn alert queue: %w", err)
	}
	out := []QueueRow{}
	var doc []byte
	var prio float64
	if _, err := pgx.ForEachRow(rows, []any{&doc, &prio}, func() error {
		var r QueueRow
		if err := json.Unmarshal(doc, &r.Alert); err != nil {
			return err
		}
		r.Priority = prio
		out = append(out, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("churn alert queue: %w", err)
	}
	return out, nil
}

// GetAlert reads one alert; ErrNotFound if the version has none by that id.
func GetAlert(ctx context.Context, q projections.Querier, target, id string) (*Alert, error) {
	var doc []byte
	err := q.QueryRow(ctx, `SELECT doc FROM `+pgx.Identifier{target}.Sanitize()+`.alerts WHERE alert_id = $1`, id).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("churn alert %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("churn alert %s: %w", id, err)
	}
	var a Alert
	if err := json.Unmarshal(doc, &a); err != nil {
		return nil, fmt.Errorf("churn alert %s: %w", id, err)
	}
	return &a, nil
}
