package outbox

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
		forwarded: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "touchstream_signals_forwarded_total",
			Help: "Signals forwarded from the outbox to SIGNALS, by outcome: stored, duplicate (already in the stream's duplicate window), invalid (skipped: no valid type).",
		}, []string{"outcome"})),
		errors: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "touchstream_signals_forward_errors_total",
			Help: "Failed attempts to publish a signal to SIGNALS (retried).",
		})),
		delay: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "touchstream_signals_forward_lag_seconds",
			Help:    "Time from a signal's emission (its batch) to its storage in SIGNALS.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		})),
	}
}

// register registers c, or returns the collector already registered under its name,
// so that several forwarders in one process share their metrics.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a programming error: two different metrics with one name
	}
	return c
}
