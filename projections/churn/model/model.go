package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Kind is the family of a model.
type Kind string

// The model kinds.
const (
	KindLogistic Kind = "logistic"
	KindGBT      Kind = "gbt"
)

// Model is a trained churn model of either kind, serialised as canonical JSON.
// Exactly one of Logistic and GBT is set, as Kind says.
type Model struct {
	// Version is the content hash (Hash) of the model, set by training and
	// checked by Decode; it is left out of the hash itself.
	Version   string   `json:"version"`
	Kind      Kind     `json:"kind"`
	Features  []string `json:"features"`  // input names, in the order Predict reads them
	Threshold float64  `json:"threshold"` // probability at or above which an alert is due
	Training  Training `json:"training"`

	Logistic *LogisticParams `json:"logistic,omitempty"`
	GBT      *GBTParams      `json:"gbt,omitempty"`
}

// Training describes how a model was trained: no timestamps, so the same data
// and options give the same bytes.
type Training struct {
	Rows           int              `json:"rows"`      // rows in the dataset
	Positives      int              `json:"positives"` // rows labelled 1
	ValidationRows int              `json:"validation_rows,omitempty"`
	Iterations     int              `json:"iterations"` // Newton steps (logistic) or trees kept (gbt)
	Converged      bool             `json:"converged,omitempty"`
	Logistic       *LogisticOptions `json:"logistic_options,omitempty"`
	GBT            *GBTOptions      `json:"gbt_options,omitempty"`
	Train          Metrics          `json:"train"`                // on the rows fitted
	Validation     *Metrics         `json:"validation,omitempty"` // on the held-out rows, if any
}

// Prediction is a model's score for one row. Bias plus the sum of Contributions
// is Logit (to rounding, within 1e-9); Probability is the logistic of Logit.
type Prediction struct {
	Probability   float64   `json:"probability"`
	Logit         float64   `json:"logit"`
	Bias          float64   `json:"bias"`
	Contributions []float64 `json:"contributions"` // per feature, in the order of Features
}

// Predict scores a row whose values are in the order of Features (see Align). It
// panics when len(x) != len(Features), like an index out of range.
func (m *Model) Predict(x []float64) Prediction {
	m.checkWidth(x)
	p := Prediction{Contributions: make([]float64, len(m.Features))}
	switch m.Kind {
	case KindLogistic:
		p.Bias = m.Logistic.explain(x, p.Contributions)
	case KindGBT:
		p.Bias = m.GBT.explain(x, p.Contributions)
	}
	p.Logit = m.logit(x)
	p.Probability = sigmoid(p.Logit)
	return p
}

// Probability is Predict's Probability without the contributions.
func (m *Model) Probability(x []float64) float64 {
	m.checkWidth(x)
	return sigmoid(m.logit(x))
}

// Alert tells whether a probability is at or above the model's threshold.
func (m *Model) Alert(probability float64) bool { return probability >= m.Threshold }

func (m *Model) checkWidth(x []float64) {
	if len(x) != len(m.Features) {
		panic(fmt.Sprintf("churn model: %d values, want %d features", len(x), len(m.Features)))
	}
}

func (m *Model) logit(x []float64) float64 {
	if m.Kind == KindLogistic {
		return m.Logistic.logit(x)
	}
	return m.GBT.logit(x)
}

// Align maps rows in the order of names (for instance features.Names()) to the
// model's order. Every model feature must be among names; extra names are
// ignored. The error names each missing feature.
func (m *Model) Align(names []string) (func(values []float64) []float64, error) {
	idx := make([]int, len(m.Features))
	var errs []error
	for i, f := range m.Features {
		j := slices.Index(names, f)
		if j < 0 {
			errs = append(errs, fmt.Errorf("feature %q: not among the names given", f))
		}
		idx[i] = j
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("align model %s: %w", m.Version, errors.Join(errs...))
	}
	width := len(names)
	return func(values []float64) []float64 {
		if len(values) != width {
			panic(fmt.Sprintf("churn model: %d values, want %d names", len(values), width))
		}
		out := make([]float64, len(idx))
		for i, j := range idx {
			out[i] = values[j]
		}
		return out
	}, nil
}

// Encode is the canonical JSON form: fields in declaration order, no timestamps,
// floats in their shortest exact form.
func (m *Model) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode churn model: %w", err)
	}
	return b, nil
}

// Hash is "sha256:" and the hex SHA-256 of the canonical encoding with Version
// empty: the model's content address.
func (m *Model) Hash() string {
	c := *m
	c.Version = ""
	b, err := json.Marshal(&c)
	if err != nil {
		// Only non-finite floats fail; Validate refuses them and training never
		// produces them.
		panic(fmt.Sprintf("churn model: hash: %v", err))
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Decode reads a model, refusing unknown fields, and validates it (Validate),
// including that Version is its hash.
func Decode(data []byte) (*Model, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Model
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode churn model: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("decode churn model %s: %w", m.Version, err)
	}
	if h := m.Hash(); m.Version != h {
		return nil, fmt.Errorf("decode churn model: version: %q is not the content hash %s", m.Version, h)
	}
	return &m, nil
}

// Validate names each wrong field: kind, features, threshold, and the shape and
// finiteness of the parameters (tree links must point forward, so no cycles).
func (m *Model) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	nf := len(m.Features)
	if nf == 0 {
		bad("features: at least one required")
	}
	for i, f := range m.Features {
		if f == "" {
			bad("features[%d]: empty", i)
		} else if j := slices.Index(m.Features, f); j < i {
			bad("features[%d]: %q repeats features[%d]", i, f, j)
		}
	}
	if !(m.Threshold >= 0 && m.Threshold <= 1) {
		bad("threshold: %v must be within [0, 1]", m.Threshold)
	}
	switch m.Kind {
	case KindLogistic:
		if m.GBT != nil {
			bad("gbt: must be absent for kind logistic")
		}
		if m.Logistic == nil {
			bad("logistic: required for kind logistic")
		} else {
			errs = append(errs, m.Logistic.validate(nf)...)
		}
	case KindGBT:
		if m.Logistic != nil {
			bad("logistic: must be absent for kind gbt")
		}
		if m.GBT == nil {
			bad("gbt: required for kind gbt")
		} else {
			errs = append(errs, m.GBT.validate(nf)...)
		}
	default:
		bad("kind: %q must be %q or %q", m.Kind, KindLogistic, KindGBT)
	}
	return errors.Join(errs...)
}

func checkFinite(errs *[]error, field string, vs []float64) {
	for i, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			*errs = append(*errs, fmt.Errorf("%s[%d]: %v is not finite", field, i, v))
		}
	}
}
