package features

import (
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
)

const deployRules = "../../../deploy/churn-rules.json"

func deployed(t *testing.T) *Scorer {
	t.Helper()
	b, err := os.ReadFile(deployRules)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(b)
	if err != nil {
		t.Fatalf("load %s: %v", deployRules, err)
	}
	return s
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, json string
		want       []string
	}{
		{"not json", `{`, []string{"churn rules:"}},
		{"unknown field", `{"version":"v","bias":-3,"alert_threshold":0.5,"rules":[],"weights":{}}`, []string{`unknown field "weights"`}},
		{"empty", `{}`, []string{"version: required", "alert_threshold: 0 must be strictly between 0 and 1", "rules: at least one rule required"}},
		{"bad rules", `{"version":"v","bias":99,"alert_threshold":1,"rules":[
			{"feature":"shoe_size","weight":1,"min":1},
			{"feature":"spend_drop","weight":0,"ramp":[0.2,0.2]},
			{"feature":"spend_drop","weight":1},
			{"feature":"spend_drop","weight":1,"min":1,"ramp":[0,1]},
			{"feature":"tenure_months","weight":1,"min":5,"max":2}]}`, []string{
			"bias: 99 must be finite, within ±50",
			"alert_threshold: 1 must be strictly between 0 and 1",
			`rules[0].feature: "shoe_size" is not a feature`,
			"rules[1].weight: 0 must be finite, non-zero",
			"rules[1].ramp: [0.2 0.2] must be two distinct finite values",
			"rules[2]: one of min/max or ramp required",
			"rules[3]: min/max and ramp are exclusive",
			"rules[4].min: 5 is above max 2",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]byte(tt.json))
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestDeployedRules(t *testing.T) {
	s := deployed(t)
	if s.Version() == "" || s.Threshold() <= 0 {
		t.Fatalf("version %q threshold %v", s.Version(), s.Threshold())
	}
	// A quiet, satisfied customer is far from an alert; one who asked to port out,
	// whose spend collapsed and whose complaint is overdue is an alert, with the
	// port-out request as the first reason.
	var quiet State
	for i := range 120 {
		if err := quiet.Apply(Event{Ref: ref(i), Time: at(i - 119), Data: recharge(2)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Score(quiet.Snapshot(at(0))); got.Alert || got.Probability > 0.1 {
		t.Errorf("quiet customer: %+v", got)
	}
	leaving := fold(t, []step{
		{-119, recharge(100)}, {-90, recharge(100)}, {-60, recharge(100)}, {-35, recharge(100)},
		{-20, events.ComplaintOpened{ComplaintID: "c", PromisedBy: at(-10)}},
		{-5, events.PortOutRequested{RequestID: "p", TargetOperator: "cmcc"}},
		{0, tick()},
	})
	got := s.Score(leaving.Snapshot(at(0)))
	if !got.Alert {
		t.Fatalf("leaving customer not alerted: %+v", got)
	}
	if got.Reasons[0].Feature != PortOutRequested || !cmp.Equal(got.Reasons[0].Events, []events.EventRef{ref(5)}) {
		t.Errorf("first reason: %+v", got.Reasons[0])
	}
}

func TestScoreReasons(t *testing.T) {
	s, err := Load([]byte(`{"version":"t","bias":-2,"alert_threshold":0.5,"rules":[
		{"feature":"port_out_requested","weight":3,"min":1},
		{"feature":"spend_drop","weight":2,"ramp":[0,1]},
		{"feature":"spend_drop","weight":0.5,"min":0.5},
		{"feature":"tenure_months","weight":-1,"min":24}]}`))
	if err != nil {
		t.Fatal(err)
	}
	v := Vector{AsOf: t0, Features: []Feature{
		{Name: PortOutRequested, Value: 1, Events: []events.EventRef{ref(1)}},
		{Name: SpendDrop, Value: 0.75, Events: []events.EventRef{ref(2), ref(3)}},
		{Name: TenureMonths, Value: 30},
	}}
	got := s.Score(v)
	want := Score{Version: "t", Bias: -2, Logit: -2 + 3 + 2 - 1, Probability: 1 / (1 + math.Exp(-2)), Alert: true, Reasons: []Reason{
		{Feature: PortOutRequested, Value: 1, Contribution: 3, Events: []events.EventRef{ref(1)}},
		{Feature: SpendDrop, Value: 0.75, Contribution: 2, Events: []events.EventRef{ref(2), ref(3)}},
		{Feature: TenureMonths, Value: 30, Contribution: -1},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("score (-want +got):\n%s", diff)
	}
}

// TestScoreProperties: over random histories and random vectors, the probability
// is within [0, 1], the reasons' contributions and the bias sum to the logit, the
// reasons are sorted, and a port-out request never lowers the risk.
func TestScoreProperties(t *testing.T) {
	s := deployed(t)
	var vectors []Vector
	for seed := range uint64(10) {
		evs := stream(seed, 300)
		var st State
		for i, ev := range evs {
			if err := st.Apply(ev); err != nil {
				t.Fatal(err)
			}
			if i%10 == 0 {
				vectors = append(vectors, st.Snapshot(st.Now))
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 { // extreme values too
		v := Vector{AsOf: t0}
		for _, n := range Names() {
			v.Features = append(v.Features, Feature{Name: n, Value: []float64{-1, 0, 1, 3, 1e6, rng.Float64() * 100}[rng.IntN(6)]})
		}
		vectors = append(vectors, v)
	}
	for i, v := range vectors {
		got := s.Score(v)
		if !(got.Probability >= 0 && got.Probability <= 1) {
			t.Fatalf("vector %d: probability %v", i, got.Probability)
		}
		sum := got.Bias
		for j, r := range got.Reasons {
			sum += r.Contribution
			if j > 0 && r.Contribution > got.Reasons[j-1].Contribution {
				t.Fatalf("vector %d: reasons not sorted: %+v", i, got.Reasons)
			}
		}
		if math.Abs(sum-got.Logit) > 1e-9 {
			t.Fatalf("vector %d: bias+contributions %v, logit %v", i, sum, got.Logit)
		}
		if got.Alert != (got.Probability >= s.Threshold()) {
			t.Fatalf("vector %d: alert %v at %v", i, got.Alert, got.Probability)
		}
		without, with := clone(v), clone(v)
		without.Feature(PortOutRequested).Value = 0
		with.Feature(PortOutRequested).Value = 1
		if p0, p1 := s.Score(without).Probability, s.Score(with).Probability; p1 < p0 {
			t.Fatalf("vector %d: port-out lowers the risk: %v -> %v", i, p0, p1)
		}
	}
}

func clone(v Vector) Vector {
	v.Features = append([]Feature(nil), v.Features...)
	return v
}

// TestScoreDeterministic: the reasons' order does not depend on map iteration.
func TestScoreDeterministic(t *testing.T) {
	s := deployed(t)
	st := foldAll(t, stream(5, 300))
	v := st.Snapshot(st.Now)
	a := s.Score(v)
	for range 20 {
		if diff := cmp.Diff(a, s.Score(v)); diff != "" {
			t.Fatalf("score varies:\n%s", diff)
		}
	}
}
