package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"sync"
)

// GBTOptions configure TrainGBT. Zero fields take the defaults.
type GBTOptions struct {
	Trees          int     `json:"trees"`            // boosting rounds; default 150
	Depth          int     `json:"depth"`            // maximum tree depth; default 3
	LearningRate   float64 `json:"learning_rate"`    // shrinkage; default 0.1
	MinChildWeight float64 `json:"min_child_weight"` // least hessian sum per child; default 1
	MinLeafRows    int     `json:"min_leaf_rows"`    // least rows per child; default 20
	Lambda         float64 `json:"lambda"`           // L2 on leaf values; default 1
	Subsample      float64 `json:"subsample"`        // share of rows drawn per tree, (0, 1]; default 0.8
	MaxBins        int     `json:"max_bins"`         // histogram bins per feature, 2..256; default 255
	Seed           uint64  `json:"seed"`             // seeds row subsampling and the validation split
	// ValidationShare holds out that share of rows (by a seeded hash of the row
	// index) to measure and, with EarlyStoppingRounds (default 20), stop early:
	// training stops when the held-out log loss has not improved for that many
	// trees and keeps the trees up to its best. 0 (default) holds nothing out.
	ValidationShare     float64 `json:"validation_share"`
	EarlyStoppingRounds int     `json:"early_stopping_rounds"`
	AlertRate           float64 `json:"alert_rate"` // default 0.05
}

// GBT defaults.
const (
	DefaultTrees        = 150
	DefaultDepth        = 3
	DefaultLearningRate = 0.1
)

func (o GBTOptions) withDefaults() GBTOptions {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defInt(&o.Trees, DefaultTrees)
	defInt(&o.Depth, DefaultDepth)
	def(&o.LearningRate, DefaultLearningRate)
	def(&o.MinChildWeight, 1)
	defInt(&o.MinLeafRows, 20)
	def(&o.Lambda, 1)
	def(&o.Subsample, 0.8)
	defInt(&o.MaxBins, 255)
	if o.ValidationShare > 0 {
		defInt(&o.EarlyStoppingRounds, 20)
	}
	def(&o.AlertRate, DefaultAlertRate)
	return o
}

// Validate names each out-of-range option (after defaults).
func (o GBTOptions) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.Trees < 1 {
		bad("trees: %d must be at least 1", o.Trees)
	}
	if o.Depth < 1 || o.Depth > 12 {
		bad("depth: %d must be within 1..12", o.Depth)
	}
	if !(o.LearningRate > 0 && o.LearningRate <= 1) {
		bad("learning_rate: %v must be within (0, 1]", o.LearningRate)
	}
	if !(o.MinChildWeight >= 0) || !finite(o.MinChildWeight) {
		bad("min_child_weight: %v must be >= 0", o.MinChildWeight)
	}
	if o.MinLeafRows < 1 {
		bad("min_leaf_rows: %d must be at least 1", o.MinLeafRows)
	}
	if !(o.Lambda >= 0) || !finite(o.Lambda) {
		bad("lambda: %v must be >= 0", o.Lambda)
	}
	if !(o.Subsample > 0 && o.Subsample <= 1) {
		bad("subsample: %v must be within (0, 1]", o.Subsample)
	}
	if o.MaxBins < 2 || o.MaxBins > 256 {
		bad("max_bins: %d must be within 2..256", o.MaxBins)
	}
	if !(o.ValidationShare >= 0 && o.ValidationShare < 1) {
		bad("validation_share: %v must be within [0, 1)", o.ValidationShare)
	}
	if o.EarlyStoppingRounds < 0 {
		bad("early_stopping_rounds: %d must be >= 0", o.EarlyStoppingRounds)
	}
	errs = append(errs, checkAlertRate(o.AlertRate)...)
	return errors.Join(errs...)
}

// GBTParams are the trees of a boosted model: the logit is Init plus one leaf
// value per tree.
type GBTParams struct {
	Init  float64 `json:"init"` // log odds of the training base rate
	Trees []Tree  `json:"trees"`
}

// Tree is a binary tree in breadth-first order; Nodes[0] is the root and
// children always come after their parent.
type Tree struct {
	Nodes []Node `json:"nodes"`
}

// Node is a split (Feature >= 0: left when value <= Threshold, else right) or a
// leaf (Feature -1). Value is a leaf's addition to the logit; at a split, the
// expected value of its subtree (the Cover-weighted mean of its leaves). Cover
// is the number of sampled training rows that reached the node.
type Node struct {
	Feature   int     `json:"feature"`
	Threshold float64 `json:"threshold,omitempty"`
	Left      int     `json:"left,omitempty"`
	Right     int     `json:"right,omitempty"`
	Value     float64 `json:"value"`
	Cover     float64 `json:"cover"`
}

func (p *GBTParams) validate(nf int) []error {
	var errs []error
	checkFinite(&errs, "gbt.init", []float64{p.Init})
	if len(p.Trees) == 0 {
		errs = append(errs, errors.New("gbt.trees: at least one required"))
	}
	for t, tr := range p.Trees {
		if len(tr.Nodes) == 0 {
			errs = append(errs, fmt.Errorf("gbt.trees[%d].nodes: at least one required", t))
		}
		for i, nd := range tr.Nodes {
			at := fmt.Sprintf("gbt.trees[%d].nodes[%d]", t, i)
			if nd.Feature < -1 || nd.Feature >= nf {
				errs = append(errs, fmt.Errorf("%s.feature: %d must be -1 (leaf) or a feature index below %d", at, nd.Feature, nf))
			}
			if nd.Feature >= 0 {
				for _, c := range []struct {
					name string
					v    int
				}{{"left", nd.Left}, {"right", nd.Right}} {
					if c.v <= i || c.v >= len(tr.Nodes) {
						errs = append(errs, fmt.Errorf("%s.%s: %d must be a later node (%d..%d)", at, c.name, c.v, i+1, len(tr.Nodes)-1))
					}
				}
			}
			checkFinite(&errs, at+".threshold,value,cover", []float64{nd.Threshold, nd.Value, nd.Cover})
		}
	}
	return errs
}

func (p *GBTParams) logit(x []float64) float64 {
	z := p.Init
	for _, t := range p.Trees {
		nd := t.Nodes
		i := 0
		for nd[i].Feature >= 0 {
			if x[nd[i].Feature] <= nd[i].Threshold {
				i = nd[i].Left
			} else {
				i = nd[i].Right
			}
		}
		z += nd[i].Value
	}
	return z
}

// explain credits, along each tree's path, the change in expected value at each
// split to the split's feature (Saabas); the bias is Init plus the roots' values.
func (p *GBTParams) explain(x, contrib []float64) float64 {
	bias := p.Init
	for _, t := range p.Trees {
		nd := t.Nodes
		bias += nd[0].Value
		i := 0
		for nd[i].Feature >= 0 {
			next := nd[i].Right
			if x[nd[i].Feature] <= nd[i].Threshold {
				next = nd[i].Left
			}
			contrib[nd[i].Feature] += nd[next].Value - nd[i].Value
			i = next
		}
	}
	return bias
}

// TrainGBT fits gradient-boosted trees on the logistic loss: per round, Newton
// leaf values -G/(H+Lambda) times LearningRate, splits chosen on quantile
// histograms computed once, rows subsampled with a PRNG seeded by Seed.
// Histograms are built on every core, one feature per goroutine at a time, so
// the model is bit-identical whatever the core count.
func TrainGBT(d Dataset, o GBTOptions) (*Model, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("train gbt: options: %w", err)
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("train gbt: %w", err)
	}
	n, nf := d.Rows(), len(d.Names)
	var train []int32
	var valid []int
	cut := uint64(o.ValidationShare * (1 << 63) * 2)
	for i := range n {
		if o.ValidationShare > 0 && splitmix(o.Seed^0x76616c6964^uint64(i)*0x9e3779b97f4a7c15) < cut {
			valid = append(valid, i)
		} else {
			train = append(train, int32(i))
		}
	}
	var pos int
	for _, r := range train {
		if d.Y[r] == 1 {
			pos++
		}
	}
	if pos == 0 || pos == len(train) {
		return nil, fmt.Errorf("train gbt: training split has %d positives of %d rows, need both classes", pos, len(train))
	}

	g := &grower{o: o, nf: nf, g: make([]float64, n), h: make([]float64, n)}
	g.uppers = make([][]float64, nf)
	g.bins = make([][]uint8, nf)
	g.nbins = make([]int, nf)
	parallelFeatures(nf, true, func(f int) {
		g.uppers[f] = binUppers(d, train, f, o.MaxBins)
		g.nbins[f] = len(g.uppers[f]) + 1
		col := make([]uint8, n)
		for i, row := range d.X {
			col[i] = uint8(sort.SearchFloat64s(g.uppers[f], row[f]))
		}
		g.bins[f] = col
	})
	g.gbuf, g.hbuf = make([]float64, len(train)), make([]float64, len(train))
	g.scratch = make([]int32, len(train))

	init := math.Log(float64(pos) / float64(len(train)-pos))
	F := make([]float64, n)
	for i := range F {
		F[i] = init
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6368726e))
	sampleCut := uint64(o.Subsample * (1 << 63) * 2)
	rows := make([]int32, 0, len(train))
	var trees []Tree
	best, bestLoss := -1, math.Inf(1)
	for t := range o.Trees {
		parallelChunks(len(train), 8192, func(lo, hi int) {
			for _, r := range train[lo:hi] {
				p := sigmoid(F[r])
				g.g[r], g.h[r] = p-d.Y[r], p*(1-p)
			}
		})
		rows = rows[:0]
		for _, r := range train {
			if o.Subsample >= 1 || rng.Uint64() < sampleCut {
				rows = append(rows, r)
			}
		}
		tree, splitBins := g.grow(rows)
		trees = append(trees, tree)
		parallelChunks(n, 8192, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				nd := tree.Nodes
				i := 0
				for nd[i].Feature >= 0 {
					if g.bins[nd[i].Feature][r] <= splitBins[i] {
						i = nd[i].Left
					} else {
						i = nd[i].Right
					}
				}
				F[r] += nd[i].Value
			}
		})
		if len(valid) == 0 {
			best = t
			continue
		}
		var loss float64
		for _, r := range valid {
			z := F[r]
			loss += math.Log1p(math.Exp(-math.Abs(z))) + max(z, 0) - d.Y[r]*z
		}
		if loss < bestLoss {
			best, bestLoss = t, loss
		}
		if o.EarlyStoppingRounds > 0 && t-best >= o.EarlyStoppingRounds {
			break
		}
	}
	m := &Model{Kind: KindGBT, Features: append([]string(nil), d.Names...), GBT: &GBTParams{Init: init, Trees: trees[:best+1]}}
	m.Training = Training{Rows: n, Positives: d.Positives(), Iterations: best + 1, GBT: &o}
	// F sums Init and the leaves in tree order, as Predict does, and the binned
	// splits route every row as the thresholds do: it is the model's logit
	// unless early stopping dropped trees.
	if best+1 < len(trees) {
		F = nil
	}
	finish(m, d, valid, o.AlertRate, F)
	return m, nil
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// binUppers are a feature's bin upper bounds (ascending): bin k holds values in
// (uppers[k-1], uppers[k]], the last bin everything above. With at most maxBins
// distinct values in the sample each has its bin; otherwise the bounds are
// quantiles. Unknown (-1), when present below the known values, always has its
// own bin. The sample is every k-th training row, at most 200,000.
func binUppers(d Dataset, train []int32, f, maxBins int) []float64 {
	step := max(1, len(train)/200_000)
	vals := make([]float64, 0, len(train)/step+1)
	for i := 0; i < len(train); i += step {
		vals = append(vals, d.X[train[i]][f])
	}
	slices.Sort(vals)
	distinct := slices.Compact(slices.Clone(vals))
	if len(distinct) <= maxBins {
		return distinct[:len(distinct)-1]
	}
	top := distinct[len(distinct)-1]
	var uppers []float64
	if distinct[0] == Unknown {
		uppers = append(uppers, Unknown)
	}
	for q := 1; q < maxBins-1; q++ {
		v := vals[q*len(vals)/(maxBins-1)]
		if v < top && (len(uppers) == 0 || v > uppers[len(uppers)-1]) {
			uppers = append(uppers, v)
		}
	}
	return uppers
}

// parallelFeatures runs f for each feature, spread over GOMAXPROCS goroutines
// when par; each feature is handled by exactly one goroutine.
func parallelFeatures(nf int, par bool, f func(int)) {
	workers := min(runtime.GOMAXPROCS(0), nf)
	if !par || workers <= 1 {
		for j := range nf {
			f(j)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := w; j < nf; j += workers {
				f(j)
			}
		})
	}
	wg.Wait()
}

type histBin struct{ g, h, n float64 }

// grower grows one tree on binned features and the current gradients.
type grower struct {
	o          GBTOptions
	nf         int
	uppers     [][]float64
	bins       [][]uint8
	nbins      []int
	g, h       []float64
	gbuf, hbuf []float64
	scratch    []int32
}

type growNode struct {
	rows    []int32
	hist    []histBin // nil when the node will not split
	g, h, n float64
	depth   int
	index   int
}

// parallelRows is the node size from which histograms use every core.
const parallelRows = 8192

func (gr *grower) build(rows []int32) []histBin {
	hist := make([]histBin, gr.nf*256)
	gs, hs := gr.gbuf[:len(rows)], gr.hbuf[:len(rows)]
	for i, r := range rows {
		gs[i], hs[i] = gr.g[r], gr.h[r]
	}
	parallelFeatures(gr.nf, len(rows) >= parallelRows, func(f int) {
		// Four partial histograms over rows i%4 break the chains of updates to
		// one bin (most rows share a few values); they are added in a fixed
		// order, so the sums do not depend on the core count.
		var part [4][256]histBin
		col := gr.bins[f]
		i := 0
		for ; i+4 <= len(rows); i += 4 {
			b0, b1, b2, b3 := &part[0][col[rows[i]]], &part[1][col[rows[i+1]]], &part[2][col[rows[i+2]]], &part[3][col[rows[i+3]]]
			b0.g += gs[i]
			b0.h += hs[i]
			b0.n++
			b1.g += gs[i+1]
			b1.h += hs[i+1]
			b1.n++
			b2.g += gs[i+2]
			b2.h += hs[i+2]
			b2.n++
			b3.g += gs[i+3]
			b3.h += hs[i+3]
			b3.n++
		}
		for ; i < len(rows); i++ {
			b := &part[0][col[rows[i]]]
			b.g += gs[i]
			b.h += hs[i]
			b.n++
		}
		hb := hist[f*256 : f*256+gr.nbins[f]]
		for b := range hb {
			p0, p1, p2, p3 := part[0][b], part[1][b], part[2][b], part[3][b]
			hb[b] = histBin{g: (p0.g + p1.g) + (p2.g + p3.g), h: (p0.h + p1.h) + (p2.h + p3.h), n: (p0.n + p1.n) + (p2.n + p3.n)}
		}
	})
	return hist
}

func (gr *grower) splittable(depth int, h, n float64) bool {
	o := gr.o
	return depth < o.Depth && n >= 2*float64(o.MinLeafRows) && h >= 2*o.MinChildWeight
}

type split struct {
	feature, bin int
	gain         float64
	gl, hl, nl   float64
}

func (gr *grower) best(nd *growNode) (split, bool) {
	o := gr.o
	lam := o.Lambda
	parent := nd.g * nd.g / (nd.h + lam)
	bst := split{gain: 1e-12}
	found := false
	for f := range gr.nf {
		hb := nd.hist[f*256 : f*256+gr.nbins[f]]
		var gl, hl, nl float64
		for b := 0; b < len(hb)-1; b++ {
			gl += hb[b].g
			hl += hb[b].h
			nl += hb[b].n
			gr_, hr, nr := nd.g-gl, nd.h-hl, nd.n-nl
			if nl < float64(o.MinLeafRows) || hl < o.MinChildWeight {
				continue
			}
			if nr < float64(o.MinLeafRows) || hr < o.MinChildWeight {
				break
			}
			gain := gl*gl/(hl+lam) + gr_*gr_/(hr+lam) - parent
			if gain > bst.gain {
				bst = split{feature: f, bin: b, gain: gain, gl: gl, hl: hl, nl: nl}
				found = true
			}
		}
	}
	return bst, found
}

// grow builds a tree breadth first and returns it with each split's bin.
func (gr *grower) grow(rows []int32) (Tree, []uint8) {
	o := gr.o
	nodes := []Node{{Feature: -1}}
	splitBins := []uint8{0}
	root := &growNode{rows: rows, index: 0}
	for _, r := range rows {
		root.g += gr.g[r]
		root.h += gr.h[r]
	}
	root.n = float64(len(rows))
	if gr.splittable(0, root.h, root.n) {
		root.hist = gr.build(rows)
		// Sum the node from one feature's histogram, as the splits will.
		root.g, root.h = 0, 0
		for _, b := range root.hist[:256] {
			root.g += b.g
			root.h += b.h
		}
	}
	queue := []*growNode{root}
	for len(queue) > 0 {
		nd := queue[0]
		queue = queue[1:]
		var s split
		ok := false
		if nd.hist != nil {
			s, ok = gr.best(nd)
		}
		if !ok {
			nodes[nd.index] = Node{Feature: -1, Value: -nd.g / (nd.h + o.Lambda) * o.LearningRate, Cover: nd.n}
			continue
		}
		// Stable partition: left rows first, both in ascending order.
		col := gr.bins[s.feature]
		sb := uint8(s.bin)
		nl, nr := 0, 0
		for _, r := range nd.rows {
			if col[r] <= sb {
				nd.rows[nl] = r
				nl++
			} else {
				gr.scratch[nr] = r
				nr++
			}
		}
		copy(nd.rows[nl:], gr.scratch[:nr])
		left := &growNode{rows: nd.rows[:nl], g: s.gl, h: s.hl, n: s.nl, depth: nd.depth + 1, index: len(nodes)}
		right := &growNode{rows: nd.rows[nl:], g: nd.g - s.gl, h: nd.h - s.hl, n: nd.n - s.nl, depth: nd.depth + 1, index: len(nodes) + 1}
		nodes[nd.index] = Node{Feature: s.feature, Threshold: gr.uppers[s.feature][s.bin], Left: left.index, Right: right.index, Cover: nd.n}
		splitBins[nd.index] = sb
		nodes = append(nodes, Node{Feature: -1}, Node{Feature: -1})
		splitBins = append(splitBins, 0, 0)
		ls, rs := gr.splittable(left.depth, left.h, left.n), gr.splittable(right.depth, right.h, right.n)
		if ls || rs {
			small, large := left, right
			if right.n < left.n {
				small, large = right, left
			}
			small.hist = gr.build(small.rows)
			for i := range nd.hist { // the larger child is the parent minus the smaller
				nd.hist[i].g -= small.hist[i].g
				nd.hist[i].h -= small.hist[i].h
				nd.hist[i].n -= small.hist[i].n
			}
			large.hist = nd.hist
			if !ls {
				left.hist = nil
			}
			if !rs {
				right.hist = nil
			}
		}
		nd.hist = nil
		queue = append(queue, left, right)
	}
	// Expected values, children before parents.
	for i := len(nodes) - 1; i >= 0; i-- {
		if nd := &nodes[i]; nd.Feature >= 0 {
			l, r := nodes[nd.Left], nodes[nd.Right]
			nd.Value = (l.Cover*l.Value + r.Cover*r.Value) / (l.Cover + r.Cover)
		}
	}
	return Tree{Nodes: nodes}, splitBins
}
