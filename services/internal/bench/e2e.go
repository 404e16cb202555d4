package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/query"
)

// End-to-end settings.
const (
	e2eRate        = 2000 // events per second
	e2eTick        = 10 * time.Millisecond
	e2eWarmUp      = 3 * time.Second
	e2eDuration    = 30 * time.Second
	e2eSampleEvery = 50                     // every 50th event is followed until visible (40 a second)
	e2ePoll        = 10 * time.Millisecond  // poll interval while the latency is under e2eFine
	e2eFine        = 300 * time.Millisecond // beyond it, the interval grows by half each poll, to at most e2ePollMax
	e2ePollMax     = time.Second
	e2eGiveUp      = 30 * time.Second
	e2eRawTime     = 10 * time.Second
)

func (b *bench) e2e(ctx context.Context) error {
	ds, err := b.loadDataset(ctx)
	if err != nil {
		return err
	}
	load := loadAverage()
	perTick := int(e2eRate * e2eTick.Seconds())
	ticks := int((e2eWarmUp + e2eDuration) / e2eTick)
	warmTicks := int(e2eWarmUp / e2eTick)

	// The events, generated before the clock starts; each is stamped with the time it
	// is due when sent.
	gen := newLive(b.o.Seed, ds.customers)
	batches := make([][]*events.Event, ticks)
	for i := range batches {
		batches[i] = make([]*events.Event, perTick)
		for j := range batches[i] {
			batches[i][j] = gen.next(time.Now())
		}
	}
	keys := map[string]string{} // source -> API key
	for _, batch := range batches {
		for _, e := range batch {
			if _, ok := keys[e.Source]; !ok {
				k, err := b.channelKey(e.Source)
				if err != nil {
					return err
				}
				keys[e.Source] = k
			}
		}
	}

	// The services, as they run in production, in order of the data flow.
	gwURL, stopGateway, err := b.startGateway(ctx, nil)
	if err != nil {
		return err
	}
	stopProjector, reg, err := b.startProjector(ctx)
	if err != nil {
		stopGateway()
		return err
	}
	api, apiToken, stopQuery, err := b.startQuery(ctx)
	if err != nil {
		stopProjector()
		stopGateway()
		return err
	}
	client := newClient()
	stopAll := func() {
		client.CloseIdleConnections()
		stopQuery()
		stopProjector()
		stopGateway()
	}

	// Warm up until the projector has caught up and folds live events.
	if err := b.waitLive(ctx, client, gwURL, api, apiToken, keys, gen); err != nil {
		stopAll()
		return err
	}

	var acks, visible latencies
	var stored, polls atomic.Int64
	lagStop, lagResult := b.watchLag(ctx)
	pg0, err := b.pgActivity(ctx)
	if err != nil {
		stopAll()
		return err
	}
	tables0 := b.tableActivity(ctx)
	batches0 := readBatches(reg)
	var c0 cpuSample
	b.log.Info("end to end", "events_per_s", e2eRate, "seconds", e2eDuration.Seconds())
	_, sched := openLoop(ctx, float64(time.Second/e2eTick), e2eWarmUp+e2eDuration, func(i int, due time.Time) {
		if i >= ticks {
			return
		}
		record := i >= warmTicks
		if i == warmTicks {
			c0 = sampleCPU()
		}
		batch := batches[i]
		byKey := map[string][]int{}
		for j, e := range batch {
			e.Time = due
			byKey[keys[e.Source]] = append(byKey[keys[e.Source]], j)
		}
		seqs := make([]uint64, len(batch))
		var wg sync.WaitGroup
		for key, idx := range byKey {
			wg.Add(1)
			go func() {
				defer wg.Done()
				evs := make([]*events.Event, len(idx))
				for k, j := range idx {
					evs[k] = batch[j]
				}
				r, err := post(ctx, client, gwURL, key, batchBody(evs))
				if err != nil || r.Stored != len(evs) {
					if record {
						acks.fail()
					}
					if err == nil {
						err = fmt.Errorf("stored %d of %d", r.Stored, len(evs))
					}
					b.log.Warn("gateway request failed", "error", err)
					return
				}
				if record {
					acks.add(time.Since(due))
					stored.Add(int64(len(evs)))
				}
				for _, res := range r.Results {
					seqs[idx[res.Index]] = res.Seq
				}
			}()
		}
		wg.Wait()
		if !record {
			return
		}
		// Every e2eSampleEvery-th event of the schedule.
		for j := range batch {
			if (i*perTick+j)%e2eSampleEvery != 0 {
				continue
			}
			if seqs[j] == 0 {
				visible.fail()
				continue
			}
			n, err := pollVisible(ctx, client, api, apiToken, batch[j].Subject, seqs[j], due)
			polls.Add(int64(n))
			if err != nil {
				visible.fail()
				b.log.Warn("event not visible", "customer_id", batch[j].Subject, "stream_seq", seqs[j], "error", err)
				continue
			}
			visible.add(time.Since(due))
		}
	})
	c1 := sampleCPU()
	window := sched - e2eWarmUp // the recorded part of the schedule
	lagStop()
	lag := lagResult()
	pg1, err := b.pgActivity(ctx)
	if err != nil {
		stopAll()
		return err
	}
	b.logTableActivity(tables0, b.tableActivity(ctx))
	batchInfo := readBatches(reg).since(batches0)
	stopAll()

	raw, err := b.rawLatency(ctx, perTick, int(ds.avgBody()))
	if err != nil {
		return err
	}

	ack, vis := acks.summarize(), visible.summarize()
	t := newTable("end to end: publish → visible in the query API, at a steady rate",
		"measure", "samples", "events/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "p99 ÷ raw p99", "target")
	t.note("%s", b.inputs("%s events/s for %d s after %d s of warm-up, %d events every %s (activity of random customers of the %s-customer population), each tick's events grouped by channel into one HTTP batch per channel with that channel's dev key",
		count(e2eRate), int(e2eDuration.Seconds()), int(e2eWarmUp.Seconds()), perTick, e2eTick, count(ds.customers)))
	t.note("running together: gateway (HTTP, real clock, idempotency index lookup), projector group (Runner.Run, leases, batches of %d, linger %s), query API, key service, embedded nats-server, PostgreSQL",
		projectorBatch, projectorLinger)
	t.note("visible: every %dth event, after the gateway acknowledged it with its stream sequence, GET /v1/customers/{id} every %s (after %s, 1.5 times longer each time, up to %s) until the profile's seq reaches it: %s GETs, %s/s of added load; latencies from the time the event was due to be sent",
		e2eSampleEvery, e2ePoll, e2eFine, e2ePollMax, count(polls.Load()), perSecond(float64(polls.Load())/window.Seconds()))
	t.note("the database was settled after the catch-up (VACUUM (ANALYZE), CHECKPOINT: %s s); the live events are new rows on top of it", seconds(ds.settled))
	t.note("raw: the same rate and message size (%d B) published with jetstream PublishAsync to a stream of its own, delivered to an ordered consumer, every %dth message timed", ds.avgBody(), e2eSampleEvery)
	t.note("projector: %s; lag (stream's last sequence - highest sequence customer360 applied), sampled every %s: p50 %s events, p90 %s, max %s",
		batchInfo, lagEvery, count(lag.p50), count(lag.p90), count(lag.max))
	t.note("PostgreSQL during the measurement: %s", pg0.until(pg1))
	t.note("cpu during the measurement: %s cores (self/machine); %s", c0.until(c1), b.e.durability())
	t.note("load average before: %s", load)
	t.row("raw JetStream publish → ordered consumer delivery", count(raw.lat.n), perSecond(raw.achieved), millis(raw.lat.p50), millis(raw.lat.p90), millis(raw.lat.p99), millis(raw.lat.pMax), count(raw.lat.errors), ratio(1, 1), "")
	t.row("gateway acknowledgement (HTTP batch stored)", count(ack.n), perSecond(float64(stored.Load())/window.Seconds()), millis(ack.p50), millis(ack.p90), millis(ack.p99), millis(ack.pMax), count(ack.errors), ratio(float64(ack.p99), float64(raw.lat.p99)), "")
	t.row("publish → visible in GET /v1/customers/{id}", count(vis.n), "", millis(vis.p50), millis(vis.p90), millis(vis.p99), millis(vis.pMax), count(vis.errors), ratio(float64(vis.p99), float64(raw.lat.p99)),
		verdict(vis.n > 0 && vis.p99 < 250*time.Millisecond, "p99 < 250 ms"))
	return t.write(b.out)
}

// pgActivity is a reading of PostgreSQL's buffer, checkpoint, WAL and commit counters.
type pgActivity struct {
	commits, blksRead, blksHit, bufBackend, bufClean, bufCheckpoint, timed, requested, walBytes, walFPI int64
}

func (b *bench) pgActivity(ctx context.Context) (pgActivity, error) {
	var a pgActivity
	err := b.e.pool.QueryRow(ctx, `SELECT d.xact_commit, d.blks_read, d.blks_hit, w.buffers_backend, w.buffers_clean, w.buffers_checkpoint,
			w.checkpoints_timed, w.checkpoints_req, l.wal_bytes::bigint, l.wal_fpi
		FROM pg_stat_database d, pg_stat_bgwriter w, pg_stat_wal l WHERE d.datname = current_database()`).Scan(
		&a.commits, &a.blksRead, &a.blksHit, &a.bufBackend, &a.bufClean, &a.bufCheckpoint, &a.timed, &a.requested, &a.walBytes, &a.walFPI)
	if err != nil {
		return a, fmt.Errorf("postgres activity: %w", err)
	}
	return a, nil
}

// until describes the activity between two readings.
func (a pgActivity) until(b pgActivity) string {
	return fmt.Sprintf("%s commits; %s blocks read from outside shared_buffers, %s hit; buffers written by backends %s, by the background writer %s, by checkpoints %s; checkpoints: %d timed, %d requested; WAL %s MB, %s full-page images (cluster-wide counters)",
		count(b.commits-a.commits), count(b.blksRead-a.blksRead), count(b.blksHit-a.blksHit),
		count(b.bufBackend-a.bufBackend), count(b.bufClean-a.bufClean), count(b.bufCheckpoint-a.bufCheckpoint),
		b.timed-a.timed, b.requested-a.requested, count((b.walBytes-a.walBytes)/1_000_000), count(b.walFPI-a.walFPI))
}

// tableActivity reads the per-table access counters, for the debug log.
func (b *bench) tableActivity(ctx context.Context) map[string][6]int64 {
	out := map[string][6]int64{}
	rows, err := b.e.pool.Query(ctx, `SELECT schemaname || '.' || relname, coalesce(seq_scan, 0), coalesce(seq_tup_read, 0),
			coalesce(idx_scan, 0), n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables`)
	if err != nil {
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var v [6]int64
		if rows.Scan(&name, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) == nil {
			out[name] = v
		}
	}
	return out
}

func (b *bench) logTableActivity(before, after map[string][6]int64) {
	for name, a := range after {
		z := before[name]
		if a == z {
			continue
		}
		b.log.Debug("table activity", "table", name, "seq_scan", a[0]-z[0], "seq_tup_read", a[1]-z[1], "idx_scan", a[2]-z[2],
			"inserted", a[3]-z[3], "updated", a[4]-z[4], "hot_updated", a[5]-z[5])
	}
}

// lagEvery is how often watchLag samples the projector's lag.
const lagEvery = 500 * time.Millisecond

// lagSummary is the distribution of the projector's lag, in events.
type lagSummary struct{ p50, p90, max int64 }

// watchLag samples how far the projector is behind the log (the stream's last
// sequence minus the highest sequence customer360 has applied), until stopped.
func (b *bench) watchLag(ctx context.Context) (stop func(), result func() lagSummary) {
	var mu sync.Mutex
	var lags []int64
	stop = every(lagEvery, func() {
		st, err := b.e.js.Stream(ctx, b.e.layout.Streams[0].Name)
		if err != nil {
			return
		}
		var applied int64
		if err := b.e.pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM projections.checkpoints WHERE target = $1`,
			query.DefaultCustomer360Target).Scan(&applied); err != nil {
			return
		}
		lag := max(int64(st.CachedInfo().State.LastSeq)-applied, 0)
		b.log.Debug("projector lag", "events", lag)
		mu.Lock()
		lags = append(lags, lag)
		mu.Unlock()
	})
	return stop, func() lagSummary {
		mu.Lock()
		defer mu.Unlock()
		if len(lags) == 0 {
			return lagSummary{}
		}
		s := slices.Clone(lags)
		slices.Sort(s)
		return lagSummary{p50: s[len(s)/2], p90: s[len(s)*9/10], max: s[len(s)-1]}
	}
}

// batchStats are the projector's batches so far, from its metrics.
type batchStats struct {
	batches      uint64
	events, secs float64
}

// readBatches reads the runner's batch histograms.
func readBatches(reg *prometheus.Registry) batchStats {
	var s batchStats
	mfs, err := reg.Gather()
	if err != nil {
		return s
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			switch mf.GetName() {
			case "touchstream_projection_batch_seconds":
				s.batches, s.secs = s.batches+h.GetSampleCount(), s.secs+h.GetSampleSum()
			case "touchstream_projection_batch_events":
				s.events += h.GetSampleSum()
			}
		}
	}
	return s
}

// since describes the batches between two readings.
func (s batchStats) since(a batchStats) string {
	n := s.batches - a.batches
	if n == 0 {
		return "no batches"
	}
	return fmt.Sprintf("%s batches, %.0f events and %s ms each on average",
		count(n), (s.events-a.events)/float64(n), millis(time.Duration((s.secs-a.secs)/float64(n)*float64(time.Second))))
}

// startProjector runs the real projector group with Runner.Run, as the projector
// service does, and returns its metrics registry.
func (b *bench) startProjector(ctx context.Context) (func(), *prometheus.Registry, error) {
	pool, err := b.e.newPool(ctx, 16)
	if err != nil {
		return nil, nil, err
	}
	nc, err := b.e.connect("touchstream-bench-projector")
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		pool.Close()
		return nil, nil, err
	}
	reg := prometheus.NewRegistry()
	runner, err := b.d.Projector(ProjectorDeps{Registry: reg, Pool: pool, NC: nc, JS: js, Layout: b.e.layout, Catalog: b.e.cat,
		Keys: events.NewKeyClient(nc, events.KeyClientConfig{}), PhoneKey: b.e.phoneKey, Log: b.svcLog.With("service", "projector")})
	if err != nil {
		nc.Close()
		pool.Close()
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- runner.Run(rctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			b.log.Warn("projector stopped with an error", "error", err)
		}
		nc.Close()
		pool.Close()
	}, reg, nil
}

// waitLive sends single events until one is visible within a second of its
// acknowledgement: the projector holds its leases and folds live.
func (b *bench) waitLive(ctx context.Context, client *http.Client, gwURL, api, token string, keys map[string]string, gen *live) error {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		e := gen.next(time.Now())
		key, ok := keys[e.Source]
		if !ok {
			continue
		}
		r, err := post(ctx, client, gwURL, key, batchBody([]*events.Event{e}))
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if len(r.Results) != 1 || r.Stored != 1 {
			return fmt.Errorf("warm-up: event not stored: %+v", r)
		}
		sent := time.Now()
		if _, err := pollVisible(ctx, client, api, token, e.Subject, r.Results[0].Seq, sent); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if time.Since(sent) < time.Second {
			return nil
		}
		b.log.Info("waiting for the projector to fold live", "lag", time.Since(sent).String())
	}
	return errors.New("warm-up: the projector did not fold live events within 3 minutes")
}

// pollVisible GETs the customer's profile every e2ePoll until its seq reaches seq, and
// returns how many GETs it took.
func pollVisible(ctx context.Context, client *http.Client, api, token, customer string, seq uint64, since time.Time) (int, error) {
	var body struct {
		Profile struct {
			Seq uint64 `json:"seq"`
		} `json:"profile"`
	}
	wait := e2ePoll
	for n := 1; ; n++ {
		status, raw, err := getJSON(ctx, client, api+"/v1/customers/"+customer, token)
		if err != nil {
			return n, err
		}
		if status == http.StatusOK {
			if err := json.Unmarshal(raw, &body); err != nil {
				return n, err
			}
			if body.Profile.Seq >= seq {
				return n, nil
			}
		} else if status != http.StatusNotFound {
			return n, fmt.Errorf("query API answered %d", status)
		}
		if time.Since(since) > e2eGiveUp {
			return n, fmt.Errorf("seq %d not visible after %s", seq, e2eGiveUp)
		}
		if time.Since(since) > e2eFine {
			wait = min(wait*3/2, e2ePollMax)
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// rawLatency measures publish → delivery through JetStream alone at the e2e rate:
// messages of the given size published asynchronously to a stream of their own and
// read by an ordered consumer; every e2eSampleEvery-th is timed from when it was due.
func (b *bench) rawLatency(ctx context.Context, perTick, size int) (openLoopRun, error) {
	const name = "BENCH_RAW_LATENCY"
	if _, err := b.e.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"benchraw.>"},
		Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy}); err != nil {
		return openLoopRun{}, fmt.Errorf("raw latency stream: %w", err)
	}
	defer func() { _ = b.e.js.DeleteStream(context.WithoutCancel(ctx), name) }()
	nc, err := b.e.connect("touchstream-bench-rawlatency")
	if err != nil {
		return openLoopRun{}, err
	}
	defer nc.Close()
	js, err := rawJetStream(nc)
	if err != nil {
		return openLoopRun{}, err
	}
	cons, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return openLoopRun{}, err
	}
	var lat latencies
	var received atomic.Int64
	warm := int(e2eWarmUp/e2eTick) * perTick
	cc, err := cons.Consume(func(m jetstream.Msg) {
		d := m.Data()
		i := int(binary.BigEndian.Uint64(d[0:8]))
		due := time.Unix(0, int64(binary.BigEndian.Uint64(d[8:16])))
		if i >= warm && i%e2eSampleEvery == 0 {
			lat.add(time.Since(due))
		}
		received.Add(1)
	})
	if err != nil {
		return openLoopRun{}, err
	}
	defer cc.Stop()
	size = max(size, 16)
	var c0, c1 cpuSample
	var sent, sentWarm atomic.Int64
	b.log.Info("raw publish → delivery latency", "events_per_s", e2eRate, "seconds", e2eRawTime.Seconds())
	_, sched := openLoop(ctx, float64(time.Second/e2eTick), e2eWarmUp+e2eRawTime, func(t int, due time.Time) {
		if t == int(e2eWarmUp/e2eTick) {
			c0 = sampleCPU()
			sentWarm.Store(sent.Load())
		}
		for j := range perTick {
			data := make([]byte, size)
			binary.BigEndian.PutUint64(data[0:8], uint64(t*perTick+j))
			binary.BigEndian.PutUint64(data[8:16], uint64(due.UnixNano()))
			if _, err := js.PublishAsync("benchraw.tp", data); err != nil {
				lat.fail()
				continue
			}
			sent.Add(1)
		}
	})
	c1 = sampleCPU()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		return openLoopRun{}, errors.New("raw latency: publishes not acknowledged within 30s")
	}
	for deadline := time.Now().Add(30 * time.Second); received.Load() < sent.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	s := lat.summarize()
	return openLoopRun{lat: s, achieved: float64(sent.Load()-sentWarm.Load()) / (sched - e2eWarmUp).Seconds(), cpu: c0.until(c1)}, nil
}
