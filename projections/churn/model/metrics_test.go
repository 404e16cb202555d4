package model

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestEvaluateAUCMatchesPairwiseCount(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		n := 2 + rng.IntN(300)
		levels := 1 + rng.IntN(12) // few distinct scores: many ties
		s, y := make([]float64, n), make([]float64, n)
		for i := range n {
			s[i] = float64(rng.IntN(levels)) / 10
			if rng.Float64() < 0.3 {
				y[i] = 1
			}
		}
		y[0], y[1] = 0, 1
		var pairs, wins float64
		for i := range n {
			for j := range n {
				if y[i] == 1 && y[j] == 0 {
					pairs++
					switch {
					case s[i] > s[j]:
						wins++
					case s[i] == s[j]:
						wins += 0.5
					}
				}
			}
		}
		got := Evaluate(s, y, 0.5).AUC
		if want := wins / pairs; math.Abs(got-want) > 1e-12 {
			t.Errorf("seed %d: AUC = %v, pairwise count gives %v", seed, got, want)
		}
	}
}

func TestEvaluateHandMadeTables(t *testing.T) {
	desc := func(n int) []float64 { // n, n-1, ..., 1 over n
		s := make([]float64, n)
		for i := range s {
			s[i] = float64(n-i) / float64(n)
		}
		return s
	}
	labelsAt := func(n int, pos ...int) []float64 {
		y := make([]float64, n)
		for _, p := range pos {
			y[p] = 1
		}
		return y
	}
	tests := []struct {
		name      string
		scores    []float64
		labels    []float64
		threshold float64
		want      Metrics
	}{
		{
			// Positives at descending positions 1, 3, 10 and 15 of 20; 16 negatives.
			// Negatives below each positive: 16 + 15 + 9 + 5 = 45 of 64 pairs.
			// Top decile = 2 rows, 1 positive: 0.5 / 0.2 = 2.5. Scores >= 0.75 are
			// the top 6 rows, positives at 1 and 3.
			name: "distinct", scores: desc(20), labels: labelsAt(20, 0, 2, 9, 14), threshold: 0.75,
			want: Metrics{N: 20, Positives: 4, BaseRate: 0.2, AUC: 45.0 / 64, TopDecileLift: 2.5,
				Threshold: 0.75, Alerts: 6, AlertsPer1000: 300, Precision: 1.0 / 3, Recall: 0.5},
		},
		{
			// All tied: the top decile is the group's positive rate, lift 1.
			name: "all tied", scores: make([]float64, 10), labels: labelsAt(10, 3, 7), threshold: 0.5,
			want: Metrics{N: 10, Positives: 2, BaseRate: 0.2, AUC: 0.5, TopDecileLift: 1, Threshold: 0.5},
		},
		{
			// Three rows tie across the 2-row cut with one positive: 2/3 of a
			// positive in the top 2 rows: (1/3) / 0.1.
			name:   "tie at the cut",
			scores: []float64{1, 1, 1, .9, .8, .7, .6, .5, .4, .3, .2, .1, .1, .1, .1, .1, .1, .1, .1, .05},
			labels: labelsAt(20, 1, 19), threshold: 1,
			want: Metrics{N: 20, Positives: 2, BaseRate: 0.1, AUC: (17 + 0.0) / 36, TopDecileLift: 10.0 / 3,
				Threshold: 1, Alerts: 3, AlertsPer1000: 150, Precision: 1.0 / 3, Recall: 0.5},
		},
		{
			name: "no positives", scores: []float64{0.1, 0.2}, labels: []float64{0, 0}, threshold: 0.15,
			want: Metrics{N: 2, Threshold: 0.15, Alerts: 1, AlertsPer1000: 500},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(tt.scores, tt.labels, tt.threshold)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("Evaluate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	m := Evaluate([]float64{0.9, 0.1, 0.8, 0.2}, []float64{1, 0, 0, 0}, 0.5)
	if err := WriteTable(&buf, []NamedMetrics{{"rules", m}, {"gbt", m}}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "AUC") || !strings.Contains(lines[2], "gbt") ||
		!strings.Contains(lines[1], "1.0000") || !strings.Contains(lines[1], "50.00%") {
		t.Errorf("table:\n%s", buf.String())
	}
}
