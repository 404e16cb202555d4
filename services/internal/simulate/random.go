package simulate

import (
	"math"
	"math/rand/v2"
	"slices"
)

// choice is a weighted choice among names, compiled once from a weight map with its
// keys sorted, so that the same random numbers always pick the same names.
type choice struct {
	names []string
	cum   []float64
}

func newChoice(m map[string]float64) choice {
	names := slices.Sorted(mapKeys(m))
	c := choice{names: make([]string, 0, len(names)), cum: make([]float64, 0, len(names))}
	sum := 0.0
	for _, n := range names {
		if w := m[n]; w > 0 {
			sum += w
			c.names = append(c.names, n)
			c.cum = append(c.cum, sum)
		}
	}
	for i := range c.cum {
		c.cum[i] /= sum
	}
	return c
}

func newChoiceSlice(ws []float64) choice {
	c := choice{cum: make([]float64, len(ws)), names: make([]string, len(ws))}
	sum := 0.0
	for _, w := range ws {
		sum += w
	}
	acc := 0.0
	for i, w := range ws {
		acc += w
		c.cum[i] = acc / sum
	}
	return c
}

// index draws the index of a name.
func (c choice) index(r *rand.Rand) int {
	u := r.Float64()
	i, _ := slices.BinarySearch(c.cum, u)
	return min(i, len(c.cum)-1)
}

// pick draws a name.
func (c choice) pick(r *rand.Rand) string { return c.names[c.index(r)] }

// lognormal draws from the distribution, clipped to [Min, Max].
func (l Lognormal) draw(r *rand.Rand) float64 {
	v := l.Median * math.Exp(l.Sigma*r.NormFloat64())
	return clamp(v, l.Min, l.Max)
}

// meanOneNoise is a lognormal factor of mean one.
func meanOneNoise(r *rand.Rand, sigma float64) float64 {
	if sigma == 0 {
		return 1
	}
	return math.Exp(sigma*r.NormFloat64() - sigma*sigma/2)
}

// poisson draws a Poisson count of mean lambda.
func poisson(r *rand.Rand, lambda float64) int {
	switch {
	case lambda <= 0:
		return 0
	case lambda > 30:
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// bernoulli is true with probability p.
func bernoulli(r *rand.Rand, p float64) bool { return r.Float64() < p }

// between draws uniformly in [lo, hi].
func between(r *rand.Rand, span [2]float64) float64 { return span[0] + r.Float64()*(span[1]-span[0]) }

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// splitmix scrambles a 64-bit value (SplitMix64), to derive independent seeds.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// stream returns an independent PCG stream for a seed and a stream number.
func stream(seed, n uint64) *rand.Rand {
	return rand.New(rand.NewPCG(splitmix(seed), splitmix(n^0x5bd1e9955bd1e995)))
}

// Stream numbers of the generator's non-customer randomness; customers use their
// index (below 1<<40).
const (
	streamPopulation = 1<<62 + iota
	streamAcquisition
	streamIncidents
)
