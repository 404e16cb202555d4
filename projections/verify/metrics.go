package verify

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
		mismatches: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "touchstream_verify_mismatches_total",
			Help: "Customers whose read-model profile differed from the log when verified, per target and partition.",
		}, []string{"target", "partition"})),
		lastOK: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "touchstream_verify_last_ok",
			Help: "1 if the last verification of the target matched the log, 0 if it found a difference.",
		}, []string{"target"})),
		lastRun: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "touchstream_verify_last_run_timestamp_seconds",
			Help: "When the last verification of the target finished (Unix time).",
		}, []string{"target"})),
		customers: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "touchstream_verify_customers_checked",
			Help: "Customers compared by the last verification of the target.",
		}, []string{"target"})),
	}
}

// register registers c, or returns the collector already registered under its name, so
// that repeated verifiers in one process share their metrics.
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
