package verify_test

import (
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/conformance"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/projections/verify"
	"github.com/touchstream/touchstream/testkit"
)

// BenchmarkVerify measures verification of a folded customer360 over a log of 200,000
// customer events in 16 partitions (pinned workload), reported as events/s.
//
//	go test ./projections/verify -run '^$' -bench Verify -benchtime 3x
func BenchmarkVerify(b *testing.B) {
	const parts, customers, n = 16, 20_000, 200_000
	pool, _ := testkit.Pool(b)
	ns := testkit.StartNATS(b)
	nc, js := ns.JetStream(b)
	def := streams.Default()
	def.Layout.Partitions, def.Layout.Streams[0].Last = parts, parts-1
	if _, err := streams.Apply(b.Context(), js, def); err != nil {
		b.Fatal(err)
	}
	cat, err := events.DefaultCatalog()
	if err != nil {
		b.Fatal(err)
	}
	pub, err := events.NewPublisher(b.Context(), nc, events.WithLayout(def.Layout), events.WithKeys(testkit.NewKeys()),
		events.WithLimits(events.Limits{MaxSize: 64 << 10}))
	if err != nil {
		b.Fatal(err)
	}
	w := conformance.NewWorkload(3, customers, n, parts, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := 0; i < len(w.Events); i += 5000 {
		chunk := w.Events[i:min(i+5000, len(w.Events))]
		for j, r := range pub.PublishBatch(b.Context(), chunk) {
			if r.Err != nil {
				b.Fatalf("publish %s: %v", chunk[j].Type, r.Err)
			}
		}
	}
	deps := projections.Deps{Pool: pool, JS: js, Layout: def.Layout, Catalog: cat,
		History: &projections.LogHistory{Index: &timeline.Index{Target: index, Layout: def.Layout}, JS: js,
			Decoder: projections.NewDecoder(def.Layout, cat)}}
	c360, err := customer360.New(customer360.Options{Target: target, Tiers: valuetier.Default()})
	if err != nil {
		b.Fatal(err)
	}
	r, err := projections.NewRunner(projections.Config{}, deps, timeline.New(index), c360)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.CatchUp(b.Context(), nil); err != nil {
		b.Fatal(err)
	}
	v, err := verify.New(verify.Deps{Pool: pool, JS: js, Layout: def.Layout}, verify.Options{Target: target})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var read uint64
	for b.Loop() {
		rep, err := v.Run(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if err := rep.Err(); err != nil {
			b.Fatal(err)
		}
		read += rep.Read
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "events/s")
}
