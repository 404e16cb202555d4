package verify

import (
	"context"
	"errors"
	"time"
)

// Every verifies the target at each interval until ctx is cancelled, then returns nil:
// the scheduled verification a projector runs beside its runner. Each outcome sets the
// metrics; a difference is logged with the partition and customer id, a failure to
// verify (log or database unavailable) is logged and retried at the next interval.
func (v *Verifier) Every(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return errors.New("verify: interval must be positive")
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rep, err := v.Run(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			v.deps.Log.Warn("scheduled verification failed", "target", v.opts.Target, "error", err)
		case !rep.OK:
			for _, p := range rep.Partitions {
				if p.First != nil {
					v.deps.Log.Error("read model differs from the log", "target", v.opts.Target, "partition", p.Partition,
						"customer_id", p.First.CustomerID, "reason", p.First.Reason, "customers_differing", p.Differing)
				}
			}
		}
	}
}
