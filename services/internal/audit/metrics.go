package audit

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	batches  *prometheus.CounterVec
	records  prometheus.Counter
	size     prometheus.Histogram
	duration prometheus.Histogram
	refused  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "access_audit", Name: "batches_total",
			Help: "Group commits of access records, by outcome (ok, failed: the reads they describe were refused).",
		}, []string{"outcome"}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "access_audit", Name: "records_total",
			Help: "Access records written: one per customer whose personal fields a read returned.",
		}),
		size: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "touchstream", Subsystem: "access_audit", Name: "batch_records",
			Help:    "Records per group commit.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "touchstream", Subsystem: "access_audit", Name: "batch_duration_seconds",
			Help:    "Time to write one group commit.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "touchstream", Subsystem: "access_audit", Name: "refused_total",
			Help: "Reads refused at once because too many were already waiting for their records.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.batches, m.records, m.size, m.duration, m.refused} {
		if err := reg.Register(c); err != nil {
			return metrics{}, fmt.Errorf("audit: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m metrics) observe(records int, d time.Duration, err error) {
	if err != nil {
		m.batches.WithLabelValues("failed").Inc()
		return
	}
	m.batches.WithLabelValues("ok").Inc()
	m.records.Add(float64(records))
	m.size.Observe(float64(records))
	m.duration.Observe(d.Seconds())
}
