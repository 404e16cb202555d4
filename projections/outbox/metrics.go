package outbox

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/projections"
)

type metrics struct {
	forwarded *prometheus.CounterVec // outcome: stored, duplicate, invalid
	errors    prometheus.Counter
	delay     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &metrics{
		forwarded: projections.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "touchstream_signals_forwarded_total",
			Help: "Signals forwarded from the outbox to SIGNALS, by outcome: stored, duplicate (already in the stream's duplicate window), invalid (skipped: no valid type).",
		}, []string{"outcome"})),
		errors: projections.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "touchstream_signals_forward_errors_total",
			Help: "Failed attempts to publish a signal to SIGNALS (retried).",
		})),
		delay: projections.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "touchstream_signals_forward_lag_seconds",
			Help:    "Time from a signal's emission (its batch) to its storage in SIGNALS.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		})),
	}
}
