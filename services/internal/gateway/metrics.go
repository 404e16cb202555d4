package gateway

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of an event, the values of the "outcome" label.
const (
	StatusStored    = "stored"    // appended to the log now
	StatusDuplicate = "duplicate" // already in the log (same source and id)
	StatusRefused   = "refused"   // breaks the contract or the channel's rights: do not retry unchanged
	StatusUnknown   = "unknown"   // may or may not be stored: retrying with the same id is safe
	StatusFailed    = "failed"    // certainly not stored, for a passing reason: retry later
)

// outcomeForbidden is the metrics outcome of an event refused for the channel's rights;
// to the client it is "refused".
const outcomeForbidden = "forbidden"

type metrics struct {
	events          *prometheus.CounterVec
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	inFlight        prometheus.Gauge
	dedupLookups    prometheus.Counter
	dedupFailures   prometheus.Counter
	dedupHits       prometheus.Counter
	natsUnavailable prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "gateway", Name: "events_total",
			Help: "Events received, by channel and outcome (stored, duplicate, refused, forbidden, unknown, failed).",
		}, []string{"channel", "outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "gateway", Name: "requests_total",
			Help: "Requests answered, by door (http, nats) and status code.",
		}, []string{"door", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "touchstream", Subsystem: "gateway", Name: "request_duration_seconds",
			Help:    "Time from receiving a request to answering it, by door.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"door"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "touchstream", Subsystem: "gateway", Name: "events_in_flight",
			Help: "Events accepted and not yet answered.",
		}),
		dedupLookups: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "gateway", Name: "dedup_lookups_total",
			Help: "Lookups in the durable idempotency index (one per request).",
		}),
		dedupFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "gateway", Name: "dedup_lookup_failures_total",
			Help: "Index lookups that failed and were skipped (the stream's duplicate window still applies).",
		}),
		dedupHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "gateway", Name: "dedup_hits_total",
			Help: "Events answered duplicate from the durable idempotency index.",
		}),
		natsUnavailable: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "gateway", Name: "nats_unavailable_total",
			Help: "Requests answered 503 because the NATS connection was down.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.requests, m.duration, m.inFlight, m.dedupLookups, m.dedupFailures, m.dedupHits, m.natsUnavailable} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gateway: register metrics: %w", err)
		}
	}
	return m, nil
}
