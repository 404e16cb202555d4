package model

import (
	"errors"
	"fmt"
	"math"
)

// Unknown is the value of a feature whose fact is not known (features.Vector's
// convention). In a feature whose known values are all >= 0 it means missing.
const Unknown = -1

// maxErrors caps how many row errors Validate reports before summarising.
const maxErrors = 10

// Dataset is a training table: one row per (customer, month), the feature values
// in the order of Names and a label, 1 when the customer churned within the
// prediction window, else 0.
type Dataset struct {
	Names []string
	X     [][]float64
	Y     []float64
}

// Rows is the number of rows.
func (d Dataset) Rows() int { return len(d.X) }

// Positives counts the rows labelled 1.
func (d Dataset) Positives() int {
	n := 0
	for _, y := range d.Y {
		if y == 1 {
			n++
		}
	}
	return n
}

// Validate names every problem: empty or duplicate names, a row whose width is not
// len(Names), a non-finite value (row and feature), a label other than 0 or 1, and
// a dataset without both classes. Row errors stop being listed after ten; the
// rest are counted.
func (d Dataset) Validate() error {
	var errs []error
	more := 0
	add := func(err error) {
		if len(errs) < maxErrors {
			errs = append(errs, err)
		} else {
			more++
		}
	}
	if len(d.Names) == 0 {
		add(errors.New("names: at least one feature required"))
	}
	seen := make(map[string]int, len(d.Names))
	for i, n := range d.Names {
		if n == "" {
			add(fmt.Errorf("names[%d]: empty", i))
		}
		if j, ok := seen[n]; ok {
			add(fmt.Errorf("names[%d]: %q repeats names[%d]", i, n, j))
		}
		seen[n] = i
	}
	if len(d.X) != len(d.Y) {
		add(fmt.Errorf("rows: %d feature rows but %d labels", len(d.X), len(d.Y)))
	}
	if len(d.X) == 0 {
		add(errors.New("rows: no rows"))
	}
	var pos, neg int
	for i, row := range d.X {
		if len(row) != len(d.Names) {
			add(fmt.Errorf("row %d: %d values, want %d (one per name)", i, len(row), len(d.Names)))
			continue
		}
		for j, v := range row {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				add(fmt.Errorf("row %d: feature %s: %v is not finite", i, d.Names[j], v))
			}
		}
	}
	for i, y := range d.Y {
		switch y {
		case 0:
			neg++
		case 1:
			pos++
		default:
			add(fmt.Errorf("row %d: label %v must be 0 or 1", i, y))
		}
	}
	if len(d.Y) > 0 && (pos == 0 || neg == 0) {
		add(fmt.Errorf("labels: %d positives and %d negatives, need at least one of each", pos, neg))
	}
	if more > 0 {
		errs = append(errs, fmt.Errorf("and %d more errors", more))
	}
	if len(errs) > 0 {
		return fmt.Errorf("dataset: %w", errors.Join(errs...))
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}
