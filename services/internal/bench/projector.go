package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/query"
)

// Projector settings: the command's defaults (buildProjector's flags).
const (
	projectorBatch  = 1000
	projectorLinger = 5 * time.Millisecond
	prepareWorkers  = 2 // doors preparing the preload, one per core
)

// dataset is the projector's data set: a history loaded into the log and, once
// caught up, folded into the read models.
type dataset struct {
	customers, events int
	bodyBytes         int64 // stored bodies, in all
	preload           measured
	caughtUp          bool
	settled           time.Duration // VACUUM (ANALYZE) and CHECKPOINT after the catch-up
}

func (d *dataset) avgBody() int64 { return d.bodyBytes / int64(max(d.events, 1)) }

// loadDataset returns the data set, preloading and folding it first if needed.
func (b *bench) loadDataset(ctx context.Context) (*dataset, error) {
	if b.ds != nil && b.ds.caughtUp {
		return b.ds, nil
	}
	b.log.Info("building the projector's data set first", "customers", b.o.Customers, "events", b.o.Events)
	ds, err := b.preload(ctx)
	if err != nil {
		return nil, err
	}
	if _, _, err := b.catchUp(ctx, ds, nil, ""); err != nil {
		return nil, err
	}
	ds.caughtUp = true
	if err := b.settle(ctx, ds); err != nil {
		return nil, err
	}
	return ds, nil
}

// settle does what an operator does after a rebuild, so that the live suites measure
// the steady state rather than the autovacuum of millions of fresh rows: drop the raw
// measurements' tables, VACUUM (ANALYZE) the read models and the key store, CHECKPOINT.
func (b *bench) settle(ctx context.Context, ds *dataset) error {
	b.log.Info("settling the database: VACUUM (ANALYZE), CHECKPOINT")
	start := time.Now()
	stmts := []string{"DROP SCHEMA IF EXISTS bench_raw CASCADE"}
	for _, t := range []pgx.Identifier{{query.DefaultCustomer360Target, "profiles"}, {query.DefaultTimelineTarget, "events"},
		{"dedup", "dedup_index"}, {"keystore", "data_keys"}, {"projections", "checkpoints"}} {
		stmts = append(stmts, "VACUUM (ANALYZE) "+t.Sanitize())
	}
	stmts = append(stmts, "CHECKPOINT")
	for _, q := range stmts {
		if _, err := b.e.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("settle: %s: %w", q, err)
		}
	}
	ds.settled = time.Since(start)
	b.log.Info("database settled", "seconds", ds.settled.Seconds())
	return nil
}

func (b *bench) projector(ctx context.Context) error {
	load := loadAverage()
	ds, err := b.preload(ctx)
	if err != nil {
		return err
	}

	// Raw limits, on the same machine, in the same run.
	fetch, fetched, err := b.rawFetch(ctx, ds)
	if err != nil {
		return err
	}
	b.log.Info("raw fetch", "messages", fetch.n, "per_s", int(fetch.rate()))
	upsertRows := max(ds.customers/5, 1000)
	upsert, err := b.pgUpsert(ctx, upsertRows)
	if err != nil {
		return err
	}
	copyRows := max(ds.events/4, 1000)
	cp, err := b.pgCopy(ctx, copyRows)
	if err != nil {
		return err
	}

	tables0 := b.tableActivity(ctx)
	pair, pairInfo, err := b.catchUp(ctx, ds, b.pairGroup, "projector-pair")
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // backends flush their table counters within a second
	profRow := b.tableActivity(ctx)[pairCustomer360+".profiles"]
	profRow0 := tables0[pairCustomer360+".profiles"]
	for _, target := range []string{pairTimeline, pairCustomer360} {
		if err := projections.DropTarget(ctx, b.e.pool, target); err != nil {
			return err
		}
	}
	if _, err := b.e.pool.Exec(ctx, "CHECKPOINT"); err != nil { // the real group starts from a clean slate
		return err
	}
	cu, info, err := b.catchUp(ctx, ds, nil, "projector-catchup")
	if err != nil {
		return err
	}
	ds.caughtUp = true
	v, err := b.verify(ctx)
	if err != nil {
		return err
	}
	if err := b.settle(ctx, ds); err != nil {
		return err
	}

	t := newTable("projector: timeline + customer360 (the measure the target is for), then the real projector group (+ dedup), catching up with Runner.CatchUp",
		"measure", "items", "seconds", "per second", "timeline+c360 ÷ this", "cpu self/machine", "target")
	t.note("%s", b.inputs("%s customers, %s events (each customer registered with name, phone, id number and address sealed, then activity: recharges, bills, payments, calls, usage, visits, complaints, updates, plan changes; %d B/event stored on average, %.0f MB in all)",
		count(ds.customers), count(ds.events), ds.avgBody(), float64(ds.bodyBytes)/1e6))
	t.note("preload: generated from the seed, prepared by events.Door (validation off: the projector validates on decode) with the real key service (%s keys created), published raw: %s s, %s events/s",
		count(v.keys), seconds(ds.preload.elapsed), perSecond(ds.preload.rate()))
	t.note("projector: the command's buildProjector (timeline, customer360 with the phone index through events.KeyClient, dedup), batches of %d, linger %s, one consumer fanned out to the runner's workers, one PostgreSQL transaction per batch; %s key requests; %s",
		projectorBatch, projectorLinger, count(info.keyRequests), info.batches)
	t.note("timeline + customer360: the same two projections as buildProjector builds them, folded into scratch versions (%s, %s) dropped afterwards; %s", pairTimeline, pairCustomer360, pairInfo.batches)
	t.note("customer360 profiles meanwhile: %s inserted, %s updated (%s of them HOT: no index touched)",
		count(profRow[3]-profRow0[3]), count(profRow[4]-profRow0[4]), count(profRow[5]-profRow0[5]))
	t.note("where timeline + customer360's time went (wall seconds per stage, summed over its workers): %s", pairInfo.stages)
	t.note("where the real group's time went: %s", info.stages)
	t.note("PostgreSQL during the catch-up: %s", info.pg)
	t.note("folded: %s profiles (doc %d B on average), %s timeline rows, %s index entries, %s events parked; then VACUUM (ANALYZE) and CHECKPOINT for the suites that follow: %s s",
		count(v.profiles), v.avgDoc, count(v.timeline), count(v.dedup), count(v.parked), seconds(ds.settled))
	t.note("raw fetch: an ordered consumer over the same stream, pulling %d at a time, reading and discarding (%.0f MB/s)", 2*sdkBatch, float64(fetched)/1e6/fetch.elapsed.Seconds())
	t.note("raw PostgreSQL: one connection, 1,000 rows per transaction; upsert = unnest INSERT ... ON CONFLICT DO UPDATE into a profile-shaped table (text key, 4 columns, %d B document in bytea, no secondary index; the real one has 6), %s new keys in order then %s existing keys in random order; COPY = timeline-shaped rows (same columns and key)",
		rawDocBytes, count(upsertRows), count(upsertRows))
	t.note("%s", b.e.durability())
	t.note("load average before: %s", load)
	t.row("raw JetStream fetch (ordered consumer, no processing)", count(fetch.n), seconds(fetch.elapsed), perSecond(fetch.rate()), ratio(pair.rate(), fetch.rate()), fetch.cpu.String(), "")
	t.row("raw PostgreSQL unnest upsert, profile-shaped", count(upsert.n), seconds(upsert.elapsed), perSecond(upsert.rate()), ratio(pair.rate(), upsert.rate()), upsert.cpu.String(), "")
	t.row("raw PostgreSQL COPY, timeline-shaped", count(cp.n), seconds(cp.elapsed), perSecond(cp.rate()), ratio(pair.rate(), cp.rate()), cp.cpu.String(), "")
	t.row("projector CatchUp, timeline + customer360", count(pair.n), seconds(pair.elapsed), perSecond(pair.rate()), "", pair.cpu.String(), verdict(pair.rate() >= 30_000, "≥ 30,000 events/s"))
	t.row("projector CatchUp, the real group (timeline + customer360 + dedup)", count(cu.n), seconds(cu.elapsed), perSecond(cu.rate()), "", cu.cpu.String(), "")
	return t.write(b.out)
}

// rawFetch reads the whole data set from the log with an ordered consumer, doing
// nothing with it: the log's read limit on this machine. It returns the bytes read.
func (b *bench) rawFetch(ctx context.Context, ds *dataset) (measured, int64, error) {
	var fetched int64
	fetch, err := timed(ds.events, func() error {
		var err error
		fetched, err = fetchRaw(ctx, b.e.js, b.e.layout.Streams[0].Name, ds.events, func(i int) {
			b.log.Debug("raw fetch", "messages", i)
		})
		return err
	})
	return fetch, fetched, err
}

// preload loads the data set into a fresh log: the history generated from the seed,
// prepared by doors with the real key service in parallel, published raw in order.
func (b *bench) preload(ctx context.Context) (*dataset, error) {
	if err := b.e.resetStream(ctx); err != nil {
		return nil, err
	}
	nc, err := b.e.connect("touchstream-bench-preload")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := rawJetStream(nc)
	if err != nil {
		return nil, err
	}
	ds := &dataset{customers: b.o.Customers, events: max(b.o.Events, b.o.Customers)}
	door := b.door(false, events.NewKeyClient(nc, events.KeyClientConfig{}))
	h := newHistory(b.o.Seed, ds.events, ds.customers)

	type prepared struct {
		msgs []*events.Message
		err  error
	}
	type job struct {
		evs []*events.Event
		out chan prepared
	}
	jobs := make(chan job, 2*prepareWorkers)
	order := make(chan chan prepared, 4*prepareWorkers)
	var published atomic.Int64
	stop := every(5*time.Second, func() {
		b.log.Info("preload", "published", published.Load(), "of", ds.events)
	})
	defer stop()
	ds.preload, err = timed(ds.events, func() error {
		g, gctx := errgroup.WithContext(ctx)
		for range prepareWorkers {
			g.Go(func() error {
				for j := range jobs {
					msgs, errs := door.Prepare(gctx, j.evs)
					var err error
					for i, e := range errs {
						if e != nil {
							err = fmt.Errorf("prepare %s (%s): %w", j.evs[i].ID, j.evs[i].Type, e)
							break
						}
					}
					j.out <- prepared{msgs, err}
				}
				return nil
			})
		}
		g.Go(func() error {
			p := newAsyncPublisher(js, make(chan struct{}, inFlight))
			for out := range order {
				r := <-out
				if r.err != nil {
					_ = p.wait()
					return r.err
				}
				for _, m := range r.msgs {
					if err := p.publish(gctx, m.NatsMsg()); err != nil {
						_ = p.wait()
						return err
					}
					ds.bodyBytes += int64(len(m.Body))
				}
				published.Add(int64(len(r.msgs)))
			}
			return p.wait()
		})
		g.Go(func() error {
			defer close(jobs)
			defer close(order)
			for {
				evs := make([]*events.Event, 0, sdkBatch)
				for len(evs) < sdkBatch {
					e := h.next()
					if e == nil {
						break
					}
					evs = append(evs, e)
				}
				if len(evs) == 0 {
					return nil
				}
				out := make(chan prepared, 1)
				select {
				case order <- out:
				case <-gctx.Done():
					return gctx.Err()
				}
				select {
				case jobs <- job{evs, out}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		})
		return g.Wait()
	})
	if err != nil {
		return nil, fmt.Errorf("preload: %w", err)
	}
	b.log.Info("preload done", "events", ds.events, "seconds", ds.preload.elapsed.Seconds(), "events_per_s", int(ds.preload.rate()))
	if err := b.checkStored(ctx, ds.events); err != nil {
		return nil, err
	}
	b.ds = ds
	return ds, nil
}

// The measure of the projector: timeline and customer360 together, folded into
// scratch versions beside the real group's.
const (
	pairTimeline    = "timeline_v90"
	pairCustomer360 = "customer360_v90"
)

// pairGroup builds the timeline and customer360 alone, configured as buildProjector
// configures them, into the scratch versions.
func (b *bench) pairGroup(d ProjectorDeps) (*projections.Runner, error) {
	if b.d.Customer360 == nil {
		return nil, fmt.Errorf("projector suite: Deps.Customer360 is required")
	}
	c360, err := b.d.Customer360(d, pairCustomer360)
	if err != nil {
		return nil, err
	}
	return projections.NewRunner(projections.Config{Group: "bench-pair", BatchSize: projectorBatch, Linger: projectorLinger},
		projections.Deps{Pool: d.Pool, JS: d.JS, Layout: d.Layout, Catalog: d.Catalog, Log: d.Log, Registry: d.Registry,
			History: &projections.LogHistory{Index: &timeline.Index{Target: pairTimeline, Layout: d.Layout}, JS: d.JS,
				Decoder: projections.NewDecoder(d.Layout, d.Catalog)}}, timeline.New(pairTimeline), c360)
}

// catchUp folds the data set with the real projector group (nil build: b.d.Projector)
// and Runner.CatchUp; a non-empty profile names the CPU profile written meanwhile.
func (b *bench) catchUp(ctx context.Context, ds *dataset, build func(ProjectorDeps) (*projections.Runner, error), profile string) (measured, catchUpInfo, error) {
	if build == nil {
		build = b.d.Projector
	}
	pool, err := b.e.newPool(ctx, 16)
	if err != nil {
		return measured{}, catchUpInfo{}, err
	}
	defer pool.Close()
	nc, err := b.e.connect("touchstream-bench-projector")
	if err != nil {
		return measured{}, catchUpInfo{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return measured{}, catchUpInfo{}, err
	}
	keys := events.NewKeyClient(nc, events.KeyClientConfig{})
	reg := prometheus.NewRegistry()
	runner, err := build(ProjectorDeps{Registry: reg, Pool: pool, NC: nc, JS: js, Layout: b.e.layout, Catalog: b.e.cat,
		Keys: keys, PhoneKey: b.e.phoneKey, Log: b.svcLog.With("service", "projector")})
	if err != nil {
		return measured{}, catchUpInfo{}, err
	}
	if err := runner.Prepare(ctx); err != nil { // migrations, outside the measurement
		return measured{}, catchUpInfo{}, err
	}
	var applied, lastSeq atomic.Int64
	stop := every(5*time.Second, func() {
		b.log.Info("catch-up", "events", applied.Load(), "of", ds.events, "last_seq", lastSeq.Load())
	})
	progress := func(seq, _ uint64, n int) {
		applied.Add(int64(n))
		lastSeq.Store(int64(seq))
	}
	pg0, err := b.pgActivity(ctx)
	if err != nil {
		return measured{}, catchUpInfo{}, err
	}
	var m measured
	run := func() error {
		m, err = timed(ds.events, func() error { return runner.CatchUp(ctx, progress) })
		return err
	}
	if profile != "" {
		err = b.profile(profile, run)
	} else {
		err = run()
	}
	stop()
	if err != nil {
		return m, catchUpInfo{}, fmt.Errorf("catch-up: %w", err)
	}
	if got := applied.Load(); got != int64(ds.events) {
		return m, catchUpInfo{}, fmt.Errorf("catch-up read %d events, the log holds %d", got, ds.events)
	}
	pg1, err := b.pgActivity(ctx)
	if err != nil {
		return m, catchUpInfo{}, err
	}
	b.log.Info("catch-up done", "events", ds.events, "seconds", m.elapsed.Seconds(), "events_per_s", int(m.rate()))
	return m, catchUpInfo{keyRequests: keys.Requests(), batches: readBatches(reg).since(batchStats{}), pg: pg0.until(pg1),
		stages: readStages(reg)}, nil
}

// catchUpInfo is what a catch-up did besides folding.
type catchUpInfo struct {
	keyRequests uint64
	batches     string // from the runner's metrics
	stages      string // from the runner's metrics
	pg          string // PostgreSQL's activity meanwhile
}

// folded is what the read models hold after a catch-up.
type folded struct {
	profiles, timeline, dedup, parked, keys int64
	avgDoc                                  int
}

func (b *bench) verify(ctx context.Context) (folded, error) {
	var f folded
	var avg *float64
	err := b.e.pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM `+pgx.Identifier{query.DefaultCustomer360Target, "profiles"}.Sanitize()+`),
			(SELECT avg(pg_column_size(doc)) FROM `+pgx.Identifier{query.DefaultCustomer360Target, "profiles"}.Sanitize()+`),
			(SELECT count(*) FROM `+pgx.Identifier{query.DefaultTimelineTarget, "events"}.Sanitize()+`),
			(SELECT count(*) FROM dedup.dedup_index),
			(SELECT count(*) FROM projections.dead_letters),
			(SELECT count(*) FROM keystore.data_keys)`).Scan(&f.profiles, &avg, &f.timeline, &f.dedup, &f.parked, &f.keys)
	if err != nil {
		return f, fmt.Errorf("verify read models: %w", err)
	}
	if avg != nil {
		f.avgDoc = int(*avg)
	}
	if f.parked > 0 {
		b.log.Warn("events were parked while folding the data set: the generator makes something a projection refuses", "parked", f.parked)
	}
	return f, nil
}

// rawDocBytes is the size of the document (JSON in bytea, as customer360 stores it)
// of the raw upsert's rows.
const rawDocBytes = 400

// rawDoc is a profile-like JSON document of about rawDocBytes bytes.
func rawDoc(rng *rand.Rand, id string, seq int64) string {
	doc := map[string]any{
		"customer_id": id, "tier": "silver", "lifecycle": "active", "region": "CN-GD-SZ", "seq": seq,
		"channels":      map[string]any{"urn:touchstream:channel:recharge": map[string]any{"count": rng.IntN(50), "last": "2026-10-12T10:00:00+08:00"}},
		"monthly_spend": map[string]int{"2026-09": rng.IntN(30000), "2026-10": rng.IntN(30000)},
		"events_total":  rng.IntN(500),
	}
	b, _ := json.Marshal(doc)
	if pad := rawDocBytes - len(b) - len(`,"pad":""`); pad > 0 {
		doc["pad"] = strings.Repeat("x", pad)
		b, _ = json.Marshal(doc)
	}
	return string(b)
}

// pgUpsert measures multi-row unnest upserts of 1,000 rows per transaction into a
// profile-shaped table: rows new keys in order, then the same keys again in random
// order, on one connection.
func (b *bench) pgUpsert(ctx context.Context, rows int) (measured, error) {
	conn, err := b.e.pool.Acquire(ctx)
	if err != nil {
		return measured{}, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS bench_raw;
		DROP TABLE IF EXISTS bench_raw.profiles;
		CREATE TABLE bench_raw.profiles (customer_id text COLLATE "C" PRIMARY KEY, partition int NOT NULL, tier text NOT NULL,
			seq bigint NOT NULL, last_event_time timestamptz NOT NULL, doc bytea NOT NULL) WITH (fillfactor = 80)`); err != nil {
		return measured{}, fmt.Errorf("raw upsert table: %w", err)
	}
	rng := rand.New(rand.NewPCG(b.o.Seed, 99))
	order := make([]int, 2*rows)
	for i := range rows {
		order[i] = i
	}
	perm := rng.Perm(rows)
	copy(order[rows:], perm)
	// Documents are built before the clock starts.
	docs := make([][]byte, len(order))
	ids := make([]string, len(order))
	for i, c := range order {
		ids[i] = customerID(c)
		docs[i] = []byte(rawDoc(rng, ids[i], int64(i)))
	}
	b.log.Info("raw postgres upsert", "rows", len(order))
	m, err := timed(len(order), func() error {
		for start := 0; start < len(order); start += projectorBatch {
			end := min(start+projectorBatch, len(order))
			n := end - start
			parts, tiers, seqs, times := make([]int32, n), make([]string, n), make([]int64, n), make([]time.Time, n)
			for i := range n {
				parts[i], tiers[i], seqs[i], times[i] = int32((start+i)%64), "silver", int64(start+i), epoch
			}
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO bench_raw.profiles AS t (customer_id, partition, tier, seq, last_event_time, doc)
					SELECT u.id, u.part, u.tier, u.seq, u.at, u.doc
					FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::timestamptz[], $6::bytea[]) AS u(id, part, tier, seq, at, doc)
					ON CONFLICT (customer_id) DO UPDATE SET partition = excluded.partition, tier = excluded.tier, seq = excluded.seq,
						last_event_time = excluded.last_event_time, doc = excluded.doc`,
					ids[start:end], parts, tiers, seqs, times, docs[start:end])
				return err
			})
			if err != nil {
				return fmt.Errorf("raw upsert: %w", err)
			}
		}
		return nil
	})
	b.log.Info("raw postgres upsert done", "rows_per_s", int(m.rate()))
	return m, err
}

// pgCopy measures COPY of timeline-shaped rows, 1,000 per transaction, on one
// connection.
func (b *bench) pgCopy(ctx context.Context, rows int) (measured, error) {
	conn, err := b.e.pool.Acquire(ctx)
	if err != nil {
		return measured{}, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS bench_raw;
		DROP TABLE IF EXISTS bench_raw.events;
		CREATE TABLE bench_raw.events (customer_id text NOT NULL, event_time timestamptz NOT NULL, seq bigint NOT NULL,
			stream text NOT NULL, partition int NOT NULL, stored_at timestamptz NOT NULL, type text NOT NULL, source text NOT NULL,
			event_id text NOT NULL, data jsonb NOT NULL, retracted_by bigint, retraction_reason text,
			PRIMARY KEY (customer_id, event_time, seq))`); err != nil {
		return measured{}, fmt.Errorf("raw copy table: %w", err)
	}
	g := newGenerator(b.o.Seed, 98)
	columns := []string{"customer_id", "event_time", "seq", "stream", "partition", "stored_at", "type", "source", "event_id", "data"}
	all := make([][]any, rows)
	for i := range all {
		c := customerID(g.rng.IntN(max(b.o.Customers, 1)))
		t := at(i, rows)
		e := g.recharge(c, t)
		all[i] = []any{c, t, int64(i + 1), "TOUCHPOINTS", int32(events.Partition(c, 64)), t, e.Type, e.Source, e.ID, json.RawMessage(e.Data)}
	}
	b.log.Info("raw postgres copy", "rows", rows)
	m, err := timed(rows, func() error {
		for start := 0; start < rows; start += projectorBatch {
			end := min(start+projectorBatch, rows)
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				_, err := tx.CopyFrom(ctx, pgx.Identifier{"bench_raw", "events"}, columns, pgx.CopyFromRows(all[start:end]))
				return err
			})
			if err != nil {
				return fmt.Errorf("raw copy: %w", err)
			}
		}
		return nil
	})
	b.log.Info("raw postgres copy done", "rows_per_s", int(m.rate()))
	return m, err
}

// readStages summarises touchstream_projection_stage_seconds_total: seconds per stage
// of the runner's fold loop, largest first.
func readStages(reg *prometheus.Registry) string {
	mfs, err := reg.Gather()
	if err != nil {
		return "unavailable"
	}
	type stage struct {
		name string
		secs float64
	}
	var all []stage
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != "touchstream_projection_stage_seconds_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" {
					all = append(all, stage{l.GetValue(), m.GetCounter().GetValue()})
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].secs > all[j].secs })
	var parts []string
	for _, st := range all {
		parts = append(parts, fmt.Sprintf("%s %.1f s (%.0f%%)", st.name, st.secs, 100*st.secs/max(total, 1e-9)))
	}
	return strings.Join(parts, ", ")
}
