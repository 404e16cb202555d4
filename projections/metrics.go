package projections

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events    *prometheus.CounterVec   // target, outcome
	batches   *prometheus.CounterVec   // group
	batchDur  *prometheus.HistogramVec // group
	batchSize *prometheus.HistogramVec // group
	gathered  *prometheus.HistogramVec // group: events per gathered window
	retries   *prometheus.CounterVec   // group, kind
	stages    *prometheus.CounterVec   // group, stage: seconds spent
	owned     *prometheus.GaugeVec     // group, instance
	lagEvents *prometheus.GaugeVec     // target, partition
	lagSecs   *prometheus.GaugeVec     // target, partition
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &metrics{
		events: Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "touchstream_projection_events_total",
			Help: "Events consumed by a projection target, by outcome (applied, skipped, parked).",
		}, []string{"target", "outcome"})),
		batches: Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "touchstream_projection_batches_total",
			Help: "Batches committed by a runner group.",
		}, []string{"group"})),
		batchDur: Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "touchstream_projection_batch_seconds",
			Help:    "Time to fold and commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"group"})),
		batchSize: Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "touchstream_projection_batch_events",
			Help:    "Events per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 17),
		}, []string{"group"})),
		gathered: Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "touchstream_projection_gathered_events",
			Help:    "Events per window gathered by a reader far behind the log and folded partition by partition.",
			Buckets: prometheus.ExponentialBuckets(1000, 4, 9),
		}, []string{"group"})),
		stages: Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "touchstream_projection_stage_seconds_total",
			Help: "Time spent per stage of folding: gather (reading a window far behind the log), decode (and validate), fence (checkpoints), apply:<target>, park, commit.",
		}, []string{"group", "stage"})),
		retries: Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "touchstream_projection_retries_total",
			Help: "Batches retried, by kind: transient (database or index unavailable), fenced (another writer advanced the partition), isolated (a failing batch applied event by event).",
		}, []string{"group", "kind"})),
		owned: Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "touchstream_projection_partitions_owned",
			Help: "Partitions this instance holds the lease of.",
		}, []string{"group", "instance"})),
		lagEvents: Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "touchstream_projection_lag_events",
			Help: "Events in the log not yet consumed by the target, per partition.",
		}, []string{"target", "partition"})),
		lagSecs: Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "touchstream_projection_lag_seconds",
			Help: "Log time between the newest event of the partition and the last one the target consumed.",
		}, []string{"target", "partition"})),
	}
}

// Register registers c, or returns the collector already registered under its name,
// so that several runners (or verifiers, forwarders) in one process share their
// metrics. Two different metrics under one name are a programming error: it panics.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
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
