package notify

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/projections"
)

type metrics struct {
	deliveries *prometheus.CounterVec   // webhook, outcome
	latency    *prometheus.HistogramVec // webhook
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &metrics{
		deliveries: projections.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "touchstream_notify_deliveries_total",
			Help: "Signal deliveries to webhooks, by webhook and outcome: delivered (2xx), retried (a transient failure, tried again), parked (refused, or failed after every retry), redelivered (a parked one delivered by hand).",
		}, []string{"webhook", "outcome"})),
		latency: projections.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "touchstream_notify_post_seconds",
			Help:    "Duration of one POST to a webhook (any outcome).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"webhook"})),
	}
}
