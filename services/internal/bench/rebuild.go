package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/query"
)

// rebuildTarget is the version the suite builds beside the serving customer360_v1.
const rebuildTarget = "customer360_v2"

// rebuild measures a blue/green rebuild of customer 360 (projections.Rebuild, the
// code behind `touchstream rebuild customer360 --no-switch`) over the projector's data
// set, beside a raw ordered-consumer read of the same log and raw PostgreSQL COPY,
// measured in the same run.
func (b *bench) rebuild(ctx context.Context) error {
	load := loadAverage()
	ds, err := b.loadDataset(ctx)
	if err != nil {
		return err
	}
	fetch, fetched, err := b.rawFetch(ctx, ds)
	if err != nil {
		return err
	}
	copyRows := max(ds.events/4, 1000)
	cp, err := b.pgCopy(ctx, copyRows)
	if err != nil {
		return err
	}

	pool, err := b.e.newPool(ctx, 16)
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, err := b.e.connect("touchstream-bench-rebuild")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	keys := events.NewKeyClient(nc, events.KeyClientConfig{})
	pd := ProjectorDeps{Registry: prometheus.NewRegistry(), Pool: pool, NC: nc, JS: js, Layout: b.e.layout, Catalog: b.e.cat,
		Keys: keys, PhoneKey: b.e.phoneKey, Log: b.svcLog.With("service", "rebuild")}
	deps := projections.Deps{Pool: pool, JS: js, Layout: b.e.layout, Catalog: b.e.cat, Log: pd.Log, Registry: pd.Registry,
		History: &projections.LogHistory{
			Index:   &timeline.Index{Target: query.DefaultTimelineTarget, Layout: b.e.layout},
			JS:      js,
			Decoder: projections.NewDecoder(b.e.layout, b.e.cat),
		}}
	var last atomic.Pointer[projections.RebuildProgress]
	stop := every(5*time.Second, func() {
		if p := last.Load(); p != nil {
			b.log.Info("rebuild", "target", p.Target, "seq", p.Seq, "of", p.Last, "events_per_s", int(p.Rate), "eta", p.ETA.Round(time.Second))
		}
	})
	var res projections.RebuildResult
	pg0, err := b.pgActivity(ctx)
	if err != nil {
		stop()
		return err
	}
	var rb measured
	err = b.profile("rebuild", func() error {
		var err error
		rb, err = timed(ds.events, func() error {
			var err error
			res, err = projections.Rebuild(ctx, deps, projections.RebuildSpec{
				Projection: "customer360",
				Target:     rebuildTarget,
				New:        func(target string) (projections.Projection, error) { return b.d.Customer360(pd, target) },
				Config:     projections.Config{BatchSize: projectorBatch, Linger: projectorLinger},
				Progress:   func(p projections.RebuildProgress) { last.Store(&p) },
			})
			return err
		})
		return err
	})
	stop()
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	if res.Read != uint64(ds.events) {
		return fmt.Errorf("rebuild read %d events, the log holds %d", res.Read, ds.events)
	}
	pg1, err := b.pgActivity(ctx)
	if err != nil {
		return err
	}
	var profiles int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+rebuildTarget+".profiles").Scan(&profiles); err != nil {
		return err
	}
	if err := projections.DropTarget(ctx, pool, rebuildTarget); err != nil {
		return err
	}

	t := newTable("rebuild: a new version of customer360 folded from the whole log beside the serving one (projections.Rebuild)",
		"measure", "items", "seconds", "per second", "rebuild ÷ this", "cpu self/machine", "target")
	t.note("%s", b.inputs("the projector's data set: %s customers, %s events, %d B/event stored on average", count(ds.customers), count(ds.events), ds.avgBody()))
	t.note("rebuild: customer360 alone into %s (the phone index through events.KeyClient: %s key requests), batches of %d, the runner's default workers, one transaction per batch; %s profiles built; the version is dropped afterwards",
		rebuildTarget, count(keys.Requests()), projectorBatch, count(profiles))
	t.note("PostgreSQL during the rebuild: %s", pg0.until(pg1))
	t.note("raw fetch: an ordered consumer over the same stream, reading and discarding (%.0f MB/s); raw COPY: timeline-shaped rows, one connection", float64(fetched)/1e6/fetch.elapsed.Seconds())
	t.note("%s", b.e.durability())
	t.note("load average before: %s", load)
	t.row("raw JetStream fetch (ordered consumer, no processing)", count(fetch.n), seconds(fetch.elapsed), perSecond(fetch.rate()), ratio(rb.rate(), fetch.rate()), fetch.cpu.String(), "")
	t.row("raw PostgreSQL COPY, timeline-shaped", count(cp.n), seconds(cp.elapsed), perSecond(cp.rate()), ratio(rb.rate(), cp.rate()), cp.cpu.String(), "")
	t.row("rebuild customer360, events", count(rb.n), seconds(rb.elapsed), perSecond(rb.rate()), "", rb.cpu.String(), verdict(rb.rate() >= 50_000, "≥ 50,000 events/s"))
	return t.write(b.out)
}
