package churn

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn/features"
)

// Scorer scores feature vectors under one version of a rule scorer or a trained model.
// Version is the name the log activates it by ("rules:<version>" or "sha256:<hex>").
type Scorer interface {
	Version() string
	Threshold() float64
	Score(v features.Vector) features.Score
}

// RulesName is the name a rule scorer version is activated by.
func RulesName(version string) string { return "rules:" + version }

// rules adapts the rule scorer: its scores carry the "rules:" name.
type rules struct{ s *features.Scorer }

func (r rules) Version() string    { return RulesName(r.s.Version()) }
func (r rules) Threshold() float64 { return r.s.Threshold() }
func (r rules) Score(v features.Vector) features.Score {
	s := r.s.Score(v)
	s.Version = r.Version()
	return s
}

// scorers resolves the names activations carry: the configured rule version, or a
// trained model from the model store, each decoded once per process.
type scorers struct {
	rules Scorer
	mu    sync.Mutex
	cache map[string]Scorer
}

func newScorers(r *features.Scorer) *scorers {
	return &scorers{rules: rules{r}, cache: map[string]Scorer{}}
}

// errUnknownScorer: the log activates a scorer this process cannot load. Permanent for
// the activation event (it is parked; a rebuild after loading the model fixes it).
type errUnknownScorer struct{ name, why string }

func (e *errUnknownScorer) Error() string {
	return fmt.Sprintf("churn scorer %s: %s", e.name, e.why)
}

func (s *scorers) get(ctx context.Context, q projections.Querier, name string) (Scorer, error) {
	switch {
	case name == s.rules.Version():
		return s.rules, nil
	case strings.HasPrefix(name, "rules:"):
		return nil, &errUnknownScorer{name, "not the rule version configured (" + s.rules.Version() + ")"}
	}
	s.mu.Lock()
	sc, ok := s.cache[name]
	s.mu.Unlock()
	if ok {
		return sc, nil
	}
	m, err := LoadModel(ctx, q, name)
	if err != nil {
		return nil, err
	}
	if sc, err = Trained(m); err != nil {
		return nil, &errUnknownScorer{name, err.Error()}
	}
	s.mu.Lock()
	s.cache[name] = sc
	s.mu.Unlock()
	return sc, nil
}

// activation is a scorer activation met in a partition.
type activation struct {
	seq       uint64
	id        string
	model     string
	effective time.Time
}

// books answers, per partition, the scorer an event at a stream sequence and event
// time is scored by: the last activation met before it in its partition whose
// effective time is at or before the event's time; before any, the default rules.
type books struct {
	acts map[int][]activation // by seq
}

func (bk *books) name(partition int, seq uint64, at time.Time, def string) string {
	acts := bk.acts[partition]
	k := sort.Search(len(acts), func(i int) bool { return acts[i].seq >= seq })
	best := -1
	for i := range k {
		if !acts[i].effective.After(at) {
			best = i
		}
	}
	if best < 0 {
		return def
	}
	return acts[best].model
}

func (p *Projection) loadBooks(ctx context.Context, tx pgx.Tx, parts map[int]bool) (*books, error) {
	bk := &books{acts: map[int][]activation{}}
	ps := make([]int32, 0, len(parts))
	for part := range parts {
		ps = append(ps, int32(part))
	}
	rows, err := tx.Query(ctx, `SELECT partition, seq, activation_id, model, effective_at FROM `+p.q+
		`.activations WHERE partition = ANY($1) ORDER BY partition, seq`, ps)
	if err != nil {
		return nil, fmt.Errorf("churn: load activations: %w", err)
	}
	var part int32
	var seq int64
	var a activation
	_, err = pgx.ForEachRow(rows, []any{&part, &seq, &a.id, &a.model, &a.effective}, func() error {
		a.seq = uint64(seq)
		bk.acts[int(part)] = append(bk.acts[int(part)], a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("churn: load activations: %w", err)
	}
	return bk, nil
}
