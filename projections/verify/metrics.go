package verify

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/projections"
)

type metrics struct {
	mismatches *prometheus.CounterVec // target, partition: customers found differing
	lastOK     *prometheus.GaugeVec   // target
	lastRun    *prometheus.GaugeVec   // target
	customers  *prometheus.GaugeVec   // target
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &metrics{
		mismatches: projections.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "touchstream_verify_mismatches_total",
			Help: "Customers whose read-model profile differed from the log when verified, per target and partition.",
		}, []string{"target", "partition"})),
		lastOK: projections.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "touchstream_verify_last_ok",
			Help: "1 if the last verification of the target matched the log, 0 if it found a difference.",
		}, []string{"target"})),
		lastRun: projections.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "touchstream_verify_last_run_timestamp_seconds",
			Help: "When the last verification of the target finished (Unix time).",
		}, []string{"target"})),
		customers: projections.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "touchstream_verify_customers_checked",
			Help: "Customers compared by the last verification of the target.",
		}, []string{"target"})),
	}
}
