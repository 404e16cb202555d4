package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/services/internal/gateway"
)

// Ingest settings.
const (
	ingestProducers = 2   // SDK and raw producers, one per core of the reference machine
	ingestRounds    = 3   // rounds of every run but the one creating keys; the best is kept
	gatewayClients  = 4   // concurrent HTTP clients of the gateway
	gatewayBatch    = 500 // events per HTTP request
)

// measured is one timed run.
type measured struct {
	n       int
	elapsed time.Duration
	cpu     cpuUse
	keys    keyUse  // what an SDK run asked of the key service
	lat     summary // per-request latency of a gateway run
	spread  float64 // best of several rounds: (best - worst) / best rate
}

func (m measured) rate() float64 { return float64(m.n) / m.elapsed.Seconds() }

// µs is the time per item in microseconds.
func (m measured) µs() float64 { return m.elapsed.Seconds() * 1e6 / float64(m.n) }

// timed runs fn and measures it.
func timed(n int, fn func() error) (measured, error) {
	c0 := sampleCPU()
	err := fn()
	c1 := sampleCPU()
	return measured{n: n, elapsed: c1.at.Sub(c0.at), cpu: c0.until(c1)}, err
}

// best keeps the fastest of several rounds of one run and records their spread.
func best(rounds []measured) measured {
	b, worst := rounds[0], rounds[0].rate()
	for _, m := range rounds[1:] {
		if m.rate() > b.rate() {
			b = m
		}
		worst = min(worst, m.rate())
	}
	b.spread = (b.rate() - worst) / b.rate()
	return b
}

// spread renders the spread of a best-of-rounds figure.
func (m measured) spreadCell() string {
	if m.spread == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*m.spread)
}

// ingestSets are the ingest suite's inputs.
type ingestSets struct {
	customers int
	recharge  []*events.Event // A: recharge.completed
	personal  []*events.Event // B: half with personal fields
	plain     []*events.Event // C: none
}

func (b *bench) ingest(ctx context.Context) error {
	s := ingestSets{customers: min(100_000, b.o.Customers)}
	s.recharge = rechargeSet(b.o.Seed, min(200_000, b.o.Events), s.customers)
	s.personal = personalSet(b.o.Seed, min(100_000, max(b.o.Events/2, 1)), s.customers)
	s.plain = plainSet(b.o.Seed, len(s.personal), s.customers)
	if err := dedup.Migrate(ctx, b.e.pool); err != nil { // the gateway's idempotency index
		return err
	}
	load := loadAverage()

	// A: the same recharges through every door, in interleaved rounds.
	msgsA, err := prepareAll(ctx, b.door(false, nil), s.recharge)
	if err != nil {
		return err
	}
	// Warm-up, not measured: the first stream of a fresh server, the heap's growth.
	if _, err := b.rawRun(ctx, "warm-up", msgsA[:min(len(msgsA), 50_000)], ""); err != nil {
		return err
	}
	var rawR, offR, onR, gwR []measured
	for r := range ingestRounds {
		prof := func(name string) string {
			if r == 0 {
				return name
			}
			return ""
		}
		m, err := b.rawRun(ctx, "raw A", msgsA, prof("ingest-raw"))
		if err != nil {
			return err
		}
		rawR = append(rawR, m)
		if m, err = b.sdkRun(ctx, "SDK A validation off", s.recharge, false, false, prof("ingest-sdk")); err != nil {
			return err
		}
		offR = append(offR, m)
		if m, err = b.sdkRun(ctx, "SDK A validation on", s.recharge, true, false, prof("ingest-sdk-validated")); err != nil {
			return err
		}
		onR = append(onR, m)
		if m, err = b.gatewayRun(ctx, s.recharge, prof("ingest-gateway")); err != nil {
			return err
		}
		gwR = append(gwR, m)
	}
	rawA, offA, onA, gwA := best(rawR), best(offR), best(onR), best(gwR)
	t := newTable("ingest: the same recharge.completed events through each door",
		"path", "events", "seconds", "events/s", "spread", "raw events/s", "ratio", "target", "cpu self/machine")
	t.note("%s", b.inputs("%s recharge.completed events over %s customers, stored form %d B/event on average; each row publishes the same events to a fresh, empty stream",
		count(len(s.recharge)), count(s.customers), avgBody(msgsA)))
	t.note("best of %d interleaved rounds after a warm-up (spread: how much slower the slowest round was); cpu: of the best round", ingestRounds)
	t.note("raw and SDK: %d producers (events split by partition), batches of %s events (PublishBatch), at most %s unacknowledged in flight, ack timeout %s",
		ingestProducers, count(sdkBatch), count(inFlight), ackTimeout)
	t.note("gateway: gateway.New + its Handler on a real 127.0.0.1 listener, %d concurrent HTTP/1.1 clients in this process, batches of %d (application/cloudevents-batch+json), dev key of channel crm-import (no rate limit), idempotency index lookup in PostgreSQL per request; request latency p50 %s ms, p99 %s ms",
		gatewayClients, gatewayBatch, millis(gwA.lat.p50), millis(gwA.lat.p99))
	t.note("validation clock pinned to %s; %s", pinnedNow().Format(time.RFC3339), b.e.durability())
	t.note("load average before the suite: %s", load)
	t.row("raw JetStream PublishMsgAsync, pre-built messages", count(rawA.n), seconds(rawA.elapsed), perSecond(rawA.rate()), rawA.spreadCell(), perSecond(rawA.rate()), ratio(rawA.rate(), rawA.rate()), "", rawA.cpu.String())
	t.row("SDK Publisher.PublishBatch, validation off", count(offA.n), seconds(offA.elapsed), perSecond(offA.rate()), offA.spreadCell(), perSecond(rawA.rate()), ratio(offA.rate(), rawA.rate()),
		verdict(offA.rate() >= 0.8*rawA.rate(), "≥ 0.80× raw"), offA.cpu.String())
	t.row("SDK Publisher.PublishBatch, validation on", count(onA.n), seconds(onA.elapsed), perSecond(onA.rate()), onA.spreadCell(), perSecond(rawA.rate()), ratio(onA.rate(), rawA.rate()),
		verdict(onA.rate() >= 0.5*rawA.rate(), "≥ 0.50× raw"), onA.cpu.String())
	t.row(fmt.Sprintf("gateway HTTP, %d clients, batches of %d", gatewayClients, gatewayBatch), count(gwA.n), seconds(gwA.elapsed), perSecond(gwA.rate()), gwA.spreadCell(), perSecond(rawA.rate()), ratio(gwA.rate(), rawA.rate()),
		verdict(gwA.rate() >= 40_000, "≥ 40,000 events/s"), gwA.cpu.String())
	if err := t.write(b.out); err != nil {
		return err
	}
	return b.ingestSealed(ctx, s)
}

// ingestSealed measures the runs with personal fields, against the real key service.
func (b *bench) ingestSealed(ctx context.Context, s ingestSets) error {
	load := loadAverage()
	// B validated and sealed, cold client cache: keys are created here, once.
	onB, err := b.sdkRun(ctx, "SDK B validation on", s.personal, true, true, "ingest-sdk-sealed")
	if err != nil {
		return err
	}
	msgsB, err := prepareAll(ctx, b.door(false, events.NewKeyClient(b.e.nc, events.KeyClientConfig{})), s.personal)
	if err != nil {
		return err
	}
	msgsC, err := prepareAll(ctx, b.door(false, nil), s.plain)
	if err != nil {
		return err
	}
	var rawBR, offBR, rawCR, onCR []measured
	for range ingestRounds {
		// B sealed without validation: the keys exist now, the client's cache is cold.
		m, err := b.sdkRun(ctx, "SDK B validation off", s.personal, false, true, "")
		if err != nil {
			return err
		}
		offBR = append(offBR, m)
		if m, err = b.rawRun(ctx, "raw B", msgsB, ""); err != nil {
			return err
		}
		rawBR = append(rawBR, m)
		if m, err = b.rawRun(ctx, "raw C", msgsC, ""); err != nil {
			return err
		}
		rawCR = append(rawCR, m)
		if m, err = b.sdkRun(ctx, "SDK C validation on", s.plain, true, true, ""); err != nil {
			return err
		}
		onCR = append(onCR, m)
	}
	rawB, offB, rawC, onC := best(rawBR), best(offBR), best(rawCR), best(onCR)

	personal := 0
	for _, e := range s.personal {
		if e.Type == events.TypeCustomerRegistered || e.Type == events.TypeCustomerUpdated {
			personal++
		}
	}
	t := newTable("ingest with personal fields sealed: SDK against the real key service (NATS request-reply, keys in PostgreSQL)",
		"path", "events", "seconds", "events/s", "spread", "raw events/s", "ratio", "key requests", "keys created", "target", "cpu self/machine")
	t.note("%s", b.inputs("B: %s events over %s customers, %s with personal fields (30%% customer.registered with name, phone, id number and address; 20%% customer.updated with one), the rest activity; stored (sealed) form %d B/event",
		count(len(s.personal)), count(s.customers), count(personal), avgBody(msgsB)))
	t.note("C: %s activity events over the same customers without any personal field, stored form %d B/event; each row on a fresh, empty stream", count(len(s.plain)), avgBody(msgsC))
	t.note("SDK: %d producers split by partition, PublishBatch of %s (one key request per batch for its customers' keys), at most %s in flight; events.KeyClient with its defaults (1m TTL, 100,000 keys), cold at the start of each row",
		ingestProducers, count(sdkBatch), count(inFlight))
	t.note("key service: keystore.Service, 4 workers on a 4-connection pool; raw rows publish the stored form prepared beforehand by a Door with the same key service")
	t.note("the row creating keys runs once; the others are the best of %d interleaved rounds", ingestRounds)
	t.note("%s", b.e.durability())
	t.note("load average before: %s", load)
	t.row("B raw JetStream PublishMsgAsync, sealed stored form", count(rawB.n), seconds(rawB.elapsed), perSecond(rawB.rate()), rawB.spreadCell(), perSecond(rawB.rate()), ratio(rawB.rate(), rawB.rate()), "", "", "", rawB.cpu.String())
	t.row("B SDK validation on, sealing (keys created)", count(onB.n), seconds(onB.elapsed), perSecond(onB.rate()), onB.spreadCell(), perSecond(rawB.rate()), ratio(onB.rate(), rawB.rate()),
		count(onB.keys.requests), count(onB.keys.created), verdict(onB.rate() >= 0.5*rawB.rate(), "≥ 0.50× raw"), onB.cpu.String())
	t.row("B SDK validation off, sealing (keys exist)", count(offB.n), seconds(offB.elapsed), perSecond(offB.rate()), offB.spreadCell(), perSecond(rawB.rate()), ratio(offB.rate(), rawB.rate()),
		count(offB.keys.requests), count(offB.keys.created), "", offB.cpu.String())
	t.row("C raw JetStream PublishMsgAsync, no personal fields", count(rawC.n), seconds(rawC.elapsed), perSecond(rawC.rate()), rawC.spreadCell(), perSecond(rawC.rate()), ratio(rawC.rate(), rawC.rate()), "", "", "", rawC.cpu.String())
	t.row("C SDK validation on, nothing to seal", count(onC.n), seconds(onC.elapsed), perSecond(onC.rate()), onC.spreadCell(), perSecond(rawC.rate()), ratio(onC.rate(), rawC.rate()),
		count(onC.keys.requests), count(onC.keys.created), verdict(onC.rate() >= 0.5*rawC.rate(), "≥ 0.50× raw"), onC.cpu.String())
	if err := t.write(b.out); err != nil {
		return err
	}

	side := newTable("ingest with and without sealing, side by side (SDK, validation on, from the rows above)",
		"path", "events/s without sealing (C)", "events/s with sealing (B)", "with / without", "µs/event without", "µs/event with", "µs/event added")
	side.note("C and B go through the same SDK path (validation on, %d producers, batches of %s); B seals %s personal events (%.0f%%) with keys fetched or created over NATS, C has nothing to seal",
		ingestProducers, count(sdkBatch), count(personal), 100*float64(personal)/float64(len(s.personal)))
	side.row("SDK Publisher.PublishBatch", perSecond(onC.rate()), perSecond(onB.rate()), ratio(onB.rate(), onC.rate()),
		fmt.Sprintf("%.2f", onC.µs()), fmt.Sprintf("%.2f", onB.µs()), fmt.Sprintf("%+.2f", onB.µs()-onC.µs()))
	side.note("the raw row publishes stored forms prepared beforehand: its difference is the size of the sealed values on the wire, not the work of sealing")
	side.row("raw JetStream publish of the stored form", perSecond(rawC.rate()), perSecond(rawB.rate()), ratio(rawB.rate(), rawC.rate()),
		fmt.Sprintf("%.2f", rawC.µs()), fmt.Sprintf("%.2f", rawB.µs()), fmt.Sprintf("%+.2f", rawB.µs()-rawC.µs()))
	if err := side.write(b.out); err != nil {
		return err
	}

	c := newTable("ingest cost of encryption (from the rows above)", "measure", "µs/event", "events/s", "share of B's time")
	c.note("B and C are validated by the same SDK path; B seals %s personal events (%.0f%%) and fetches or creates their customers' keys, C has nothing to seal",
		count(personal), 100*float64(personal)/float64(len(s.personal)))
	c.row("C: validated, no personal fields", fmt.Sprintf("%.2f", onC.µs()), perSecond(onC.rate()), "")
	c.row("B: validated, personal fields sealed", fmt.Sprintf("%.2f", onB.µs()), perSecond(onB.rate()), "1.00")
	c.row("B/C events/s", "", ratio(onB.rate(), onC.rate()), "")
	c.row("B: raw publish of its stored form", fmt.Sprintf("%.2f", rawB.µs()), perSecond(rawB.rate()), fmt.Sprintf("%.2f", rawB.µs()/onB.µs()))
	c.row("B: + sealing and key fetch (SDK validation off - raw)", fmt.Sprintf("%+.2f", offB.µs()-rawB.µs()), "", fmt.Sprintf("%.2f", (offB.µs()-rawB.µs())/onB.µs()))
	c.row("B: + validation and key creation (SDK on, keys created - off)", fmt.Sprintf("%+.2f", onB.µs()-offB.µs()), "", fmt.Sprintf("%.2f", (onB.µs()-offB.µs())/onB.µs()))
	if personal > 0 {
		c.row("sealing per personal event ((B off - raw B) / personal share)", fmt.Sprintf("%.2f", (offB.µs()-rawB.µs())*float64(len(s.personal))/float64(personal)), "", "")
	}
	return c.write(b.out)
}

// verdict renders a target and whether it is met.
func verdict(ok bool, target string) string {
	if ok {
		return target + ": met"
	}
	return target + ": MISSED"
}

// door is a door like the SDK's, for preparing stored messages ahead of a raw run.
func (b *bench) door(validate bool, keys events.KeySource) *events.Door {
	v := events.NewValidator(b.e.cat, b.e.layout.Partitions, events.DefaultLimits(), pinnedNow)
	return events.NewDoor(b.e.layout, v, keys, validate)
}

// rawRun publishes prepared messages raw to a fresh stream and checks they are all
// stored.
func (b *bench) rawRun(ctx context.Context, name string, msgs []*events.Message, prof string) (measured, error) {
	if err := b.e.resetStream(ctx); err != nil {
		return measured{}, err
	}
	nc, err := b.e.connect("touchstream-bench-raw")
	if err != nil {
		return measured{}, err
	}
	defer nc.Close()
	js, err := rawJetStream(nc)
	if err != nil {
		return measured{}, err
	}
	shards := shardMessages(msgs, ingestProducers, b.e.layout)
	var m measured
	run := func() error {
		m, err = timed(len(msgs), func() error { return publishRaw(ctx, js, shards) })
		return err
	}
	if prof != "" {
		err = b.profile(prof, run)
	} else {
		err = run()
	}
	if err != nil {
		return m, fmt.Errorf("%s: %w", name, err)
	}
	b.log.Info("run", "name", name, "events", m.n, "events_per_s", int(m.rate()))
	return m, b.checkStored(ctx, len(msgs))
}

// keyUse is what a run asked of the key service.
type keyUse struct {
	requests uint64
	created  int64
}

// sdkRun publishes events with the SDK to a fresh stream; withKeys gives it a fresh
// client of the key service (cold cache) on its connection.
func (b *bench) sdkRun(ctx context.Context, name string, evs []*events.Event, validate, withKeys bool, prof string) (measured, error) {
	if err := b.e.resetStream(ctx); err != nil {
		return measured{}, err
	}
	nc, err := b.e.connect("touchstream-bench-sdk")
	if err != nil {
		return measured{}, err
	}
	defer nc.Close()
	opts := []events.Option{events.WithLayout(b.e.layout), events.WithCatalog(b.e.cat), events.WithValidation(validate),
		events.WithClock(pinnedNow), events.WithMaxInFlight(inFlight), events.WithAckTimeout(ackTimeout)}
	var keys *events.KeyClient
	if withKeys {
		keys = events.NewKeyClient(nc, events.KeyClientConfig{})
		opts = append(opts, events.WithKeys(keys))
	}
	pub, err := events.NewPublisher(ctx, nc, opts...)
	if err != nil {
		return measured{}, err
	}
	defer pub.Close()
	before, err := b.e.keysCreated(ctx)
	if err != nil {
		return measured{}, err
	}
	shards := shardEvents(evs, ingestProducers, b.e.layout)
	var failed atomic.Int64
	var first atomic.Value
	var m measured
	run := func() error {
		m, err = timed(len(evs), func() error {
			return b.publishShards(ctx, pub, shards, &failed, &first)
		})
		return err
	}
	if prof != "" {
		err = b.profile(prof, run)
	} else {
		err = run()
	}
	if err != nil {
		return m, err
	}
	if n := failed.Load(); n > 0 {
		return m, fmt.Errorf("%s: %d events not stored, first: %v", name, n, first.Load())
	}
	after, err := b.e.keysCreated(ctx)
	if err != nil {
		return m, err
	}
	if keys != nil {
		m.keys = keyUse{requests: keys.Requests(), created: after - before}
	}
	b.log.Info("run", "name", name, "events", m.n, "events_per_s", int(m.rate()), "key_requests", m.keys.requests, "keys_created", m.keys.created)
	return m, b.checkStored(ctx, len(evs))
}

// publishShards publishes each shard from its own goroutine in batches, counting
// events not stored.
func (b *bench) publishShards(ctx context.Context, pub *events.Publisher, shards [][]*events.Event, failed *atomic.Int64, first *atomic.Value) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, shard := range shards {
		g.Go(func() error {
			for chunk := range slices.Chunk(shard, sdkBatch) {
				for _, r := range pub.PublishBatch(gctx, chunk) {
					if r.Err != nil || r.Duplicate {
						if failed.Add(1) == 1 {
							first.Store(fmt.Sprintf("err=%v duplicate=%v", r.Err, r.Duplicate))
						}
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// logMessages is how many messages the log's streams hold.
func (b *bench) logMessages(ctx context.Context) (uint64, error) {
	var total uint64
	for _, s := range b.e.layout.Streams {
		st, err := b.e.js.Stream(ctx, s.Name)
		if err != nil {
			return 0, err
		}
		total += st.CachedInfo().State.Msgs
	}
	return total, nil
}

// checkStored checks that the log holds exactly n messages.
func (b *bench) checkStored(ctx context.Context, n int) error {
	total, err := b.logMessages(ctx)
	if err != nil {
		return err
	}
	if total != uint64(n) {
		return fmt.Errorf("the log holds %d messages, %d were published", total, n)
	}
	return nil
}

// channelKey is the development API key of the channel with the given source, checked
// against its hash in deploy/channels.json.
func (b *bench) channelKey(source string) (string, error) {
	for _, ch := range b.o.Channels {
		if ch.Source != source {
			continue
		}
		key := "dev-" + ch.Name + "-key"
		for _, k := range ch.APIKeys {
			if k.SHA256 == gateway.HashKey(key) {
				return key, nil
			}
		}
		return "", fmt.Errorf("channel %s: none of its api_keys is the hash of its development key %q", ch.Name, key)
	}
	return "", fmt.Errorf("no channel with source %s in the channels file", source)
}

// gatewayRun posts the events to the real gateway in batches from concurrent clients.
func (b *bench) gatewayRun(ctx context.Context, evs []*events.Event, prof string) (measured, error) {
	if err := b.e.resetStream(ctx); err != nil {
		return measured{}, err
	}
	key, err := b.channelKey(srcImport)
	if err != nil {
		return measured{}, err
	}
	url, stop, err := b.startGateway(ctx, pinnedNow)
	if err != nil {
		return measured{}, err
	}
	var bodies [][]byte
	for chunk := range slices.Chunk(evs, gatewayBatch) {
		bodies = append(bodies, batchBody(chunk))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: gatewayClients, MaxConnsPerHost: gatewayClients}, Timeout: time.Minute}
	var next atomic.Int64
	var lat latencies
	var m measured
	run := func() error {
		m, err = timed(len(evs), func() error {
			g, gctx := errgroup.WithContext(ctx)
			for range gatewayClients {
				g.Go(func() error {
					for {
						i := int(next.Add(1)) - 1
						if i >= len(bodies) {
							return nil
						}
						t0 := time.Now()
						r, err := post(gctx, client, url, key, bodies[i])
						if err != nil {
							return err
						}
						lat.add(time.Since(t0))
						if want := min(gatewayBatch, len(evs)-i*gatewayBatch); r.Stored != want {
							return fmt.Errorf("gateway stored %d of %d events (duplicates %d, refused %d, unknown %d, failed %d)",
								r.Stored, want, r.Duplicates, r.Refused, r.Unknown, r.Failed)
						}
					}
				})
			}
			return g.Wait()
		})
		return err
	}
	if prof != "" {
		err = b.profile(prof, run)
	} else {
		err = run()
	}
	stop()
	client.CloseIdleConnections()
	if err != nil {
		return m, err
	}
	b.log.Info("run", "name", "gateway A", "events", m.n, "events_per_s", int(m.rate()))
	m.lat = lat.summarize()
	return m, b.checkStored(ctx, len(evs))
}

// startGateway starts the real gateway on a loopback listener and returns its events
// URL and how to stop it. now is its clock (nil: the real one).
func (b *bench) startGateway(ctx context.Context, now func() time.Time) (string, func(), error) {
	nc, err := b.e.connect("touchstream-bench-gateway")
	if err != nil {
		return "", nil, err
	}
	pool, err := b.e.newPool(ctx, 0)
	if err != nil {
		nc.Close()
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pool.Close()
		nc.Close()
		return "", nil, err
	}
	gw, err := gateway.New(gateway.Config{Addr: ln.Addr().String(), Channels: b.o.Channels}, gateway.Deps{
		NATS: nc, Layout: b.e.layout, Catalog: b.e.cat, Keys: events.NewKeyClient(nc, events.KeyClientConfig{}),
		Dedup: pool, Listener: ln, Now: now, Log: b.svcLog.With("service", "gateway"),
	})
	if err != nil {
		_ = ln.Close()
		pool.Close()
		nc.Close()
		return "", nil, err
	}
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- gw.Run(gctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			b.log.Warn("gateway stopped with an error", "error", err)
		}
		pool.Close()
		nc.Close()
	}
	return "http://" + ln.Addr().String() + "/v1/events", stop, nil
}

// batchBody is a CloudEvents batch: a JSON array of structured-mode events.
func batchBody(evs []*events.Event) []byte {
	buf := make([]byte, 0, 512*len(evs))
	buf = append(buf, '[')
	for i, e := range evs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = e.AppendJSON(buf)
	}
	return append(buf, ']')
}

// ingestResponse is the part of the gateway's answer the bench checks.
type ingestResponse struct {
	Stored, Duplicates, Refused, Unknown, Failed int
	Results                                      []struct {
		Index int    `json:"index"`
		Seq   uint64 `json:"seq"`
	} `json:"results"`
}

// post sends one batch and decodes the answer.
func post(ctx context.Context, client *http.Client, url, key string, body []byte) (*ingestResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusMultiStatus {
		return nil, fmt.Errorf("gateway answered %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	var r ingestResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("gateway answer: %w", err)
	}
	return &r, nil
}
