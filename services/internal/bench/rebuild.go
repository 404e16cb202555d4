package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/query"
)

// rebuildTarget is the version the suite builds beside the serving customer360_v1;
// loyaltyPin the rule version the loyalty rebuild folds under.
const (
	rebuildTarget = "customer360_v2"
	loyaltyPin    = "2026-01"
)

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
	keys := events.NewKeyClient(nc, events.KeyClientConfig{CacheTTL: -1}) // as `touchstream rebuild` does: no cache
	pd := ProjectorDeps{Registry: prometheus.NewRegistry(), Pool: pool, NC: nc, JS: js, Layout: b.e.layout, Catalog: b.e.cat,
		Keys: keys, PhoneKey: b.e.phoneKey, Log: b.svcLog.With("service", "rebuild")}
	deps := projections.Deps{Pool: pool, JS: js, Layout: b.e.layout, Catalog: b.e.cat, Log: pd.Log, Registry: pd.Registry,
		History: &projections.LogHistory{
			Index:   &timeline.Index{Target: query.DefaultTimelineTarget, Layout: b.e.layout},
			JS:      js,
			Decoder: projections.NewDecoder(b.e.layout, b.e.cat),
		}}
	// One rebuild per read model, each into its own version, dropped afterwards.
	type rebuilt struct {
		m                measured
		pg, rows, stages string
		res              projections.RebuildResult
	}
	runOne := func(projection, target, pin, table string, build func(string) (projections.Projection, error)) (rebuilt, error) {
		var last atomic.Pointer[projections.RebuildProgress]
		stop := every(5*time.Second, func() {
			if p := last.Load(); p != nil {
				b.log.Info("rebuild", "target", p.Target, "seq", p.Seq, "of", p.Last, "events_per_s", int(p.Rate), "eta", p.ETA.Round(time.Second))
			}
		})
		defer stop()
		pg0, err := b.pgActivity(ctx)
		if err != nil {
			return rebuilt{}, err
		}
		var res projections.RebuildResult
		var m measured
		reg := prometheus.NewRegistry() // this run's stage seconds alone
		runDeps := deps
		runDeps.Registry = reg
		err = b.profile("rebuild-"+projection, func() error {
			var err error
			m, err = timed(ds.events, func() error {
				var err error
				res, err = projections.Rebuild(ctx, runDeps, projections.RebuildSpec{
					Projection: projection, Target: target, Pin: pin, New: build,
					Config:   projections.Config{BatchSize: projectorBatch, Linger: projectorLinger},
					Progress: func(p projections.RebuildProgress) { last.Store(&p) },
				})
				return err
			})
			return err
		})
		if err != nil {
			return rebuilt{}, fmt.Errorf("rebuild %s: %w", projection, err)
		}
		if res.Read != uint64(ds.events) {
			return rebuilt{}, fmt.Errorf("rebuild %s read %d events, the log holds %d", projection, res.Read, ds.events)
		}
		pg1, err := b.pgActivity(ctx)
		if err != nil {
			return rebuilt{}, err
		}
		var rows int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{target, table}.Sanitize()).Scan(&rows); err != nil {
			return rebuilt{}, err
		}
		return rebuilt{m: m, pg: pg0.until(pg1), rows: count(int(rows)), stages: readStages(reg), res: res},
			projections.DropTarget(ctx, pool, target)
	}
	c360, err := runOne("customer360", rebuildTarget, "", "profiles", func(t string) (projections.Projection, error) { return b.d.Customer360(pd, t) })
	if err != nil {
		return err
	}
	club, err := runOne("loyalty", "loyalty_v2", loyaltyPin, "members", func(t string) (projections.Projection, error) { return b.d.Loyalty(t, loyaltyPin) })
	if err != nil {
		return err
	}
	rb := c360.m

	t := newTable("rebuild: new versions of customer360 and of the loyalty ledger folded from the whole log beside the serving ones (projections.Rebuild)",
		"measure", "items", "seconds", "per second", "rebuild ÷ this", "cpu self/machine", "target")
	t.note("%s", b.inputs("the projector's data set: %s customers, %s events, %d B/event stored on average", count(ds.customers), count(ds.events), ds.avgBody()))
	t.note("rebuild: each read model alone into a new version, the runner's default workers; the log is gathered in windows of %d MiB (the default: a quarter of this process's memory budget, GOMEMLIMIT or half the machine's memory) folded partition by partition, one transaction per batch of a partition; the version is dropped afterwards",
		projections.DefaultGatherBytes()>>20)
	t.note("customer360's %d deferred secondary indexes were created at the end in %s s (inside the measured time)", c360.res.Deferred, seconds(c360.res.IndexTime))
	t.note("customer360 into %s (the phone index through events.KeyClient: %s key requests): %s profiles built; PostgreSQL meanwhile: %s",
		rebuildTarget, count(keys.Requests()), c360.rows, c360.pg)
	t.note("customer360's time per stage of the fold, summed over workers (a stage with sub-stages includes them): %s", c360.stages)
	t.note("loyalty into loyalty_v2, pinned to rule version %s (the data set activates none): %s members built; PostgreSQL meanwhile: %s",
		loyaltyPin, club.rows, club.pg)
	t.note("raw fetch: an ordered consumer over the same stream, reading and discarding (%.0f MB/s); raw COPY: timeline-shaped rows, one connection", float64(fetched)/1e6/fetch.elapsed.Seconds())
	t.note("%s", b.e.durability())
	t.note("load average before: %s", load)
	t.row("raw JetStream fetch (ordered consumer, no processing)", count(fetch.n), seconds(fetch.elapsed), perSecond(fetch.rate()), ratio(rb.rate(), fetch.rate()), fetch.cpu.String(), "")
	t.row("raw PostgreSQL COPY, timeline-shaped", count(cp.n), seconds(cp.elapsed), perSecond(cp.rate()), ratio(rb.rate(), cp.rate()), cp.cpu.String(), "")
	t.row("rebuild customer360, events", count(rb.n), seconds(rb.elapsed), perSecond(rb.rate()), "", rb.cpu.String(), verdict(rb.rate() >= 50_000, "≥ 50,000 events/s"))
	t.row("rebuild loyalty ledger, events", count(club.m.n), seconds(club.m.elapsed), perSecond(club.m.rate()), "", club.m.cpu.String(), "")
	return t.write(b.out)
}
