package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/query"
)

// Scale settings: the lease group and the instance counts the suite compares.
const (
	scaleGroup    = "projector" // the command's lease group
	scaleMaxProcs = 3
	scaleLeaseTTL = 5 * time.Second // the command's default
	scalePoolSize = 16              // per instance, as the catch-up's
)

// scaleTargets are the read models the projector folds (buildProjector), reset before
// every run.
var scaleTargets = []string{query.DefaultTimelineTarget, query.DefaultCustomer360Target, dedup.Schema}

// scaleRun is one run of the suite: n instances folding the whole log.
type scaleRun struct {
	instances int
	m         measured
	shares    string // partitions per instance at the end
	pg        string
	timeline  int64
	profiles  int64
	parked    int64
	batches   batchStats // summed over the instances
}

// scale measures the projector group folding the projector's data set from scratch
// with 1, 2 and 3 instances in one lease group, each instance a Runner in Run mode
// (leases, heartbeats, its own connections) as separate processes run it, the read
// models reset between runs.
func (b *bench) scale(ctx context.Context) error {
	load := loadAverage()
	ds, err := b.loadDataset(ctx)
	if err != nil {
		return err
	}
	var runs []scaleRun
	for n := 1; n <= scaleMaxProcs; n++ {
		r, err := b.scaleRun(ctx, ds, n)
		if err != nil {
			return fmt.Errorf("%d instances: %w", n, err)
		}
		runs = append(runs, r)
	}

	t := newTable("scale: the projector group (timeline + customer360 + dedup) folding the whole log from scratch with 1, 2 and 3 instances in one lease group",
		"instances", "events", "seconds", "per second", "÷ 1 instance", "cpu self/machine", "partitions per instance")
	t.note("%s", b.inputs("the projector's data set: %s customers, %s events, %d B/event stored on average", count(ds.customers), count(ds.events), ds.avgBody()))
	t.note("each instance: projections.Runner.Run as buildProjector assembles it (timeline, customer360 with the phone index through events.KeyClient, dedup), lease group %q, "+
		"its own NATS connection and pool of %d, batches of %d, linger %s, the runner's default workers; instances in one process here, as separate processes in production",
		scaleGroup, scalePoolSize, projectorBatch, projectorLinger)
	t.note("before each run: the three read models dropped (schema, migrations, checkpoints, lag, parked events), leases freed and every instance registered as a live member, so that each takes its fair share at its first heartbeat; timed from the start until every target's checkpoints cover the log (polled every 50 ms)")
	for _, r := range runs {
		t.note("%d: %s; folded %s timeline rows, %s profiles, %s parked; PostgreSQL meanwhile: %s", r.instances, r.batches.since(batchStats{}),
			count(r.timeline), count(r.profiles), count(r.parked), r.pg)
	}
	t.note("%s", b.e.durability())
	t.note("why it stops scaling: %s", scaleLimit(runs))
	t.note("load average before: %s", load)
	base := runs[0].m.rate()
	for _, r := range runs {
		t.row(count(r.instances), count(r.m.n), seconds(r.m.elapsed), perSecond(r.m.rate()), ratio(r.m.rate(), base), r.m.cpu.String(), r.shares)
	}
	return t.write(b.out)
}

// scaleLimit explains, from the measurements, why more instances do not add
// throughput on this machine.
func scaleLimit(runs []scaleRun) string {
	ncpu := runtime.NumCPU()
	one := runs[0]
	var parts []string
	parts = append(parts, fmt.Sprintf("%d cores, shared by the instances and the embedded nats-server (this process) and PostgreSQL's backends (the rest of the machine column)", ncpu))
	if one.m.cpu.machine >= 0 {
		parts = append(parts, fmt.Sprintf("one instance already keeps %.2f of %d cores busy (%.2f in this process, %.2f elsewhere: PostgreSQL and anything else running, see the load average), so a second instance has no idle core to run on",
			one.m.cpu.machine, ncpu, one.m.cpu.self, max(one.m.cpu.machine-one.m.cpu.self, 0)))
	}
	perBatch := func(r scaleRun) float64 { return r.batches.events / float64(max(r.batches.batches, 1)) }
	for _, r := range runs[1:] {
		parts = append(parts, fmt.Sprintf("%d instances: %s of one instance's rate, batches of %.0f events on average against %.0f with one (%s commits against %s)",
			r.instances, ratio(r.m.rate(), one.m.rate()), perBatch(r), perBatch(one), count(r.batches.batches), count(one.batches.batches)))
	}
	parts = append(parts, "splitting the partitions does not split the work per event: each instance has its own consumer over the whole stream, filtered to its partitions, "+
		"its batches fill more slowly (a commit every linger instead of every 1,000 events), "+
		"and each commit is a PostgreSQL transaction with its checkpoints, so more instances add transactions, WAL and lease heartbeats on the same 2 cores; "+
		"the projector scales out when the instances and PostgreSQL get cores of their own (past 2 cores, i.e. on more machines), not by more instances here")
	return strings.Join(parts, "; ")
}

// scaleRun resets the read models and folds the whole log with n instances.
func (b *bench) scaleRun(ctx context.Context, ds *dataset, n int) (scaleRun, error) {
	out := scaleRun{instances: n}
	if err := b.resetReadModels(ctx); err != nil {
		return out, err
	}
	type instance struct {
		name   string
		pool   *pgxpool.Pool
		nc     *nats.Conn
		runner *projections.Runner
		reg    *prometheus.Registry
	}
	insts := make([]*instance, 0, n)
	defer func() {
		for _, in := range insts {
			if in.nc != nil {
				in.nc.Close()
			}
			if in.pool != nil {
				in.pool.Close()
			}
		}
	}()
	for i := range n {
		in := &instance{name: fmt.Sprintf("bench-scale-%d", i+1)}
		insts = append(insts, in)
		var err error
		if in.pool, err = b.e.newPool(ctx, scalePoolSize); err != nil {
			return out, err
		}
		if in.nc, err = b.e.connect("touchstream-bench-" + in.name); err != nil {
			return out, err
		}
		in.reg = prometheus.NewRegistry()
		if in.runner, err = b.scaleRunner(in.name, in.pool, in.nc, in.reg); err != nil {
			return out, err
		}
		if err := in.runner.Prepare(ctx); err != nil { // migrations, outside the measurement
			return out, err
		}
	}
	names := make([]string, n)
	for i, in := range insts {
		names[i] = in.name
	}
	if err := b.registerMembers(ctx, names); err != nil {
		return out, err
	}

	// The whole log: the data set, and the live events of the e2e suite when it ran
	// before.
	inLog, err := b.logMessages(ctx)
	if err != nil {
		return out, err
	}
	total := int(inLog)
	b.log.Info("scale run starting", "instances", n, "events", total)
	pg0, err := b.pgActivity(ctx)
	if err != nil {
		return out, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(runCtx)
	for _, in := range insts {
		g.Go(func() error { return in.runner.Run(gctx) })
	}
	var shares string
	out.m, err = timed(total, func() error {
		stop := every(5*time.Second, func() {
			done, _ := b.appliedLeast(ctx)
			b.log.Info("scale run", "instances", n, "events", done, "of", total)
		})
		defer stop()
		for {
			done, err := b.appliedLeast(ctx)
			if err != nil {
				return err
			}
			if done >= int64(total) {
				shares, err = b.leaseShares(ctx, names)
				return err
			}
			select {
			case <-gctx.Done():
				return fmt.Errorf("runners stopped with %d of %d events folded", done, total)
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	cancel()
	if werr := g.Wait(); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return out, err
	}
	out.shares = shares
	for _, in := range insts {
		s := readBatches(in.reg)
		out.batches.batches += s.batches
		out.batches.events += s.events
		out.batches.secs += s.secs
	}
	pg1, err := b.pgActivity(ctx)
	if err != nil {
		return out, err
	}
	out.pg = pg0.until(pg1)
	if err := b.e.pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM `+pgx.Identifier{query.DefaultTimelineTarget, "events"}.Sanitize()+`),
			(SELECT count(*) FROM `+pgx.Identifier{query.DefaultCustomer360Target, "profiles"}.Sanitize()+`),
			(SELECT count(*) FROM projections.dead_letters)`).Scan(&out.timeline, &out.profiles, &out.parked); err != nil {
		return out, fmt.Errorf("count read models: %w", err)
	}
	if out.timeline != int64(total) {
		return out, fmt.Errorf("timeline holds %d rows after folding the log's %d events", out.timeline, total)
	}
	b.log.Info("scale run done", "instances", n, "seconds", out.m.elapsed.Seconds(), "events_per_s", int(out.m.rate()), "shares", shares)
	return out, nil
}

// scaleRunner builds one instance of the projector group as buildProjector does,
// under its own instance name.
func (b *bench) scaleRunner(name string, pool *pgxpool.Pool, nc *nats.Conn, reg *prometheus.Registry) (*projections.Runner, error) {
	if b.d.Customer360 == nil {
		return nil, errors.New("Deps.Customer360 is required")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	log := b.svcLog.With("service", "projector", "instance", name)
	pd := ProjectorDeps{Registry: reg, Pool: pool, NC: nc, JS: js, Layout: b.e.layout, Catalog: b.e.cat,
		Keys: events.NewKeyClient(nc, events.KeyClientConfig{}), PhoneKey: b.e.phoneKey, Log: log}
	c360, err := b.d.Customer360(pd, query.DefaultCustomer360Target)
	if err != nil {
		return nil, err
	}
	history := &projections.LogHistory{
		Index:   &timeline.Index{Target: query.DefaultTimelineTarget, Layout: b.e.layout},
		JS:      js,
		Decoder: projections.NewDecoder(b.e.layout, b.e.cat),
	}
	return projections.NewRunner(projections.Config{
		Group: scaleGroup, Instance: name, BatchSize: projectorBatch, Linger: projectorLinger, LeaseTTL: scaleLeaseTTL,
	}, projections.Deps{
		Pool: pool, JS: js, Layout: b.e.layout, Catalog: b.e.cat, History: history, Log: log, Registry: reg,
	}, timeline.New(query.DefaultTimelineTarget), c360, dedup.Projection{})
}

// resetReadModels drops the projector's read models, their checkpoints and the
// group's leases and members, so that the next run folds the log from scratch.
func (b *bench) resetReadModels(ctx context.Context) error {
	return pgx.BeginFunc(ctx, b.e.pool, func(tx pgx.Tx) error {
		for _, target := range scaleTargets {
			if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{target}.Sanitize()+" CASCADE"); err != nil {
				return fmt.Errorf("reset %s: %w", target, err)
			}
			for _, q := range []string{
				"DELETE FROM public.touchstream_migrations WHERE schema_name = $1",
				"DELETE FROM projections.checkpoints WHERE target = $1",
				"DELETE FROM projections.lag WHERE target = $1",
				"DELETE FROM projections.dead_letters WHERE target = $1",
			} {
				if _, err := tx.Exec(ctx, q, target); err != nil {
					return fmt.Errorf("reset %s: %w", target, err)
				}
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE projections.leases SET owner = NULL, expires_at = '-infinity' WHERE grp = $1", scaleGroup); err != nil {
			return fmt.Errorf("reset leases: %w", err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM projections.members WHERE grp = $1", scaleGroup); err != nil {
			return fmt.Errorf("reset members: %w", err)
		}
		return nil
	})
}

// registerMembers records the instances as live members of the group, so that each
// takes ceil(partitions / n) at its first heartbeat instead of the first one taking
// everything and handing partitions over later.
func (b *bench) registerMembers(ctx context.Context, names []string) error {
	_, err := b.e.pool.Exec(ctx, `INSERT INTO projections.members (grp, instance, seen_at)
		SELECT $1, unnest($2::text[]), now() ON CONFLICT (grp, instance) DO UPDATE SET seen_at = now()`, scaleGroup, names)
	if err != nil {
		return fmt.Errorf("register members: %w", err)
	}
	return nil
}

// appliedLeast is the fewest events any of the read models has consumed.
func (b *bench) appliedLeast(ctx context.Context) (int64, error) {
	var n int64
	err := b.e.pool.QueryRow(ctx, `SELECT coalesce(min(applied), 0) FROM (
			SELECT t.target, coalesce(sum(c.applied), 0) AS applied FROM unnest($1::text[]) AS t(target)
			LEFT JOIN projections.checkpoints c ON c.target = t.target GROUP BY t.target) s`, scaleTargets).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read checkpoints: %w", err)
	}
	return n, nil
}

// leaseShares renders how many partitions each instance holds: "22/22/20".
func (b *bench) leaseShares(ctx context.Context, names []string) (string, error) {
	rows, err := b.e.pool.Query(ctx, `SELECT owner, count(*) FROM projections.leases
		WHERE grp = $1 AND owner IS NOT NULL AND expires_at > now() GROUP BY owner`, scaleGroup)
	if err != nil {
		return "", fmt.Errorf("read leases: %w", err)
	}
	held := map[string]int64{}
	for rows.Next() {
		var o string
		var c int64
		if err := rows.Scan(&o, &c); err != nil {
			rows.Close()
			return "", err
		}
		held[o] = c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", err
	}
	cells := make([]string, len(names))
	for i, nm := range names {
		cells[i] = fmt.Sprint(held[nm])
	}
	return strings.Join(cells, "/"), nil
}
