package features

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// stream is a random customer history: mostly forward in time, some late events,
// some silent stretches, every payload kind the fold reads and some it does not.
func stream(seed uint64, n int) []Event {
	rng := rand.New(rand.NewPCG(seed, 7))
	cur := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	date := func(t time.Time) string { return t.In(Zone).Format(time.DateOnly) }
	var out []Event
	for i := range n {
		switch d := rng.IntN(100); {
		case d < 8 && i > 0:
			cur = cur.Add(-time.Duration(rng.Int64N(int64(40 * 24 * time.Hour))))
		case d < 12:
			cur = cur.Add(time.Duration(rng.Int64N(int64(150 * 24 * time.Hour))))
		default:
			cur = cur.Add(time.Duration(rng.Int64N(int64(4 * 24 * time.Hour))))
		}
		at := cur
		ref := events.EventRef{Source: []string{"store", "callcenter", "recharge"}[rng.IntN(3)], ID: fmt.Sprintf("e%d", i)}
		cid := fmt.Sprintf("c%d", rng.IntN(8))
		var data any
		switch k := rng.IntN(17); k {
		case 0:
			data = events.RechargeCompleted{Amount: events.CNY(int64(rng.IntN(5)+1) * 3000)}
		case 1:
			data = &events.BillIssued{BillID: ref.ID, Amount: events.CNY(rng.Int64N(20000))}
		case 2:
			data = events.BillPaid{BillID: ref.ID, Amount: events.CNY(1 + rng.Int64N(20000))}
		case 3:
			data = events.UsageSummarized{PeriodEnd: date(at.Add(-24 * time.Hour)), VoiceMinutes: rng.Int64N(30), DataMB: float64(rng.IntN(4000)) / 7, DroppedCalls: rng.Int64N(3)}
		case 4:
			data = events.CallCompleted{Direction: []string{"inbound", "outbound"}[rng.IntN(2)], Queue: []string{"care", "billing", "retention", "telesales"}[rng.IntN(4)]}
		case 5:
			data = events.ComplaintOpened{ComplaintID: cid, PromisedBy: at.Add(time.Duration(rng.IntN(10)) * 24 * time.Hour)}
		case 6:
			data = events.ComplaintResolved{ComplaintID: cid, Resolution: "resolved"}
		case 7:
			data = events.NetworkIncident{IncidentID: ref.ID, Kind: "outage"}
		case 8:
			data = events.SurveyAnswered{Kind: "nps", Score: rng.IntN(11)}
		case 9:
			data = events.SurveyAnswered{Kind: "csat", Score: 1 + rng.IntN(5)}
		case 10:
			data = events.PlanChanged{Direction: []string{"upgrade", "downgrade", "lateral"}[rng.IntN(3)], ContractEnd: date(at.AddDate(0, rng.IntN(30), 0))}
		case 11:
			data = events.CustomerRegistered{ContractEnd: date(at.AddDate(1, 0, 0))}
		case 12:
			data = events.DeviceChanged{PurchasedAt: date(at.AddDate(0, -rng.IntN(40), 0))}
		case 13:
			if rng.IntN(4) == 0 {
				data = events.PortOutRequested{RequestID: ref.ID}
			}
		case 14:
			data = events.ClockTicked{Period: "day", Tick: at}
		case 15:
			data = events.StoreVisited{StoreID: "s", Purpose: "inquiry"}
		case 16:
			if rng.IntN(8) == 0 {
				data = events.SubscriptionTerminated{Reason: "port_out", EffectiveAt: at}
			}
		}
		out = append(out, Event{Ref: ref, Time: at, Data: data})
	}
	return out
}

func foldAll(t *testing.T, evs []Event) *State {
	t.Helper()
	var s State
	for _, ev := range evs {
		if err := s.Apply(ev); err != nil {
			t.Fatalf("apply %s: %v", ev.Ref.ID, err)
		}
	}
	return &s
}

// TestBatchSplits: the same events folded in different batch splits, with the
// state stored as JSON and read back between batches, give the same state and the
// same snapshots.
func TestBatchSplits(t *testing.T) {
	for seed := range uint64(20) {
		evs := stream(seed, 400)
		want := foldAll(t, evs)
		wantJSON := mustJSON(t, want)
		rng := rand.New(rand.NewPCG(seed, 99))
		for split := range 3 {
			var s State
			for i := 0; i < len(evs); {
				n := 1 + rng.IntN(60)
				if split == 0 {
					n = 1
				}
				for _, ev := range evs[i:min(i+n, len(evs))] {
					if err := s.Apply(ev); err != nil {
						t.Fatal(err)
					}
				}
				i += n
				var back State
				if err := json.Unmarshal(mustJSON(t, &s), &back); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(s, back) {
					t.Fatalf("seed %d: JSON round trip not exact (-before +after):\n%s", seed, cmp.Diff(s, back))
				}
				s = back
			}
			if got := mustJSON(t, &s); !bytes.Equal(got, wantJSON) {
				t.Fatalf("seed %d split %d: another state:\n%s", seed, split, cmp.Diff(*want, s))
			}
			for _, asOf := range []time.Time{want.Now, want.Now.Add(-36 * time.Hour), want.Now.AddDate(0, 0, 45)} {
				if diff := cmp.Diff(want.Snapshot(asOf), s.Snapshot(asOf)); diff != "" {
					t.Fatalf("seed %d split %d: another snapshot:\n%s", seed, split, diff)
				}
			}
		}
	}
}

// TestEventTimeOnly: features depend on event time only. Folding inside a bubble
// whose wall clock is years away gives the same state and snapshot, and no
// non-test source file of the package reads the wall clock.
func TestEventTimeOnly(t *testing.T) {
	evs := stream(42, 500)
	want := foldAll(t, evs)
	wantJSON := mustJSON(t, want.Snapshot(want.Now))
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(5 * 365 * 24 * time.Hour) // the bubble's clock moves; event time does not
		got := foldAll(t, evs)
		if !bytes.Equal(mustJSON(t, got), mustJSON(t, want)) {
			t.Errorf("another wall clock gives another state")
		}
		if !bytes.Equal(mustJSON(t, got.Snapshot(got.Now)), wantJSON) {
			t.Errorf("another wall clock gives another snapshot")
		}
	})

	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "time" &&
				slices.Contains([]string{"Now", "Since", "Until", "Tick", "After", "AfterFunc", "NewTimer", "NewTicker", "Sleep", "LoadLocation"}, sel.Sel.Name) {
				t.Errorf("%s: time.%s: the features must use event time only", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}

// TestOffsetsDoNotMatter: the same instants written with another offset give the
// same state.
func TestOffsetsDoNotMatter(t *testing.T) {
	evs := stream(3, 300)
	want := mustJSON(t, foldAll(t, evs))
	for _, z := range []*time.Location{time.UTC, Zone, time.FixedZone("x", -7*3600)} {
		moved := slices.Clone(evs)
		for i := range moved {
			moved[i].Time = moved[i].Time.In(z)
		}
		if got := mustJSON(t, foldAll(t, moved)); !bytes.Equal(got, want) {
			t.Errorf("times written in %s give another state", z)
		}
	}
}

// TestBounded: state stays small however long the history.
func TestBounded(t *testing.T) {
	s := foldAll(t, stream(9, 5000))
	if len(s.Days) > DaysKept || len(s.Open) > maxOpenComplaints || len(s.Resolved) > maxResolved {
		t.Errorf("unbounded state: %d days, %d open, %d resolved", len(s.Days), len(s.Open), len(s.Resolved))
	}
	for k, l := range s.Recent {
		if len(l) > MaxEvidence {
			t.Errorf("evidence %s: %d refs", k, len(l))
		}
	}
	if n := len(mustJSON(t, s)); n > 32<<10 {
		t.Errorf("stored state is %d bytes", n)
	}
}
