package bench

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
)

// encode is the structured-mode encoding of events, what a door receives.
func encode(evs []*events.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = string(e.AppendJSON(nil))
	}
	return out
}

func historyOf(seed uint64, n, customers int) []*events.Event {
	h := newHistory(seed, n, customers)
	var out []*events.Event
	for e := h.next(); e != nil; e = h.next() {
		out = append(out, e)
	}
	return out
}

func TestWorkloadReproducible(t *testing.T) {
	sets := []struct {
		name string
		make func(seed uint64) []*events.Event
	}{
		{"recharge", func(s uint64) []*events.Event { return rechargeSet(s, 500, 100) }},
		{"personal", func(s uint64) []*events.Event { return personalSet(s, 500, 100) }},
		{"plain", func(s uint64) []*events.Event { return plainSet(s, 500, 100) }},
		{"history", func(s uint64) []*events.Event { return historyOf(s, 1000, 300) }},
	}
	for _, set := range sets {
		t.Run(set.name, func(t *testing.T) {
			a, b := encode(set.make(42)), encode(set.make(42))
			if diff := cmp.Diff(a, b); diff != "" {
				t.Errorf("same seed, different events (-first +second):\n%s", diff)
			}
			if c := encode(set.make(43)); cmp.Equal(a, c) {
				t.Error("seeds 42 and 43 gave the same events")
			}
		})
	}
}

// TestWorkloadValid checks that every generated event passes the doors' validation
// at the pinned clock, so that the projector's preload (prepared without validation)
// parks nothing and the validated runs refuse nothing.
func TestWorkloadValid(t *testing.T) {
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	v := events.NewValidator(cat, 64, events.DefaultLimits(), pinnedNow)
	var all []*events.Event
	all = append(all, rechargeSet(7, 200, 50)...)
	all = append(all, personalSet(7, 2000, 500)...)
	all = append(all, plainSet(7, 2000, 500)...)
	all = append(all, historyOf(7, 4000, 1000)...)
	types := map[string]int{}
	for _, e := range all {
		types[e.Type]++
		if _, err := v.CheckInput(e); err != nil {
			t.Errorf("%s %s refused: %v", e.Type, e.ID, err)
		}
	}
	for _, want := range []string{events.TypeCustomerRegistered, events.TypeCustomerUpdated, events.TypeRechargeCompleted,
		events.TypeBillIssued, events.TypeBillPaid, events.TypeCallCompleted, events.TypeUsageSummarized, events.TypeStoreVisited,
		events.TypeComplaintOpened, events.TypeComplaintResolved, events.TypePlanChanged} {
		if types[want] == 0 {
			t.Errorf("no %s generated", want)
		}
	}
}

func TestHistoryOrder(t *testing.T) {
	const n, customers = 5000, 1000
	evs := historyOf(1, n, customers)
	if len(evs) != n {
		t.Fatalf("got %d events, want %d", len(evs), n)
	}
	registered := map[string]bool{}
	for i, e := range evs {
		if e.Type == events.TypeCustomerRegistered {
			if registered[e.Subject] {
				t.Fatalf("event %d registers %s twice", i, e.Subject)
			}
			registered[e.Subject] = true
			continue
		}
		if !registered[e.Subject] {
			t.Fatalf("event %d (%s) for %s before its registration", i, e.Type, e.Subject)
		}
		if i > 0 && e.Time.Before(evs[i-1].Time) {
			t.Fatalf("event %d goes back in time", i)
		}
	}
	if len(registered) != customers {
		t.Errorf("got %d customers registered, want %d", len(registered), customers)
	}
}
