package ledger

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkApply folds random member streams under the deployed rules; it reports
// events per second of the pure fold (no JSON).
func BenchmarkApply(b *testing.B) {
	book := deployBookB(b)
	rng := rand.New(rand.NewPCG(7, 7))
	var streams [][]Event
	var n int
	for range 200 {
		evs := randomStream(rng, local(2026, 1, 1, 0, 0))
		streams = append(streams, evs)
		n += len(evs)
	}
	b.ResetTimer()
	for b.Loop() {
		for _, evs := range streams {
			m := &Member{}
			for i, ev := range evs {
				out, err := m.Apply(book, ev)
				if err != nil {
					b.Fatal(err)
				}
				if out.Recompute {
					if m, err = Recompute(book, evs[:i+1]); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRoundTrip is the cost of storing and loading the member document of a
// three-year prepaid customer: a monthly recharge, a redemption each quarter, daily
// clock ticks.
func BenchmarkRoundTrip(b *testing.B) {
	book := deployBookB(b)
	var s script
	s.add(srcStore, local(2024, 1, 3, 10, 0), register(PlanPrepaid))
	for d := range 3 * 365 {
		at := local(2024, 1, 4, 0, 0).AddDate(0, 0, d)
		s.add(srcClock, at, tick(at))
		if at.Day() == 5 {
			s.add(srcOnline, at.Add(9*time.Hour), recharge(100))
			if at.Month()%3 == 0 {
				s.add(srcClub, at.Add(10*time.Hour), redeem(300))
			}
		}
	}
	m, err := Recompute(book, s.evs)
	if err != nil {
		b.Fatal(err)
	}
	doc, _ := json.Marshal(m)
	for b.Loop() {
		d, err := json.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Decode(d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(doc)), "bytes/doc")
	b.ReportMetric(float64(len(m.Entries)), "entries/doc")
}

func deployBookB(b *testing.B) Rulebook {
	rs, err := Load(deployRules)
	if err != nil {
		b.Fatal(err)
	}
	s, err := rs.Schedule(Activation{Version: "2026-01"}, Activation{Version: "2026-10", Effective: local(2026, 10, 1, 0, 0)})
	if err != nil {
		b.Fatal(err)
	}
	return s
}
