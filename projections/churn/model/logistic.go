package model

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// LogisticOptions configure TrainLogistic. Zero fields take the defaults.
type LogisticOptions struct {
	// Lambda is the L2 penalty per row on the standardised coefficients (not the
	// intercept): the objective is the mean log loss + Lambda/2 × ‖β‖². Default 1e-3.
	Lambda float64 `json:"lambda"`
	// Balanced weights the classes to equal total weight, then moves the
	// intercept by log(positives/negatives) so probabilities stay calibrated to
	// the training base rate.
	Balanced bool `json:"balanced"`
	// MaxIterations bounds the Newton steps (default 100); Tolerance is the
	// largest coefficient change at which the fit has converged (default 1e-7).
	MaxIterations int     `json:"max_iterations"`
	Tolerance     float64 `json:"tolerance"`
	// AlertRate is the share of the training rows the threshold alerts (default 0.05).
	AlertRate float64 `json:"alert_rate"`
}

// Logistic defaults.
const (
	DefaultLogisticLambda = 1e-3
	DefaultAlertRate      = 0.05
)

func (o LogisticOptions) withDefaults() LogisticOptions {
	if o.Lambda == 0 {
		o.Lambda = DefaultLogisticLambda
	}
	if o.MaxIterations == 0 {
		o.MaxIterations = 100
	}
	if o.Tolerance == 0 {
		o.Tolerance = 1e-7
	}
	if o.AlertRate == 0 {
		o.AlertRate = DefaultAlertRate
	}
	return o
}

// Validate names each out-of-range option (after defaults).
func (o LogisticOptions) Validate() error {
	var errs []error
	if !(o.Lambda > 0) || !finite(o.Lambda) {
		errs = append(errs, fmt.Errorf("lambda: %v must be positive", o.Lambda))
	}
	if o.MaxIterations < 1 {
		errs = append(errs, fmt.Errorf("max_iterations: %d must be at least 1", o.MaxIterations))
	}
	if !(o.Tolerance > 0) {
		errs = append(errs, fmt.Errorf("tolerance: %v must be positive", o.Tolerance))
	}
	errs = append(errs, checkAlertRate(o.AlertRate)...)
	return errors.Join(errs...)
}

func checkAlertRate(r float64) []error {
	if !(r > 0 && r < 1) {
		return []error{fmt.Errorf("alert_rate: %v must be strictly between 0 and 1", r)}
	}
	return nil
}

// LogisticParams are a logistic model's parameters, per feature in the order of
// Model.Features. A feature's standardised value is (x - Mean) / Scale; when
// MissingAware and x is Unknown it is 0 (the mean) and MissingCoef is added.
type LogisticParams struct {
	Intercept    float64   `json:"intercept"`
	Mean         []float64 `json:"mean"`  // mean of the known training values: the imputed value
	Scale        []float64 `json:"scale"` // their standard deviation (1 for a constant)
	Coef         []float64 `json:"coef"`
	MissingAware []bool    `json:"missing_aware"` // known training values all >= 0: Unknown means missing
	MissingCoef  []float64 `json:"missing_coef"`  // the missing indicator's coefficient (0 without one)
}

func (p *LogisticParams) validate(nf int) []error {
	var errs []error
	for _, f := range []struct {
		name string
		n    int
	}{{"mean", len(p.Mean)}, {"scale", len(p.Scale)}, {"coef", len(p.Coef)}, {"missing_aware", len(p.MissingAware)}, {"missing_coef", len(p.MissingCoef)}} {
		if f.n != nf {
			errs = append(errs, fmt.Errorf("logistic.%s: %d values, want %d (one per feature)", f.name, f.n, nf))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	checkFinite(&errs, "logistic.intercept", []float64{p.Intercept})
	checkFinite(&errs, "logistic.mean", p.Mean)
	checkFinite(&errs, "logistic.scale", p.Scale)
	checkFinite(&errs, "logistic.coef", p.Coef)
	checkFinite(&errs, "logistic.missing_coef", p.MissingCoef)
	for i, s := range p.Scale {
		if !(s > 0) {
			errs = append(errs, fmt.Errorf("logistic.scale[%d]: %v must be positive", i, s))
		}
	}
	return errs
}

// term is feature j's contribution to the logit.
func (p *LogisticParams) term(j int, x float64) float64 {
	if p.MissingAware[j] && x == Unknown {
		return p.MissingCoef[j]
	}
	return p.Coef[j] * ((x - p.Mean[j]) / p.Scale[j])
}

func (p *LogisticParams) logit(x []float64) float64 {
	z := p.Intercept
	for j, v := range x {
		z += p.term(j, v)
	}
	return z
}

func (p *LogisticParams) explain(x, contrib []float64) float64 {
	for j, v := range x {
		contrib[j] = p.term(j, v)
	}
	return p.Intercept
}

// TrainLogistic fits an L2-regularised logistic regression by Newton's method
// (with step halving), from zero coefficients and the base-rate intercept.
func TrainLogistic(d Dataset, o LogisticOptions) (*Model, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("train logistic: options: %w", err)
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("train logistic: %w", err)
	}
	n, nf := d.Rows(), len(d.Names)
	pos := d.Positives()
	prm := &LogisticParams{
		Mean: make([]float64, nf), Scale: make([]float64, nf), Coef: make([]float64, nf),
		MissingAware: make([]bool, nf), MissingCoef: make([]float64, nf),
	}
	// Design: [1, z_0..z_{nf-1}, indicators of the features with a missing value].
	var indicators []int // feature of each indicator column
	for j := range nf {
		var sum, known float64
		minKnown, unknowns := math.Inf(1), 0
		for _, row := range d.X {
			if v := row[j]; v == Unknown {
				unknowns++
			} else {
				sum += v
				known++
				minKnown = min(minKnown, v)
			}
		}
		aware := minKnown >= 0 // also when nothing is known
		prm.MissingAware[j] = aware
		if !aware { // -1 is an ordinary value here
			sum, known = sum-float64(unknowns), known+float64(unknowns)
		}
		mean := 0.0
		if known > 0 {
			mean = sum / known
		}
		var ss float64
		for _, row := range d.X {
			if v := row[j]; !aware || v != Unknown {
				ss += (v - mean) * (v - mean)
			}
		}
		sd := 1.0
		if known > 0 && ss > 0 {
			sd = math.Sqrt(ss / known)
		}
		prm.Mean[j], prm.Scale[j] = mean, sd
		if aware && unknowns > 0 {
			indicators = append(indicators, j)
		}
	}
	dim := 1 + nf + len(indicators)
	indOf := make([]int, nf) // column of feature j's indicator, or 0
	for k, j := range indicators {
		indOf[j] = 1 + nf + k
	}
	design := func(row, z []float64) {
		z[0] = 1
		for j, v := range row {
			if prm.MissingAware[j] && v == Unknown {
				z[1+j] = 0
				if c := indOf[j]; c > 0 {
					z[c] = 1
				}
				continue
			}
			z[1+j] = (v - prm.Mean[j]) / prm.Scale[j]
			if c := indOf[j]; c > 0 {
				z[c] = 0
			}
		}
	}
	wPos, wNeg := 1.0, 1.0
	if o.Balanced {
		wPos, wNeg = float64(n)/(2*float64(pos)), float64(n)/(2*float64(n-pos))
	}
	totalW := wPos*float64(pos) + wNeg*float64(n-pos)

	beta := make([]float64, dim)
	if o.Balanced {
		beta[0] = 0
	} else {
		beta[0] = math.Log(float64(pos) / float64(n-pos))
	}
	objective := func(loss float64, b []float64) float64 {
		var r float64
		for _, v := range b[1:] {
			r += v * v
		}
		return loss/totalW + o.Lambda/2*r
	}
	ev := newNewtonPass(d, dim, design, wPos, wNeg)
	loss, grad, hess := ev.run(beta)
	obj := objective(loss, beta)
	iters, converged := 0, false
	step := make([]float64, dim)
	next := make([]float64, dim)
	for iters < o.MaxIterations {
		// Gradient and Hessian of the objective.
		g := make([]float64, dim)
		h := make([]float64, dim*dim)
		for a := range dim {
			g[a] = grad[a] / totalW
			if a > 0 {
				g[a] += o.Lambda * beta[a]
			}
			for b := a; b < dim; b++ {
				v := hess[tri(a, b, dim)] / totalW
				if a == b && a > 0 {
					v += o.Lambda
				}
				h[a*dim+b], h[b*dim+a] = v, v
			}
		}
		if err := solveSPD(h, g, step, dim); err != nil {
			return nil, fmt.Errorf("train logistic: newton step %d: %w", iters+1, err)
		}
		iters++
		t := 1.0
		var nLoss, nObj float64
		var nGrad, nHess []float64
		for halvings := 0; ; halvings++ {
			for a := range dim {
				next[a] = beta[a] - t*step[a]
			}
			nLoss, nGrad, nHess = ev.run(next)
			nObj = objective(nLoss, next)
			if nObj <= obj+1e-12*math.Abs(obj) || halvings == 30 {
				break
			}
			t /= 2
		}
		maxStep := 0.0
		for a := range dim {
			maxStep = max(maxStep, math.Abs(t*step[a]))
		}
		copy(beta, next)
		loss, grad, hess, obj = nLoss, nGrad, nHess, nObj
		if maxStep < o.Tolerance {
			converged = true
			break
		}
	}
	prm.Intercept = beta[0]
	copy(prm.Coef, beta[1:1+nf])
	for k, j := range indicators {
		prm.MissingCoef[j] = beta[1+nf+k]
	}
	if o.Balanced {
		prm.Intercept += math.Log(float64(pos) / float64(n-pos))
	}
	m := &Model{Kind: KindLogistic, Features: append([]string(nil), d.Names...), Logistic: prm}
	m.Training = Training{Rows: n, Positives: pos, Iterations: iters, Converged: converged, Logistic: &o}
	finish(m, d, nil, o.AlertRate, nil)
	return m, nil
}

// finish sets the threshold from the scores of the fitted rows, the metrics and
// the version. valid lists held-out rows (nil when none); logits, when not nil,
// are the model's logits for every row, already computed exactly as Predict does.
func finish(m *Model, d Dataset, valid []int, alertRate float64, logits []float64) {
	isValid := make([]bool, d.Rows())
	for _, i := range valid {
		isValid[i] = true
	}
	var probs []float64
	if logits != nil {
		probs = make([]float64, len(logits))
		for i, z := range logits {
			probs[i] = sigmoid(z)
		}
	} else {
		probs = scoreAll(m, d.X)
	}
	var tp, ty, vp, vy []float64
	for i, p := range probs {
		if isValid[i] {
			vp, vy = append(vp, p), append(vy, d.Y[i])
		} else {
			tp, ty = append(tp, p), append(ty, d.Y[i])
		}
	}
	m.Threshold = alertThreshold(tp, alertRate)
	m.Training.Train = Evaluate(tp, ty, m.Threshold)
	if len(valid) > 0 {
		v := Evaluate(vp, vy, m.Threshold)
		m.Training.Validation = &v
		m.Training.ValidationRows = len(valid)
	}
	m.Version = m.Hash()
}

// scoreAll computes probabilities for every row, on every core; each row's
// score is independent, so the result does not depend on the split.
func scoreAll(m *Model, X [][]float64) []float64 {
	out := make([]float64, len(X))
	parallelChunks(len(X), 4096, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i] = m.Probability(X[i])
		}
	})
	return out
}

// parallelChunks runs f over [0, n) in fixed chunks on GOMAXPROCS goroutines.
func parallelChunks(n, chunk int, f func(lo, hi int)) {
	chunks := (n + chunk - 1) / chunk
	workers := min(runtime.GOMAXPROCS(0), chunks)
	if workers <= 1 {
		for c := range chunks {
			f(c*chunk, min(n, (c+1)*chunk))
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for c := w; c < chunks; c += workers {
				f(c*chunk, min(n, (c+1)*chunk))
			}
		})
	}
	wg.Wait()
}

// newtonPass computes the weighted log loss, its gradient and the upper triangle
// of its Hessian at beta. Rows are summed in fixed chunks whose partial sums are
// added in chunk order, so the result is the same on any number of cores.
type newtonPass struct {
	d          Dataset
	dim        int
	design     func(row, z []float64)
	wPos, wNeg float64
}

const newtonChunk = 8192

func newNewtonPass(d Dataset, dim int, design func(row, z []float64), wPos, wNeg float64) *newtonPass {
	return &newtonPass{d: d, dim: dim, design: design, wPos: wPos, wNeg: wNeg}
}

func tri(a, b, dim int) int { return a*dim - a*(a-1)/2 + (b - a) } // a <= b

func (e *newtonPass) run(beta []float64) (loss float64, grad, hess []float64) {
	n, dim := e.d.Rows(), e.dim
	chunks := (n + newtonChunk - 1) / newtonChunk
	nt := dim * (dim + 1) / 2
	type part struct {
		loss       float64
		grad, hess []float64
	}
	parts := make([]part, chunks)
	parallelChunks(n, newtonChunk, func(lo, hi int) {
		pt := part{grad: make([]float64, dim), hess: make([]float64, nt)}
		z := make([]float64, dim)
		for i := lo; i < hi; i++ {
			e.design(e.d.X[i], z)
			var eta float64
			for a, v := range z {
				eta += beta[a] * v
			}
			y, w := e.d.Y[i], e.wNeg
			if y == 1 {
				w = e.wPos
			}
			p := sigmoid(eta)
			pt.loss += w * (math.Log1p(math.Exp(-math.Abs(eta))) + max(eta, 0) - y*eta)
			r, hw := w*(p-y), w*p*(1-p)
			k := 0
			for a, za := range z {
				pt.grad[a] += r * za
				if za == 0 {
					k += dim - a
					continue
				}
				hz := hw * za
				row := pt.hess[k : k+dim-a]
				for b, zb := range z[a:] {
					row[b] += hz * zb
				}
				k += dim - a
			}
		}
		parts[lo/newtonChunk] = pt
	})
	grad, hess = make([]float64, dim), make([]float64, nt)
	for _, pt := range parts {
		loss += pt.loss
		for a, v := range pt.grad {
			grad[a] += v
		}
		for a, v := range pt.hess {
			hess[a] += v
		}
	}
	return loss, grad, hess
}

// solveSPD solves h x = g for a symmetric positive definite h (row-major, dim²)
// by Cholesky factorisation.
func solveSPD(h, g, x []float64, dim int) error {
	l := make([]float64, dim*dim)
	for i := range dim {
		for j := 0; j <= i; j++ {
			s := h[i*dim+j]
			for k := range j {
				s -= l[i*dim+k] * l[j*dim+k]
			}
			if i == j {
				if !(s > 0) {
					return fmt.Errorf("hessian not positive definite at column %d", i)
				}
				l[i*dim+i] = math.Sqrt(s)
			} else {
				l[i*dim+j] = s / l[j*dim+j]
			}
		}
	}
	y := make([]float64, dim)
	for i := range dim {
		s := g[i]
		for k := range i {
			s -= l[i*dim+k] * y[k]
		}
		y[i] = s / l[i*dim+i]
	}
	for i := dim - 1; i >= 0; i-- {
		s := y[i]
		for k := i + 1; k < dim; k++ {
			s -= l[k*dim+i] * x[k]
		}
		x[i] = s / l[i*dim+i]
	}
	return nil
}
