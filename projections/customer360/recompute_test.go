package customer360_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
)

// TestRecomputeCustomerRestoresTheProfile damages a customer's profile and
// recomputes it from the log through the timeline index: the profile, its phone search
// hash and its columns equal the fold's, retractions included; other customers are
// untouched.
func TestRecomputeCustomerRestoresTheProfile(t *testing.T) {
	f := newFixture(t)
	f.publish("C1", register("+8613800005555"))
	f.publish("C1", events.StoreVisited{StoreID: "S1", Purpose: "inquiry", DurationSeconds: 120})
	f.publish("C1", events.SurveyAnswered{SurveyID: "S1", Kind: "nps", Score: 9})
	bad := f.publish("C1", events.SurveyAnswered{SurveyID: "S2", Kind: "nps", Score: 1})
	f.publish("C1", events.EventRetracted{Target: bad.Ref(), Reason: "wrong customer"})
	f.publish("C1", events.ComplaintOpened{ComplaintID: "K1", Category: "network", Severity: "high", PromisedBy: f.at.Add(48 * 3600e9)})
	f.publish("C2", register("+8613800006666"))
	f.fold(7)
	snapshot := subject().Snapshot
	want, err := snapshot(t.Context(), f.env.Pool, f.target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Pool.Exec(t.Context(), `UPDATE customer360_v1.profiles SET tier = 'broken', events_total = 0, phone_hash = NULL,
		doc = '{"customer_id":"C1"}' WHERE customer_id = 'C1'`); err != nil {
		t.Fatal(err)
	}
	p := newProjection(t, f.target, f.keys)
	rc := &projections.Recomputer{Pool: f.env.Pool, History: f.env.History, Layout: f.env.Layout}
	res, err := rc.Recompute(t.Context(), "C1", p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Events != 6 {
		t.Errorf("recompute result %+v, want 6 events of C1", res)
	}
	got, err := snapshot(t.Context(), f.env.Pool, f.target)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after recompute (-folded +recomputed):\n%s", diff)
	}
}
