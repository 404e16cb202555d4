package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/audit"
	"github.com/touchstream/touchstream/services/internal/query"
)

// Query suite settings.
const (
	queryRate     = 500 // requests per second, open loop
	queryDuration = 20 * time.Second
	queryWarmUp   = 2 * time.Second
	queryRawTime  = 10 * time.Second // each raw measurement
)

func (b *bench) query(ctx context.Context) error {
	ds, err := b.loadDataset(ctx)
	if err != nil {
		return err
	}
	load := loadAverage()
	api, token, stop, err := b.startQuery(ctx)
	if err != nil {
		return err
	}
	defer stop()
	client := newClient()
	defer client.CloseIdleConnections()

	get := func(rng *rand.Rand) func(int, time.Time) error {
		ids := make([]string, int(queryRate*(queryDuration+queryWarmUp).Seconds())+1)
		for i := range ids {
			ids[i] = customerID(rng.IntN(ds.customers))
		}
		return func(i int, _ time.Time) error {
			status, _, err := getJSON(ctx, client, api+"/v1/customers/"+ids[i], token)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("status %d", status)
			}
			return err
		}
	}
	b.log.Info("query API", "rate", queryRate, "seconds", queryDuration.Seconds())
	pg0, err := b.pgActivity(ctx)
	if err != nil {
		return err
	}
	apiRun := measureOpenLoop(ctx, queryRate, queryWarmUp, queryDuration, get(rand.New(rand.NewPCG(b.o.Seed, 97))))
	pg1, err := b.pgActivity(ctx)
	if err != nil {
		return err
	}

	// Raw: the profile row by key.
	rng := rand.New(rand.NewPCG(b.o.Seed, 96))
	pgRun, err := b.rawProfileReads(ctx, rng, ds.customers, queryRate, queryWarmUp, queryRawTime)
	if err != nil {
		return err
	}

	// Raw: one data key by id from the key service, without a cache.
	ids := make([]string, int(queryRate*(queryRawTime+queryWarmUp).Seconds())+1)
	for i := range ids {
		ids[i] = customerID(rng.IntN(ds.customers))
	}
	rows, err := b.e.pool.Query(ctx, `SELECT key_id FROM keystore.data_keys WHERE customer_id = ANY($1)`, ids)
	if err != nil {
		return err
	}
	kids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if len(kids) == 0 {
		return errors.New("no data keys to look up")
	}
	nc, err := b.e.connect("touchstream-bench-keylookup")
	if err != nil {
		return err
	}
	defer nc.Close()
	uncached := events.NewKeyClient(nc, events.KeyClientConfig{CacheTTL: -1})
	b.log.Info("raw key lookups", "rate", queryRate, "seconds", queryRawTime.Seconds())
	keyRun := measureOpenLoop(ctx, queryRate, queryWarmUp, queryRawTime, func(i int, _ time.Time) error {
		_, err := uncached.KeysByID(ctx, []string{kids[i%len(kids)]})
		return err
	})

	t := newTable("query: GET /v1/customers/{id} through the real query API, open loop",
		"measure", "requests", "achieved/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "p99 ÷ raw PG p99", "cpu self/machine", "target")
	t.note("%s", b.inputs("random customers (uniform) of the projector's population: %s customers with profiles folded from %s events; %d requests/s scheduled, latency measured from the scheduled time (includes any client delay)",
		count(ds.customers), count(ds.events), queryRate))
	t.note("query API: the command's buildQuery (query.New) served on a 127.0.0.1 listener, %d s after %d s of warm-up; each read: partition freshness + profile row in PostgreSQL (pool of 16), data keys by id from the key service (KeyClient cache 1m, cold for most of 1M customers), personal fields opened and masked, the read recorded in the access audit log (group commit, synchronous) before the answer, ETag",
		int(queryDuration.Seconds()), int(queryWarmUp.Seconds()))
	t.note("PostgreSQL during the API run (warm-up included): %s", pg0.until(pg1))
	t.note("the database was settled after the catch-up (VACUUM (ANALYZE), CHECKPOINT: %s s)", seconds(ds.settled))
	t.note("raw: the same rate for %d s each: SELECT doc of one profile by key (pool of 16); one data key by id over NATS from the key service with no client cache", int(queryRawTime.Seconds()))
	t.note("%s", b.e.durability())
	t.note("load average before: %s", load)
	for _, r := range []struct {
		name string
		run  openLoopRun
		tgt  string
	}{
		{"raw PostgreSQL point read, profile by key", pgRun, ""},
		{"raw key service KeysByID (1 key, no cache)", keyRun, ""},
		{"query API GET /v1/customers/{id}", apiRun, verdict(apiRun.lat.p99 < 10*time.Millisecond, "p99 < 10 ms")},
	} {
		t.row(r.name, count(r.run.lat.n), perSecond(r.run.achieved), millis(r.run.lat.p50), millis(r.run.lat.p90), millis(r.run.lat.p99), millis(r.run.lat.pMax),
			count(r.run.lat.errors), ratio(float64(r.run.lat.p99), float64(pgRun.lat.p99)), r.run.cpu.String(), r.tgt)
	}
	return t.write(b.out)
}

// rawProfileReads measures the raw limit under a profile read: SELECT doc of one
// profile by key, on a pool of its own (16), at rate for d after warmUp, over
// customers of the population drawn from rng.
func (b *bench) rawProfileReads(ctx context.Context, rng *rand.Rand, customers int, rate float64, warmUp, d time.Duration) (openLoopRun, error) {
	pool, err := b.e.newPool(ctx, 16)
	if err != nil {
		return openLoopRun{}, err
	}
	defer pool.Close()
	table := pgx.Identifier{query.DefaultCustomer360Target, "profiles"}.Sanitize()
	b.log.Info("raw postgres point reads", "rate", rate, "seconds", d.Seconds())
	ids := make([]string, int(rate*(d+warmUp).Seconds())+1)
	for i := range ids {
		ids[i] = customerID(rng.IntN(customers))
	}
	return measureOpenLoop(ctx, rate, warmUp, d, func(i int, _ time.Time) error {
		var doc []byte
		return pool.QueryRow(ctx, `SELECT doc FROM `+table+` WHERE customer_id = $1`, ids[i]).Scan(&doc)
	}), nil
}

// openLoopRun is the outcome of an open-loop measurement.
type openLoopRun struct {
	lat      summary
	achieved float64 // completed requests per second of the schedule
	cpu      cpuUse
}

// measureOpenLoop runs fn at rate for warmUp (not recorded) then d (recorded), and
// measures latencies from each call's scheduled time.
func measureOpenLoop(ctx context.Context, rate float64, warmUp, d time.Duration, fn func(i int, due time.Time) error) openLoopRun {
	var lat latencies
	var c0 cpuSample
	warm := int(rate * warmUp.Seconds())
	var start time.Time
	_, _ = openLoop(ctx, rate, warmUp+d, func(i int, due time.Time) {
		if i == warm {
			c0, start = sampleCPU(), due
		}
		err := fn(i, due)
		if i < warm {
			return
		}
		if err != nil {
			lat.fail()
			return
		}
		lat.add(time.Since(due))
	})
	c1 := sampleCPU()
	s := lat.summarize()
	return openLoopRun{lat: s, achieved: float64(s.n) / c1.at.Sub(start).Seconds(), cpu: c0.until(c1)}
}

// startQuery serves the real query API on a loopback listener, with its access
// audit log, and returns its URL and a bearer token (role agent) it accepts.
func (b *bench) startQuery(ctx context.Context) (string, string, func(), error) {
	return b.startAPI(ctx, "touchstream-bench-query", func(d QueryDeps, _ *nats.Conn) (http.Handler, func(), error) {
		srv, err := b.d.Query(d)
		if err != nil {
			return nil, nil, err
		}
		return srv.Handler(), func() {}, nil
	})
}

// startAPI serves what build makes of the query service's dependencies (a pool of
// 16, a NATS connection named name, the data keys through a KeyClient, the access
// audit log running, a fresh bearer token) on a loopback listener, and returns its
// URL, the token and the func that stops it all: what build started first (its
// release), then the listener, then the rest.
func (b *bench) startAPI(ctx context.Context, name string, build func(QueryDeps, *nats.Conn) (http.Handler, func(), error)) (string, string, func(), error) {
	pool, err := b.e.newPool(ctx, 16)
	if err != nil {
		return "", "", nil, err
	}
	nc, err := b.e.connect(name)
	if err != nil {
		pool.Close()
		return "", "", nil, err
	}
	if err := audit.Migrate(ctx, pool); err != nil {
		nc.Close()
		pool.Close()
		return "", "", nil, err
	}
	alog, err := audit.New(audit.Config{}, pool, nil, b.svcLog.With("component", "access_audit"))
	if err != nil {
		nc.Close()
		pool.Close()
		return "", "", nil, err
	}
	actx, stopAudit := context.WithCancel(context.Background())
	audited := make(chan struct{})
	go func() { defer close(audited); _ = alog.Run(actx) }()
	token := "bench-" + strconv.FormatUint(rand.Uint64(), 36)
	h, stopBuilt, err := build(QueryDeps{DB: pool, Keys: events.NewKeyClient(nc, events.KeyClientConfig{}), Layout: b.e.layout,
		PhoneKey: b.e.phoneKey, Log: b.svcLog.With("service", "query"), Token: token, Audit: alog}, nc)
	release := func() { stopAudit(); <-audited; nc.Close(); pool.Close() }
	if err != nil {
		release()
		return "", "", nil, err
	}
	url, stop, err := serve(h)
	if err != nil {
		stopBuilt()
		release()
		return "", "", nil, err
	}
	return url, token, func() { stopBuilt(); stop(); release() }, nil
}

// serve serves h on a fresh loopback listener.
func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// newClient is an HTTP client keeping enough connections for an open loop.
func newClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}
}

// getJSON GETs url with a bearer token and returns the status and the body.
func getJSON(ctx context.Context, client *http.Client, url, token string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
