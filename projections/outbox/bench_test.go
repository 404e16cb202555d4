package outbox_test

import (
	"testing"

	"github.com/touchstream/touchstream/projections/outbox"
)

// BenchmarkEmit: signals written to the outbox, 500 per transaction.
func BenchmarkEmit(b *testing.B) {
	e := setup(b)
	sigs := make([]outbox.Signal, 500)
	for i := range sigs {
		sigs[i] = signal(b, i)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += len(sigs) {
		emit(b, e.pool, true, sigs[:min(len(sigs), b.N-i)]...)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signals/s")
}

// BenchmarkForward: signals forwarded from the outbox to SIGNALS (stored, not
// duplicates), one forwarder.
func BenchmarkForward(b *testing.B) {
	e := setup(b)
	var batch []outbox.Signal
	for i := 0; i < b.N; i++ {
		batch = append(batch, signal(b, i))
		if len(batch) == 500 || i == b.N-1 {
			emit(b, e.pool, true, batch...)
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	e.forwarder(b, "fwd", nil)
	waitStream(b, e.js, uint64(b.N))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signals/s")
}
