package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/churn/model"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/simulate"
	"github.com/touchstream/touchstream/testkit"
)

// simulateHistory publishes days of the simulator's history for a population
// straight to the log (with a clock tick to every partition at each local midnight),
// as the gateway would have stored it, and returns how many events it published.
func simulateHistory(t *testing.T, c *cliEnv, customers, days int, start time.Time) int {
	t.Helper()
	params, err := simulate.LoadParams(filepath.Join(c.deployDir, "simulator.json"))
	if err != nil {
		t.Fatal(err)
	}
	chs, err := gateway.LoadChannels(filepath.Join(c.deployDir, "channels.json"))
	if err != nil {
		t.Fatal(err)
	}
	var channels []simulate.Channel
	for _, ch := range chs {
		channels = append(channels, simulate.Channel{Name: ch.Name, Source: ch.Source, AllowedTypes: ch.AllowedTypes, MaxAge: time.Duration(ch.MaxAge),
			APIKey: params.DevAPIKeys[ch.Name]})
	}
	end := start.AddDate(0, 0, days)
	g, err := simulate.NewGenerator(simulate.GeneratorConfig{Params: params, Channels: channels, Seed: 11, Customers: customers, Start: start, End: end})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := events.NewPublisher(t.Context(), c.nc, events.WithLayout(c.def.Layout), events.WithKeys(testkit.NewKeys()),
		events.WithLimits(events.Limits{MaxSize: 64 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	n, err := simulate.Log(t.Context(), g, start, end, c.def.Layout.Partitions, 2000, func(ctx context.Context, evs []*events.Event) error {
		for i, r := range pub.PublishBatch(ctx, evs) {
			if r.Err != nil {
				return fmt.Errorf("publish %s: %w", evs[i].Type, r.Err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestChurnTrainedOnTheSimulator: on the simulator's population (parameters frozen in
// deploy/simulator.json), folded from the log, models trained on one period and
// evaluated on a later one find churners: a top-decile lift of at least 2, and more
// than the rule scorer finds.
func TestChurnTrainedOnTheSimulator(t *testing.T) {
	c := newCLIEnv(t)
	cst := time.FixedZone("CST", 8*3600)
	t0 := time.Now()
	n := simulateHistory(t, c, 1500, 240, time.Date(2026, 1, 1, 0, 0, 0, 0, cst))
	t.Logf("published %d events in %v", n, time.Since(t0))
	t0 = time.Now()
	b, err := os.ReadFile(filepath.Join(c.deployDir, "churn-rules.json"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := features.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := churn.New(churn.Options{Target: churnTarget, Rules: rules, Tiers: c.tiers})
	if err != nil {
		t.Fatal(err)
	}
	r, err := projections.NewRunner(projections.Config{Group: "churn-test", BatchSize: 2000}, projections.Deps{Pool: c.pool, JS: c.js, Layout: c.def.Layout,
		Catalog: c.cat, Log: testkit.Logger(t), History: &projections.LogHistory{Index: &timeline.Index{Target: timelineTarget, Layout: c.def.Layout},
			JS: c.js, Decoder: projections.NewDecoder(c.def.Layout, c.cat)}}, timeline.New(timelineTarget), cp)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("folded in %v", time.Since(t0))

	out, err := c.run(t, "churn", "train", "--from", "2026-02", "--to", "2026-04", "--valid-from", "2026-05", "--valid-to", "2026-06", "--json")
	if err != nil {
		t.Fatalf("churn train: %v\n%s", err, out)
	}
	var rep churnReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	valid := map[string]model.Metrics{}
	for _, m := range rep.Metrics {
		t.Logf("%-16s rows %6d positives %4d AUC %.3f lift %.2f precision %.3f recall %.3f alerts/1000 %.1f", m.Name, m.N, m.Positives, m.AUC,
			m.TopDecileLift, m.Precision, m.Recall, m.AlertsPer1000)
		if name, ok := strings.CutSuffix(m.Name, " (valid)"); ok {
			valid[name] = m.Metrics
		}
	}
	if len(rep.Models) != 2 || valid["logistic"].Positives < 20 {
		t.Fatalf("trained %v; validation %+v: too few churners to judge", rep.Models, valid)
	}
	best := max(valid["logistic"].AUC, valid["gbt"].AUC)
	for _, kind := range []string{"logistic", "gbt"} {
		if valid[kind].TopDecileLift < 2 {
			t.Errorf("%s: top-decile lift %.2f on the later period, want at least 2", kind, valid[kind].TopDecileLift)
		}
	}
	if best <= valid["rules"].AUC {
		t.Errorf("the trained models (AUC %.3f) do not beat the rule scorer (AUC %.3f)", best, valid["rules"].AUC)
	}

	// evaluate reads the same period with the stored models and agrees with train.
	out, err = c.run(t, "churn", "evaluate", "--from", "2026-05", "--to", "2026-06", "--json")
	if err != nil {
		t.Fatalf("churn evaluate: %v\n%s", err, out)
	}
	var ev churnReport
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Metrics) != 3 || ev.Metrics[0].AUC != valid["rules"].AUC {
		t.Fatalf("evaluate: %+v, want the rules and two models, the rules as in train (%v)", ev.Metrics, valid["rules"].AUC)
	}
}
