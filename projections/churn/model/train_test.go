package model

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

func TestLogisticRecoversCoefficients(t *testing.T) {
	// logit = -1 + 1.0 x1 - 0.5 x2 + 0 x3, and x4 (>= 0, no effect of its own)
	// is unknown for 20% of rows, which adds 1.0.
	rng := rand.New(rand.NewPCG(3, 3))
	n := 60000
	d := Dataset{Names: []string{"x1", "x2", "x3", "x4"}, X: make([][]float64, n), Y: make([]float64, n)}
	for i := range n {
		x := []float64{rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64(), rng.Float64()}
		z := -1 + x[0] - 0.5*x[1]
		if rng.Float64() < 0.2 {
			x[3] = Unknown
			z += 1
		}
		d.X[i] = x
		if rng.Float64() < sigmoid(z) {
			d.Y[i] = 1
		}
	}
	m, err := TrainLogistic(d, LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := m.Logistic
	if !m.Training.Converged {
		t.Errorf("not converged after %d iterations", m.Training.Iterations)
	}
	// Standardised coefficients are the raw ones times the sd (about 1 for the
	// normals; 0.29 for the uniform).
	for _, c := range []struct {
		name      string
		got, want float64
		tol       float64
	}{
		{"x1", p.Coef[0], 1, 0.08},
		{"x2", p.Coef[1], -0.5, 0.06},
		{"x3", p.Coef[2], 0, 0.05},
		{"x4", p.Coef[3], 0, 0.05},
		{"x4 missing", p.MissingCoef[3], 1, 0.12},
	} {
		if math.Abs(c.got-c.want) > c.tol {
			t.Errorf("%s: coefficient %.3f, want %.3f ± %.2f", c.name, c.got, c.want, c.tol)
		}
	}
	if aware := p.MissingAware; aware[0] || aware[1] || aware[2] || !aware[3] {
		t.Errorf("missing_aware = %v, want only x4", aware)
	}
	// The unknown x4 is imputed with the mean of the known values.
	if math.Abs(p.Mean[3]-0.5) > 0.01 {
		t.Errorf("x4 mean = %v, want about 0.5 (known values only)", p.Mean[3])
	}
}

func TestLogisticBalancedStaysCalibrated(t *testing.T) {
	d := synthChurn(30000, 11)
	plain, err := TrainLogistic(d, LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bal, err := TrainLogistic(d, LogisticOptions{Balanced: true})
	if err != nil {
		t.Fatal(err)
	}
	mean := func(s []float64) float64 {
		var t float64
		for _, v := range s {
			t += v
		}
		return t / float64(len(s))
	}
	base := plain.Training.Train.BaseRate
	if got := mean(scores(plain, d)); math.Abs(got-base) > 0.002 {
		t.Errorf("plain mean probability %.4f, base rate %.4f", got, base)
	}
	// Prior correction keeps balanced scores on the base rate's scale (within a
	// factor), instead of around 0.5.
	if got := mean(scores(bal, d)); got > 3*base || got < base/3 {
		t.Errorf("balanced mean probability %.4f, base rate %.4f", got, base)
	}
}

// xor is a pure interaction: the label is x1*x2 > 0, flipped for 10% of rows,
// with three noise features.
func xor(n int, seed uint64) Dataset {
	rng := rand.New(rand.NewPCG(seed, 5))
	d := Dataset{Names: []string{"x1", "x2", "n1", "n2", "n3"}, X: make([][]float64, n), Y: make([]float64, n)}
	for i := range n {
		x := make([]float64, 5)
		for j := range x {
			x[j] = 2*rng.Float64() - 1
		}
		y := x[0]*x[1] > 0
		if rng.Float64() < 0.1 {
			y = !y
		}
		d.X[i] = x
		if y {
			d.Y[i] = 1
		}
	}
	return d
}

func TestGBTBeatsLogisticOnInteraction(t *testing.T) {
	train, test := xor(20000, 1), xor(10000, 2)
	lr, err := TrainLogistic(train, LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gbt, err := TrainGBT(train, GBTOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	lrAUC := Evaluate(scores(lr, test), test.Y, lr.Threshold).AUC
	gbtAUC := Evaluate(scores(gbt, test), test.Y, gbt.Threshold).AUC
	t.Logf("held-out AUC: logistic %.4f, gbt %.4f", lrAUC, gbtAUC)
	if math.Abs(lrAUC-0.5) > 0.03 {
		t.Errorf("logistic AUC %.4f, want near 0.5 on a pure interaction", lrAUC)
	}
	if gbtAUC < 0.85 {
		t.Errorf("gbt AUC %.4f, want >= 0.85", gbtAUC)
	}
}

func TestGBTOnChurnLikeData(t *testing.T) {
	d := synthChurn(60000, 21)
	train, test := subset(d, 0, 40000), subset(d, 40000, 60000)
	lr, err := TrainLogistic(train, LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gbt, err := TrainGBT(train, GBTOptions{ValidationShare: 0.2, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	lrM := Evaluate(scores(lr, test), test.Y, lr.Threshold)
	gbtM := Evaluate(scores(gbt, test), test.Y, gbt.Threshold)
	t.Logf("held-out: logistic AUC %.4f lift %.2f; gbt AUC %.4f lift %.2f (%d trees, validation AUC %.4f)",
		lrM.AUC, lrM.TopDecileLift, gbtM.AUC, gbtM.TopDecileLift, gbt.Training.Iterations, gbt.Training.Validation.AUC)
	for name, m := range map[string]Metrics{"logistic": lrM, "gbt": gbtM} {
		if m.AUC < 0.7 || m.TopDecileLift < 2.5 {
			t.Errorf("%s: held-out AUC %.4f lift %.2f, want >= 0.7 and >= 2.5", name, m.AUC, m.TopDecileLift)
		}
	}
	if gbt.Training.ValidationRows == 0 || gbt.Training.Validation == nil {
		t.Errorf("validation split missing from training metadata: %+v", gbt.Training)
	}
}

func TestThresholdAlertsTheAlertRate(t *testing.T) {
	d := synthChurn(20000, 5)
	for _, rate := range []float64{0.05, 0.1} {
		lr, err := TrainLogistic(d, LogisticOptions{AlertRate: rate})
		if err != nil {
			t.Fatal(err)
		}
		gbt, err := TrainGBT(d, GBTOptions{AlertRate: rate, Trees: 30})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []*Model{lr, gbt} {
			got := float64(m.Training.Train.Alerts) / float64(m.Training.Train.N)
			if got < rate || got > rate+0.01 {
				t.Errorf("%s at alert rate %v: %v of training rows alert", m.Kind, rate, got)
			}
		}
	}
}

func trainedModels(t *testing.T) []*Model {
	t.Helper()
	d := synthChurn(20000, 9)
	lr, err := TrainLogistic(d, LogisticOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gbt, err := TrainGBT(d, GBTOptions{Trees: 60, Seed: 2, ValidationShare: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	return []*Model{lr, gbt}
}

func TestTrainingIsDeterministic(t *testing.T) {
	d := synthChurn(30000, 13)
	train := func() (string, string) {
		lr, err := TrainLogistic(d, LogisticOptions{Balanced: true})
		if err != nil {
			t.Fatal(err)
		}
		gbt, err := TrainGBT(d, GBTOptions{Trees: 40, Seed: 8, ValidationShare: 0.2})
		if err != nil {
			t.Fatal(err)
		}
		return lr.Version, gbt.Version
	}
	lr1, gbt1 := train()
	prev := runtime.GOMAXPROCS(1)
	lr2, gbt2 := train()
	runtime.GOMAXPROCS(max(prev, 4))
	lr3, gbt3 := train()
	runtime.GOMAXPROCS(prev)
	if lr1 != lr2 || lr1 != lr3 || gbt1 != gbt2 || gbt1 != gbt3 {
		t.Errorf("versions differ across runs and core counts: logistic %s %s %s, gbt %s %s %s", lr1, lr2, lr3, gbt1, gbt2, gbt3)
	}
	gbtOther, err := TrainGBT(d, GBTOptions{Trees: 40, Seed: 9, ValidationShare: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	if gbtOther.Version == gbt1 {
		t.Errorf("another seed gave the same version %s", gbt1)
	}
}

func TestGBTTrainingLogitsArePredictions(t *testing.T) {
	// Training reuses its running logits for the threshold and metrics; they
	// must equal Predict's, or the threshold would not alert what it says.
	d := synthChurn(20000, 31)
	m, err := TrainGBT(d, GBTOptions{Trees: 40})
	if err != nil {
		t.Fatal(err)
	}
	probs := scores(m, d)
	want := Evaluate(probs, d.Y, alertThreshold(probs, DefaultAlertRate))
	if m.Threshold != want.Threshold || m.Training.Train != want {
		t.Errorf("training metrics %+v, from Predict %+v", m.Training.Train, want)
	}
}
