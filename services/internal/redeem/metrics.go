package redeem

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	outcomes    *prometheus.CounterVec
	ackRetries  prometheus.Counter
	duplicates  prometheus.Counter
	swept       *prometheus.CounterVec
	lockWaiting prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "redeem", Name: "requests_total",
			Help: "Requests answered, by route (redeem, reverse, get, openapi, unmatched) and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "touchstream", Subsystem: "redeem", Name: "request_duration_seconds",
			Help:    "Time from receiving a request to answering it, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "redeem", Name: "redemptions_total",
			Help: "Redemption requests by outcome: created, replayed (idempotency key seen), insufficient (409), pending (503, left to the sweeper), failed.",
		}, []string{"outcome"}),
		ackRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "redeem", Name: "publish_ack_retries_total",
			Help: "Events published again (same id) because the stream's acknowledgement was lost.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "redeem", Name: "publish_duplicates_total",
			Help: "Publications the stream answered as duplicates of an event already stored.",
		}),
		swept: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "redeem", Name: "swept_total",
			Help: "Pending redemptions and reversals the sweeper published, by kind.",
		}, []string{"kind"}),
		lockWaiting: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "touchstream", Subsystem: "redeem", Name: "member_lock_seconds",
			Help:    "Time a redemption waited for its member's lock and decided (the serialised part of a request).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.outcomes, m.ackRetries, m.duplicates, m.swept, m.lockWaiting} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("redeem: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}
