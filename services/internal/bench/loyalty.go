package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
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

// The loyalty suite's settings: the redemption API at the rate.
const (
	loyaltyTarget   = "loyalty_v1"
	redeemRate      = 200 // requests/s
	redeemDuration  = 20 * time.Second
	redeemWarmUp    = 3 * time.Second
	redeemPoints    = 10
	redeemMinPoints = 100 // members drawn for redemptions hold at least this
)

// loyalty measures the loyalty ledger folding the projector's data set (pinned to a
// rule version: the data set activates none), then the redemption API at 200
// requests/s, open loop, over the members it built, beside raw JetStream publishes
// and raw PostgreSQL lock-and-insert transactions at the same rate.
func (b *bench) loyalty(ctx context.Context) error {
	ds, err := b.loadDataset(ctx)
	if err != nil {
		return err
	}
	load := loadAverage()
	pool, err := b.e.newPool(ctx, 16)
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, err := b.e.connect("touchstream-bench-loyalty")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	lp, err := b.d.Loyalty(loyaltyTarget, loyaltyPin)
	if err != nil {
		return err
	}
	r, err := projections.NewRunner(projections.Config{Group: "bench-loyalty", BatchSize: projectorBatch, Linger: projectorLinger},
		projections.Deps{Pool: pool, JS: js, Layout: b.e.layout, Catalog: b.e.cat, Log: b.svcLog.With("service", "loyalty"),
			Registry: prometheus.NewRegistry(),
			History: &projections.LogHistory{Index: &timeline.Index{Target: query.DefaultTimelineTarget, Layout: b.e.layout}, JS: js,
				Decoder: projections.NewDecoder(b.e.layout, b.e.cat)}}, lp)
	if err != nil {
		return err
	}
	if err := r.Prepare(ctx); err != nil {
		return err
	}
	var applied atomic.Int64
	stop := every(5*time.Second, func() { b.log.Info("loyalty catch-up", "events", applied.Load(), "of", ds.events) })
	fold, err := timed(ds.events, func() error {
		return r.CatchUp(ctx, func(_, _ uint64, n int) { applied.Add(int64(n)) })
	})
	stop()
	if err != nil {
		return fmt.Errorf("loyalty catch-up: %w", err)
	}
	var members, withPoints int64
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE balance >= $1) FROM `+pgx.Identifier{loyaltyTarget, "members"}.Sanitize(),
		redeemMinPoints).Scan(&members, &withPoints); err != nil {
		return err
	}
	rows, err := pool.Query(ctx, `SELECT customer_id FROM `+pgx.Identifier{loyaltyTarget, "members"}.Sanitize()+
		` WHERE balance >= $1 ORDER BY customer_id LIMIT 20000`, redeemMinPoints)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("loyalty: no member holds %d points to redeem", redeemMinPoints)
	}

	// The redemption API.
	h, closeRedeem, err := b.d.Redeem(ctx, pool, nc, b.svcLog.With("service", "redeem"))
	if err != nil {
		return err
	}
	defer closeRedeem()
	api, stopAPI, err := serve(h)
	if err != nil {
		return err
	}
	defer stopAPI()
	client := newClient()
	defer client.CloseIdleConnections()
	rng := rand.New(rand.NewPCG(b.o.Seed, 31))
	n := int(redeemRate*(redeemDuration+redeemWarmUp).Seconds()) + 1
	targets := make([]string, n)
	for i := range targets {
		targets[i] = ids[rng.IntN(len(ids))]
	}
	var created, refused atomic.Int64
	b.log.Info("redemption API", "rate", redeemRate, "seconds", redeemDuration.Seconds(), "members", len(ids))
	pg0, err := b.pgActivity(ctx)
	if err != nil {
		return err
	}
	apiRun := measureOpenLoop(ctx, redeemRate, redeemWarmUp, redeemDuration, func(i int, _ time.Time) error {
		body := fmt.Sprintf(`{"idempotency_key":"bench-%d-%d","points":%d,"partner":"bench-partner","item":"voucher-10"}`, b.o.Seed, i, redeemPoints)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/v1/loyalty/members/"+targets[i]+"/redemptions", bytes.NewBufferString(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusCreated:
			created.Add(1)
			return nil
		case http.StatusConflict: // the member's points are spent: a real answer
			refused.Add(1)
			return nil
		}
		return fmt.Errorf("status %d", resp.StatusCode)
	})
	pg1, err := b.pgActivity(ctx)
	if err != nil {
		return err
	}

	// Raw limits at the same rate: a JetStream publish with its ack; a PostgreSQL
	// transaction taking an advisory lock and inserting a row.
	pub, err := events.NewPublisher(ctx, nc, events.WithLayout(b.e.layout), events.WithValidation(false), events.WithSource("urn:touchstream:channel:bench"))
	if err != nil {
		return err
	}
	defer pub.Close()
	var firstErr atomic.Value
	jsRun := measureOpenLoop(ctx, redeemRate, redeemWarmUp, redeemDuration/2, func(i int, _ time.Time) error {
		ev, err := events.NewEvent(targets[i], time.Now(), events.StoreVisited{StoreID: "S-BENCH", Purpose: "inquiry", DurationSeconds: 1})
		if err == nil {
			_, err = pub.Publish(ctx, ev)
		}
		if err != nil {
			firstErr.CompareAndSwap(nil, err)
		}
		return err
	})
	if err, _ := firstErr.Load().(error); err != nil {
		b.log.Warn("raw publish failed", "error", err)
	}
	if _, err := pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS bench_raw; CREATE TABLE IF NOT EXISTS bench_raw.reservations (id bigserial PRIMARY KEY, customer_id text, points bigint)`); err != nil {
		return err
	}
	pgRun := measureOpenLoop(ctx, redeemRate, redeemWarmUp, redeemDuration/2, func(i int, _ time.Time) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, targets[i]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO bench_raw.reservations (customer_id, points) VALUES ($1, $2)`, targets[i], redeemPoints)
			return err
		})
	})

	// Leave the database as the suite found it: the suites after it measure reads of
	// the projector's read models, not the autovacuum of a million members.
	if _, err := pool.Exec(ctx, `DROP SCHEMA bench_raw CASCADE; DROP SCHEMA IF EXISTS redeem CASCADE; DELETE FROM public.touchstream_migrations WHERE schema_name = 'redeem'`); err != nil {
		return err
	}
	if err := projections.DropTarget(ctx, pool, loyaltyTarget); err != nil {
		return err
	}

	t := newTable("loyalty: the ledger folding the data set, and POST /v1/loyalty/members/{id}/redemptions through the real redemption API, open loop",
		"measure", "requests", "achieved/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "p99 ÷ raw JetStream p99", "cpu self/machine", "target")
	t.note("%s", b.inputs("the projector's data set: %s customers, %s events", count(ds.customers), count(ds.events)))
	t.note("loyalty ledger: the loyalty projection alone (pinned to rule version %s: the data set activates none) caught up from the whole log in %s s: %s events/s, %s members, %s holding at least %d points; cpu %s",
		loyaltyPin, seconds(fold.elapsed), perSecond(fold.rate()), count(int(members)), count(int(withPoints)), redeemMinPoints, fold.cpu.String())
	t.note("redemption API: the command's buildRedeem on a 127.0.0.1 listener; %d requests/s for %d s after %d s of warm-up, %d points each for a member drawn uniformly from %s members with points, a fresh idempotency key each; per request: a PostgreSQL transaction holding the member's advisory lock (balance from the ledger minus pending reservations, then the reservation), a JetStream publish acknowledged, the reservation marked; answers: %s created, %s refused (409: points spent)",
		redeemRate, int(redeemDuration.Seconds()), int(redeemWarmUp.Seconds()), redeemPoints, count(len(ids)), count(int(created.Load())), count(int(refused.Load())))
	t.note("PostgreSQL during the API run (warm-up included): %s", pg0.until(pg1))
	t.note("raw: the same rate for %d s each: one JetStream publish of a stored event with its ack (events.Publisher, validation off); one PostgreSQL transaction with an advisory lock and a one-row insert (pool of 16)", int((redeemDuration / 2).Seconds()))
	t.note("%s", b.e.durability())
	t.note("load average before: %s", load)
	for _, r := range []struct {
		name string
		run  openLoopRun
		tgt  string
	}{
		{"raw JetStream publish + ack", jsRun, ""},
		{"raw PostgreSQL lock + insert transaction", pgRun, ""},
		{"redemption API POST", apiRun, ""},
	} {
		t.row(r.name, count(r.run.lat.n), perSecond(r.run.achieved), millis(r.run.lat.p50), millis(r.run.lat.p90), millis(r.run.lat.p99), millis(r.run.lat.pMax),
			count(r.run.lat.errors), ratio(float64(r.run.lat.p99), float64(jsRun.lat.p99)), r.run.cpu.String(), r.tgt)
	}
	return t.write(b.out)
}
