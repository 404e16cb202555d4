package features

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/touchstream/touchstream/events"
)

// Rules is a version of the rule scorer, as stored in deploy/churn-rules.json.
type Rules struct {
	Version        string  `json:"version"`
	Bias           float64 `json:"bias"`            // the logit with no rule firing
	AlertThreshold float64 `json:"alert_threshold"` // probability at or above which an alert is due
	Rules          []Rule  `json:"rules"`
}

// Rule adds Weight to the logit, in one of two forms:
//   - a condition (Min and/or Max, inclusive): Weight when Min <= value <= Max;
//   - a ramp [from, to]: Weight × the share of the way the value has gone from
//     from to to (0 at or below from, 1 at or above to; from > to ramps downward).
type Rule struct {
	Feature string      `json:"feature"`
	Weight  float64     `json:"weight"`
	Min     *float64    `json:"min,omitempty"`
	Max     *float64    `json:"max,omitempty"`
	Ramp    *[2]float64 `json:"ramp,omitempty"`
	Note    string      `json:"note,omitempty"`
}

// Scorer scores vectors under one version of the rules.
type Scorer struct {
	rules Rules
}

// Load reads and validates a rules version. Unknown fields are refused.
func Load(data []byte) (*Scorer, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Rules
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("churn rules: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("churn rules %s: %w", r.Version, err)
	}
	return &Scorer{rules: r}, nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Validate names each wrong field and why, all of them.
func (r Rules) Validate() error {
	var errs []error
	if r.Version == "" {
		errs = append(errs, errors.New("version: required"))
	}
	if !finite(r.Bias) || math.Abs(r.Bias) > 50 {
		errs = append(errs, fmt.Errorf("bias: %v must be finite, within ±50", r.Bias))
	}
	if !(r.AlertThreshold > 0 && r.AlertThreshold < 1) {
		errs = append(errs, fmt.Errorf("alert_threshold: %v must be strictly between 0 and 1", r.AlertThreshold))
	}
	if len(r.Rules) == 0 {
		errs = append(errs, errors.New("rules: at least one rule required"))
	}
	for i, ru := range r.Rules {
		at := fmt.Sprintf("rules[%d]", i)
		if !slices.Contains(names, ru.Feature) {
			errs = append(errs, fmt.Errorf("%s.feature: %q is not a feature (see features.Names)", at, ru.Feature))
		}
		if !finite(ru.Weight) || ru.Weight == 0 || math.Abs(ru.Weight) > 50 {
			errs = append(errs, fmt.Errorf("%s.weight: %v must be finite, non-zero, within ±50", at, ru.Weight))
		}
		cond := ru.Min != nil || ru.Max != nil
		switch {
		case cond && ru.Ramp != nil:
			errs = append(errs, fmt.Errorf("%s: min/max and ramp are exclusive", at))
		case !cond && ru.Ramp == nil:
			errs = append(errs, fmt.Errorf("%s: one of min/max or ramp required", at))
		case ru.Ramp != nil:
			if !finite(ru.Ramp[0]) || !finite(ru.Ramp[1]) || ru.Ramp[0] == ru.Ramp[1] {
				errs = append(errs, fmt.Errorf("%s.ramp: %v must be two distinct finite values", at, *ru.Ramp))
			}
		default:
			if (ru.Min != nil && !finite(*ru.Min)) || (ru.Max != nil && !finite(*ru.Max)) {
				errs = append(errs, fmt.Errorf("%s.min/max: must be finite", at))
			} else if ru.Min != nil && ru.Max != nil && *ru.Min > *ru.Max {
				errs = append(errs, fmt.Errorf("%s.min: %v is above max %v", at, *ru.Min, *ru.Max))
			}
		}
	}
	return errors.Join(errs...)
}

// Version is the rules version.
func (s *Scorer) Version() string { return s.rules.Version }

// Threshold is the alert threshold of the version.
func (s *Scorer) Threshold() float64 { return s.rules.AlertThreshold }

// Reason is one feature's contribution to a score and the events behind it.
type Reason struct {
	Feature      string            `json:"feature"`
	Value        float64           `json:"value"`
	Contribution float64           `json:"contribution"` // to the logit
	Events       []events.EventRef `json:"events,omitempty"`
}

// Score is a vector's risk under one version of the rules.
type Score struct {
	Version     string   `json:"version"`
	Probability float64  `json:"probability"` // in [0, 1]
	Logit       float64  `json:"logit"`       // Bias + the sum of the reasons' contributions
	Bias        float64  `json:"bias"`
	Alert       bool     `json:"alert"` // Probability >= the alert threshold
	Reasons     []Reason `json:"reasons"`
}

// Contribution is what one rule adds to the logit for a value.
func (r Rule) Contribution(v float64) float64 {
	if r.Ramp != nil {
		from, to := r.Ramp[0], r.Ramp[1]
		share := min(1, max(0, (v-from)/(to-from)))
		return r.Weight * share
	}
	if (r.Min != nil && v < *r.Min) || (r.Max != nil && v > *r.Max) {
		return 0
	}
	return r.Weight
}

// Score combines the rules logistically. Reasons hold every feature whose rules
// contributed (their contributions summed), the largest contribution first (ties
// by name); with the bias they sum to the logit. A feature missing from the vector
// counts as -1 (unknown).
func (s *Scorer) Score(v Vector) Score {
	contrib := map[string]float64{}
	for _, r := range s.rules.Rules {
		val, ok := v.Value(r.Feature)
		if !ok {
			val = unknown
		}
		if c := r.Contribution(val); c != 0 {
			contrib[r.Feature] += c
		}
	}
	out := Score{Version: s.rules.Version, Bias: s.rules.Bias, Logit: s.rules.Bias, Reasons: []Reason{}}
	for name, c := range contrib {
		if c == 0 {
			continue
		}
		r := Reason{Feature: name, Contribution: c, Value: unknown}
		if f := v.Feature(name); f != nil {
			r.Value, r.Events = f.Value, slices.Clone(f.Events)
		}
		out.Reasons = append(out.Reasons, r)
	}
	SortReasons(out.Reasons)
	for _, r := range out.Reasons {
		out.Logit += r.Contribution
	}
	out.Probability = 1 / (1 + math.Exp(-out.Logit))
	out.Alert = out.Probability >= s.rules.AlertThreshold
	return out
}

// SortReasons orders reasons by contribution, largest first, ties by feature name.
func SortReasons(rs []Reason) {
	slices.SortFunc(rs, func(a, b Reason) int {
		return cmp.Or(cmp.Compare(b.Contribution, a.Contribution), cmp.Compare(a.Feature, b.Feature))
	})
}
