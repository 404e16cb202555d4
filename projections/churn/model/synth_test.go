package model

import (
	"math"
	"math/rand/v2"

	"github.com/touchstream/touchstream/projections/churn/features"
)

// synthChurn is a churn-like table in the order of features.Names(): skewed
// spend, small counts, unknown (-1) survey answers, contract ends and handsets,
// rare port-outs, a ~3% base rate, and an interaction (a spend drop matters more
// early in tenure).
func synthChurn(n int, seed uint64) Dataset {
	rng := rand.New(rand.NewPCG(seed, 7))
	names := features.Names()
	col := make(map[string]int, len(names))
	for i, nm := range names {
		col[nm] = i
	}
	d := Dataset{Names: names, X: make([][]float64, n), Y: make([]float64, n)}
	pois := func(mean float64) float64 { // small-mean Poisson by inversion
		l, k, p := math.Exp(-mean), 0.0, 1.0
		for {
			p *= rng.Float64()
			if p <= l {
				return k
			}
			k++
		}
	}
	unknownOr := func(pUnknown float64, v float64) float64 {
		if rng.Float64() < pUnknown {
			return -1
		}
		return v
	}
	flat := make([]float64, n*len(names))
	for i := range n {
		x := flat[i*len(names) : (i+1)*len(names) : (i+1)*len(names)]
		set := func(name string, v float64) { x[col[name]] = v }
		base := math.Round(math.Exp(3.5+0.8*rng.NormFloat64())*100) / 100
		drop := 0.0
		if rng.Float64() < 0.3 {
			drop = min(1, rng.Float64()*rng.Float64()*1.5)
		}
		set(features.SpendBaseline30d, base)
		set(features.Spend30d, math.Round(base*(1-drop)*100)/100)
		set(features.SpendDrop, drop)
		set(features.Voice30d, math.Round(math.Exp(5+rng.NormFloat64())))
		set(features.VoiceDrop, max(0, min(1, drop+0.2*rng.NormFloat64())))
		set(features.Data30d, math.Round(math.Exp(7+1.2*rng.NormFloat64())))
		set(features.DataDrop, max(0, min(1, drop/2+0.2*rng.NormFloat64())))
		set(features.DroppedCalls30d, pois(0.8))
		set(features.Incidents30d, pois(0.2))
		open := pois(0.15)
		set(features.ComplaintsOpen, open)
		set(features.Complaints30d, open+pois(0.1))
		overdue := 0.0
		if open > 0 && rng.Float64() < 0.4 {
			overdue = 1
		}
		set(features.ComplaintsOverdue, overdue)
		set(features.CareCalls30d, pois(0.5))
		retention := pois(0.03)
		set(features.RetentionCalls30d, retention)
		csat := unknownOr(0.6, float64(1+rng.IntN(5)))
		nps := unknownOr(0.7, float64(rng.IntN(11)))
		set(features.LastCSAT, csat)
		set(features.LastNPS, nps)
		det := 0.0
		if (nps >= 0 && nps <= 6) || (nps < 0 && csat >= 1 && csat <= 2) {
			det = 1
		}
		set(features.Detractor, det)
		rech := unknownOr(0.3, math.Floor(rng.ExpFloat64()*15))
		pay := unknownOr(0.5, math.Floor(rng.ExpFloat64()*25))
		set(features.DaysSinceRecharge, rech)
		set(features.DaysSincePayment, pay)
		since := rech
		if pay >= 0 && (since < 0 || pay < since) {
			since = pay
		}
		set(features.DaysSinceSpend, since)
		tenure := math.Floor(rng.ExpFloat64() * 30)
		set(features.TenureMonths, tenure)
		toEnd := unknownOr(0.5, float64(rng.IntN(25)))
		set(features.MonthsToContractEnd, toEnd)
		set(features.HandsetAgeMonths, unknownOr(0.2, float64(rng.IntN(60))))
		down := pois(0.05)
		set(features.Downgrades90d, down)
		port := 0.0
		if rng.Float64() < 0.004 {
			port = 1
		}
		set(features.PortOutRequested, port)
		set(features.DaysSincePortOut, map[bool]float64{true: float64(rng.IntN(20)), false: -1}[port == 1])

		z := -4.3 + 1.2*drop + 0.5*overdue + 1.3*retention + 0.6*det + 3.5*port +
			0.4*down - 0.015*tenure + 0.03*max(0, since-30)
		if tenure < 6 {
			z += 1.2 * drop
		}
		if toEnd >= 0 && toEnd <= 1 {
			z += 0.7
		}
		if csat < 0 && nps < 0 {
			z += 0.2
		}
		d.X[i] = x
		if rng.Float64() < sigmoid(z) {
			d.Y[i] = 1
		}
	}
	return d
}

// subset is the rows of d from lo to hi.
func subset(d Dataset, lo, hi int) Dataset {
	return Dataset{Names: d.Names, X: d.X[lo:hi], Y: d.Y[lo:hi]}
}

func scores(m *Model, d Dataset) []float64 {
	out := make([]float64, d.Rows())
	for i, x := range d.X {
		out[i] = m.Probability(x)
	}
	return out
}
