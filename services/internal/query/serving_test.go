package query_test

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/query"
)

// TestFollowsServingSwitch: a blue/green rebuild of customer 360 switches the API to
// the new version without a restart, and the new version answers the same profile.
func TestFollowsServingSwitch(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if _, err := projections.EnsureServing(ctx, f.pool, map[string]string{customer360.Name: c360Target, timeline.Name: timelineTarget}); err != nil {
		t.Fatal(err)
	}
	f.serve(t, query.Config{Tiers: valuetier.Default().Names(), FollowServing: true}, query.Deps{})
	profile := func() (map[string]any, string) {
		r := f.get(t, "/v1/customers/"+alice, nil)
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", alice, r.status, r.body)
		}
		var body map[string]any
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		fresh, _ := body["freshness"].(map[string]any)
		delete(body, "freshness")
		target, _ := fresh["target"].(string)
		return body, target
	}
	before, target := profile()
	if target != c360Target {
		t.Fatalf("answered from %q before the rebuild, want %s", target, c360Target)
	}

	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	res, err := projections.Rebuild(ctx, projections.Deps{
		Pool: f.pool, JS: f.js, Layout: f.layout, Catalog: cat, Log: slog.New(slog.DiscardHandler),
		History: &projections.LogHistory{Index: &timeline.Index{Target: timelineTarget, Layout: f.layout}, JS: f.js,
			Decoder: projections.NewDecoder(f.layout, cat)},
	}, projections.RebuildSpec{
		Projection: customer360.Name,
		New: func(target string) (projections.Projection, error) {
			return customer360.New(customer360.Options{Target: target, Tiers: valuetier.Default(), Keys: f.keys, PhoneKey: f.phoneKey})
		},
		Switch: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Target != "customer360_v2" || !res.Switched {
		t.Fatalf("rebuild: %+v", res)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, target := profile()
		if target == res.Target {
			if diff := cmp.Diff(before, after); diff != "" {
				t.Fatalf("the rebuilt version answers differently (-v1 +v2):\n%s", diff)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still answering from %q 10s after the switch", target)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
