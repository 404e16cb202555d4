package model

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/projections/churn/features"
)

// randomRow mixes training-like rows with unknowns and values outside the
// training range.
func randomRow(rng *rand.Rand, d Dataset) []float64 {
	x := slices.Clone(d.X[rng.IntN(d.Rows())])
	for j := range x {
		switch rng.IntN(6) {
		case 0:
			x[j] = Unknown
		case 1:
			x[j] = (rng.Float64() - 0.3) * 1000
		}
	}
	return x
}

func TestContributionsSumToLogit(t *testing.T) {
	d := synthChurn(2000, 17)
	for _, m := range trainedModels(t) {
		rng := rand.New(rand.NewPCG(1, 1))
		for range 1000 {
			x := randomRow(rng, d)
			p := m.Predict(x)
			sum := p.Bias
			for _, c := range p.Contributions {
				sum += c
			}
			if math.Abs(sum-p.Logit) > 1e-9 {
				t.Fatalf("%s: bias + contributions = %v, logit %v", m.Kind, sum, p.Logit)
			}
			if got := m.Probability(x); got != p.Probability || math.Abs(got-1/(1+math.Exp(-p.Logit))) > 1e-12 {
				t.Fatalf("%s: probability %v, predict %v, logit %v", m.Kind, got, p.Probability, p.Logit)
			}
		}
	}
}

func TestContributionsCreditTheRightFeature(t *testing.T) {
	// A port-out request is the strongest synthetic signal: it must be the
	// largest positive contribution for a customer who asked to leave.
	d := synthChurn(40000, 23)
	at := slices.Index(d.Names, features.PortOutRequested)
	for _, m := range []func() (*Model, error){
		func() (*Model, error) { return TrainLogistic(d, LogisticOptions{}) },
		func() (*Model, error) { return TrainGBT(d, GBTOptions{Trees: 80}) },
	} {
		mod, err := m()
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float64, len(d.Names))
		copy(x, d.X[0])
		x[at] = 1
		x[slices.Index(d.Names, features.DaysSincePortOut)] = 3
		p := mod.Predict(x)
		if top := slices.Index(p.Contributions, slices.Max(p.Contributions)); top != at {
			t.Errorf("%s: largest contribution from %s (%v), want %s", mod.Kind, d.Names[top], p.Contributions, features.PortOutRequested)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	d := synthChurn(500, 19)
	for _, m := range trainedModels(t) {
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: decode: %v", m.Kind, err)
		}
		if got.Version != m.Version || got.Hash() != m.Hash() || !strings.HasPrefix(m.Version, "sha256:") {
			t.Errorf("%s: version %s hash %s, want %s", m.Kind, got.Version, got.Hash(), m.Version)
		}
		again, err := got.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Errorf("%s: re-encoding differs", m.Kind)
		}
		rng := rand.New(rand.NewPCG(2, 2))
		for range 200 {
			x := randomRow(rng, d)
			if diff := cmp.Diff(m.Predict(x), got.Predict(x)); diff != "" {
				t.Fatalf("%s: prediction after round trip (-want +got):\n%s", m.Kind, diff)
			}
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	models := trainedModels(t)
	// edit returns the encoding of a model changed by f, with Version rehashed
	// unless keepVersion.
	edit := func(m *Model, keepVersion bool, f func(*Model)) []byte {
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		var c Model
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		f(&c)
		if !keepVersion {
			c.Version = c.Hash()
		}
		out, err := json.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	lr, gbt := models[0], models[1]
	tests := []struct {
		name string
		data []byte
		want string // a substring of the error
	}{
		{"not json", []byte(`{"kind":`), "unexpected EOF"},
		{"wrong type", []byte(`{"kind":"gbt","threshold":"high"}`), "Model.threshold"},
		{"unknown field", []byte(`{"kind":"gbt","colour":"red"}`), `unknown field "colour"`},
		{"kind", edit(lr, false, func(m *Model) { m.Kind = "forest" }), "kind:"},
		{"no features", edit(lr, false, func(m *Model) { m.Features = nil }), "features: at least one"},
		{"duplicate feature", edit(lr, false, func(m *Model) { m.Features[1] = m.Features[0] }), "features[1]:"},
		{"threshold", edit(gbt, false, func(m *Model) { m.Threshold = 2 }), "threshold:"},
		{"coef width", edit(lr, false, func(m *Model) { m.Logistic.Coef = m.Logistic.Coef[1:] }), "logistic.coef:"},
		{"scale", edit(lr, false, func(m *Model) { m.Logistic.Scale[2] = 0 }), "logistic.scale[2]:"},
		{"both params", edit(gbt, false, func(m *Model) { m.Logistic = lr.Logistic }), "logistic: must be absent"},
		{"tree feature", edit(gbt, false, func(m *Model) { m.GBT.Trees[3].Nodes[0].Feature = 99 }), "gbt.trees[3].nodes[0].feature:"},
		{"tree cycle", edit(gbt, false, func(m *Model) { m.GBT.Trees[0].Nodes[0].Left = 0 }), "gbt.trees[0].nodes[0].left:"},
		{"tampered", edit(gbt, true, func(m *Model) { m.GBT.Init += 1 }), "version:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestDatasetValidate(t *testing.T) {
	ok := func() Dataset {
		return Dataset{Names: []string{"a", "b"}, X: [][]float64{{1, 2}, {3, -1}}, Y: []float64{0, 1}}
	}
	tests := []struct {
		name string
		edit func(*Dataset)
		want []string // substrings of the error; none for valid
	}{
		{"valid", func(*Dataset) {}, nil},
		{"no names", func(d *Dataset) { d.Names = nil; d.X = [][]float64{{}, {}} }, []string{"names: at least one"}},
		{"duplicate name", func(d *Dataset) { d.Names[1] = "a" }, []string{`names[1]: "a" repeats names[0]`}},
		{"width", func(d *Dataset) { d.X[1] = []float64{1} }, []string{"row 1: 1 values, want 2"}},
		{"nan", func(d *Dataset) { d.X[0][1] = math.NaN() }, []string{"row 0: feature b: NaN is not finite"}},
		{"inf", func(d *Dataset) { d.X[1][0] = math.Inf(1) }, []string{"row 1: feature a: +Inf"}},
		{"label", func(d *Dataset) { d.Y[0] = 0.5 }, []string{"row 0: label 0.5 must be 0 or 1"}},
		{"one class", func(d *Dataset) { d.Y[0] = 1 }, []string{"labels: 2 positives and 0 negatives"}},
		{"lengths", func(d *Dataset) { d.Y = d.Y[:1] }, []string{"rows: 2 feature rows but 1 labels"}},
		{"many", func(d *Dataset) {
			for range 20 {
				d.X = append(d.X, []float64{math.NaN(), 0})
				d.Y = append(d.Y, 0)
			}
		}, []string{"row 2: feature a", "and 10 more errors"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ok()
			tt.edit(&d)
			err := d.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
	if _, err := TrainGBT(ok(), GBTOptions{Depth: 40}); err == nil || !strings.Contains(err.Error(), "depth:") {
		t.Errorf("TrainGBT with depth 40: %v, want a depth error", err)
	}
}

func TestAlign(t *testing.T) {
	// A model trained on a subset of the features in another order scores a
	// vector in features.Names() order.
	full := synthChurn(5000, 29)
	pick := []string{features.PortOutRequested, features.SpendDrop, features.TenureMonths, features.LastNPS}
	d := Dataset{Names: pick, Y: full.Y}
	for _, row := range full.X {
		x := make([]float64, len(pick))
		for i, nm := range pick {
			x[i] = row[slices.Index(full.Names, nm)]
		}
		d.X = append(d.X, x)
	}
	m, err := TrainLogistic(d, LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	align, err := m.Align(features.Names())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if got, want := m.Probability(align(full.X[i])), m.Probability(d.X[i]); got != want {
			t.Fatalf("row %d: aligned probability %v, want %v", i, got, want)
		}
	}
	_, err = m.Align([]string{features.SpendDrop, features.LastNPS})
	if err == nil || !strings.Contains(err.Error(), `"port_out_requested"`) || !strings.Contains(err.Error(), `"tenure_months"`) {
		t.Errorf("Align with missing names: %v, want both missing features named", err)
	}
}
