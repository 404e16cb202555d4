package churn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/churn/model"
	"github.com/touchstream/touchstream/projections/valuetier"
)

// Labels says how monthly snapshots are labelled from the terminations in the log.
// A snapshot as of T (a month's last instant) of a customer not terminated by T is:
//   - positive when the customer was terminated in (T+Horizon, T+Horizon+Window];
//   - left out when terminated in (T, T+Horizon]: too late to act on, and the
//     features would be taken within Horizon of the termination;
//   - negative when not terminated by T+Horizon+Window and the log reaches that far;
//   - left out otherwise (the outcome is not known yet).
//
// Features never read the label: they are as of T, at least Horizon before the
// termination of every positive.
type Labels struct {
	Horizon time.Duration `json:"horizon"` // default 7 days
	Window  time.Duration `json:"window"`  // default 30 days
}

func (l *Labels) setDefaults() {
	if l.Horizon == 0 {
		l.Horizon = 7 * 24 * time.Hour
	}
	if l.Window == 0 {
		l.Window = 30 * 24 * time.Hour
	}
}

// Period is a range of snapshot months, inclusive (valuetier months: year*12 +
// month-1; see valuetier.ParseMonth).
type Period struct {
	From, To valuetier.Month
}

func (p Period) String() string { return p.From.String() + ".." + p.To.String() }

// Validate names a period that selects nothing.
func (p Period) Validate() error {
	if p.From == 0 || p.To == 0 {
		return errors.New("period: from and to months are required")
	}
	if p.To < p.From {
		return fmt.Errorf("period: %s is after %s", p.From, p.To)
	}
	return nil
}

// Examples are labelled snapshots: a model.Dataset with where each row came from.
type Examples struct {
	model.Dataset
	Customers []string
	Months    []valuetier.Month
	// LogEnd is the latest event time in the version: outcomes after it are unknown.
	LogEnd time.Time
	// Left out: snapshots too close to their termination, or whose outcome is unknown.
	TooClose, Unknown int
}

// LoadExamples reads the snapshots of a period from a version and labels them.
func LoadExamples(ctx context.Context, q projections.Querier, target string, period Period, labels Labels) (*Examples, error) {
	if err := period.Validate(); err != nil {
		return nil, err
	}
	labels.setDefaults()
	s := pgx.Identifier{target}.Sanitize()
	ex := &Examples{Dataset: model.Dataset{Names: features.Names()}}
	if err := q.QueryRow(ctx, `SELECT coalesce(max(now_at), 'epoch') FROM `+s+`.customers`).Scan(&ex.LogEnd); err != nil {
		return nil, fmt.Errorf("churn examples: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT s.customer_id, s.month, s.as_of, s.vals, c.terminated_at FROM `+s+`.snapshots s JOIN `+s+
		`.customers c USING (customer_id) WHERE s.month BETWEEN $1 AND $2 ORDER BY s.month, s.customer_id`, int32(period.From), int32(period.To))
	if err != nil {
		return nil, fmt.Errorf("churn examples: %w", err)
	}
	var (
		c     string
		month int32
		asOf  time.Time
		vals  []float64
		term  *time.Time
	)
	width := len(ex.Names)
	_, err = pgx.ForEachRow(rows, []any{&c, &month, &asOf, &vals, &term}, func() error {
		if len(vals) != width {
			return fmt.Errorf("snapshot %s %s: %d values, want %d", c, valuetier.Month(month), len(vals), width)
		}
		y, ok := label(asOf, term, ex.LogEnd, labels)
		switch {
		case ok:
		case term != nil && !term.After(asOf):
			return nil // not a customer any more (a snapshot of the month it left)
		case term != nil && !term.After(asOf.Add(labels.Horizon)):
			ex.TooClose++
			return nil
		default:
			ex.Unknown++
			return nil
		}
		ex.X = append(ex.X, append([]float64(nil), vals...))
		ex.Y = append(ex.Y, y)
		ex.Customers = append(ex.Customers, c)
		ex.Months = append(ex.Months, valuetier.Month(month))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("churn examples: %w", err)
	}
	return ex, nil
}

// label is a snapshot's label and whether it has one.
func label(asOf time.Time, term *time.Time, logEnd time.Time, l Labels) (float64, bool) {
	from, to := asOf.Add(l.Horizon), asOf.Add(l.Horizon+l.Window)
	if term != nil {
		switch {
		case !term.After(asOf):
			return 0, false
		case !term.After(from):
			return 0, false
		case !term.After(to):
			return 1, true
		}
	}
	if logEnd.Before(to) {
		return 0, false
	}
	return 0, true
}

// Vector is a snapshot's values as a feature vector (without evidence).
func Vector(asOf time.Time, vals []float64) features.Vector {
	names := features.Names()
	v := features.Vector{AsOf: asOf, Features: make([]features.Feature, len(names))}
	for i, n := range names {
		v.Features[i] = features.Feature{Name: n, Value: vals[i]}
	}
	return v
}

// Evaluate scores labelled examples with a scorer and measures it at the scorer's
// alert threshold.
func Evaluate(ex *Examples, sc Scorer) model.Metrics {
	scores := make([]float64, len(ex.X))
	for i, x := range ex.X {
		scores[i] = sc.Score(Vector(time.Time{}, x)).Probability
	}
	return model.Evaluate(scores, ex.Y, sc.Threshold())
}

// Rules returns the Scorer of a rule version, named "rules:<version>".
func Rules(s *features.Scorer) Scorer { return rules{s} }
