package model

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
)

// Metrics measure scores against labels. Undefined ratios (no positives, no
// negatives, no alerts) are 0, so Metrics always encode as JSON.
type Metrics struct {
	N             int     `json:"n"`
	Positives     int     `json:"positives"`
	BaseRate      float64 `json:"base_rate"`       // Positives / N
	AUC           float64 `json:"auc"`             // ROC area, ties counted one half
	TopDecileLift float64 `json:"top_decile_lift"` // positive rate in the top 10% by score / BaseRate
	Threshold     float64 `json:"threshold"`       // the alert threshold the next four are taken at
	Alerts        int     `json:"alerts"`          // rows scoring >= Threshold
	AlertsPer1000 float64 `json:"alerts_per_1000"`
	Precision     float64 `json:"precision"` // positives among alerts / Alerts
	Recall        float64 `json:"recall"`    // positives alerted / Positives
}

// Evaluate computes Metrics for scores (any monotone score; alerts are scores >=
// threshold) and 0/1 labels of the same length.
//
// AUC is exact: the Mann-Whitney statistic with average ranks for tied scores.
// The top decile is the ceil(N/10) highest scores; when scores tie across the
// cut, the tied group counts with its positive rate (the expected value over
// every order of the ties), so the result does not depend on row order.
func Evaluate(scores, labels []float64, threshold float64) Metrics {
	if len(scores) != len(labels) {
		panic(fmt.Sprintf("churn model: evaluate %d scores against %d labels", len(scores), len(labels)))
	}
	n := len(scores)
	m := Metrics{N: n, Threshold: threshold}
	if n == 0 {
		return m
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	// Descending by score; the order within ties does not matter to any result.
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })

	var tp int
	for i, s := range scores {
		if labels[i] == 1 {
			m.Positives++
		}
		if s >= threshold {
			m.Alerts++
			if labels[i] == 1 {
				tp++
			}
		}
	}
	neg := n - m.Positives
	m.BaseRate = float64(m.Positives) / float64(n)
	m.AlertsPer1000 = 1000 * float64(m.Alerts) / float64(n)
	if m.Alerts > 0 {
		m.Precision = float64(tp) / float64(m.Alerts)
	}
	if m.Positives > 0 {
		m.Recall = float64(tp) / float64(m.Positives)
	}

	// Walk tie groups from the top: ranks (ascending, 1-based) of a group at
	// positions [i, j) in descending order are n-j+1 .. n-i, average n-(i+j-1)/2.
	k := (n + 9) / 10
	var rankSum, topPos float64
	for i := 0; i < n; {
		j := i + 1
		for j < n && scores[order[j]] == scores[order[i]] {
			j++
		}
		var p int
		for _, r := range order[i:j] {
			if labels[r] == 1 {
				p++
			}
		}
		rankSum += float64(p) * (float64(n) - float64(i+j-1)/2)
		switch {
		case j <= k:
			topPos += float64(p)
		case i < k:
			topPos += float64(p) * float64(k-i) / float64(j-i)
		}
		i = j
	}
	if m.Positives > 0 && neg > 0 {
		P := float64(m.Positives)
		m.AUC = (rankSum - P*(P+1)/2) / (P * float64(neg))
		m.TopDecileLift = (topPos / float64(k)) / m.BaseRate
	}
	return m
}

// NamedMetrics is one row of a metrics table.
type NamedMetrics struct {
	Name string
	Metrics
}

// Table writes m as a one-row table (see WriteTable).
func (m Metrics) Table(w io.Writer, name string) error {
	return WriteTable(w, []NamedMetrics{{Name: name, Metrics: m}})
}

// WriteTable writes aligned rows with a header, one per named Metrics, in order.
func WriteTable(w io.Writer, rows []NamedMetrics) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\trows\tpositives\tbase rate\tAUC\ttop-decile lift\tthreshold\talerts\tper 1000\tprecision\trecall\t")
	for _, r := range rows {
		m := r.Metrics
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.4f\t%.2f\t%.4f\t%d\t%.1f\t%s\t%s\t\n",
			r.Name, m.N, m.Positives, pct(m.BaseRate), m.AUC, m.TopDecileLift, m.Threshold,
			m.Alerts, m.AlertsPer1000, pct(m.Precision), pct(m.Recall))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write metrics table: %w", err)
	}
	return nil
}

func pct(f float64) string { return fmt.Sprintf("%.2f%%", 100*f) }

// alertThreshold is the probability that alerts rate of the scores: the
// ceil(rate*n)-th highest (ties at it alert too, so slightly more may alert).
func alertThreshold(probs []float64, rate float64) float64 {
	s := slices.Clone(probs)
	slices.Sort(s)
	k := int(math.Ceil(rate * float64(len(s))))
	k = max(1, min(len(s), k))
	return s[len(s)-k]
}
