package faults_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/services/internal/pgcluster"
	"github.com/touchstream/touchstream/services/internal/pgsetup"
	"github.com/touchstream/touchstream/testkit"
)

// pgPhase is what the clients saw in one phase of the outage test.
type pgPhase struct {
	requests, events int64
	byStatus         map[string]int64
	byCode           map[int]int64
	lookups, failed  float64 // the gateway's index lookups and failed (skipped) ones
}

// TestGatewayAcceptsWhilePostgresIsDown runs the gateway (gateway.New on a real
// listener) with its idempotency index in a private PostgreSQL cluster, and posts
// batches of 100 from four clients while that cluster is SIGKILLed, left dead for four
// seconds and started again. The log does not need PostgreSQL: every event is answered
// stored in every phase (index lookups fail and are skipped past DedupTimeout), and
// every acknowledged event is in the stream, once. After the restart the index answers
// again (an event recorded in it is answered duplicate).
func TestGatewayAcceptsWhilePostgresIsDown(t *testing.T) {
	ctx := t.Context()
	pg, err := pgcluster.Create(ctx, filepath.Join(t.TempDir(), "pg"), testkit.FreePort(t), map[string]string{"shared_buffers": "64MB"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Remove(context.Background()) })
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pool, err := pgsetup.Open(ctx, pg.URL("postgres"), 8, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := dedup.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}

	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	def := streams.Default()
	if _, err := streams.Apply(ctx, js, def); err != nil {
		t.Fatal(err)
	}
	channels, err := gateway.LoadChannels(filepath.Join("..", "..", "..", "deploy", "channels.json"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	const dedupTimeout = 300 * time.Millisecond
	gw, err := gateway.New(gateway.Config{Addr: ln.Addr().String(), Channels: channels, DedupTimeout: dedupTimeout},
		gateway.Deps{NATS: nc, Layout: def.Layout, Dedup: pool, Listener: ln, Registry: reg, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	stopGW := testkit.Go(t, "gateway", 10*time.Second, gw.Run)
	defer stopGW()
	url := "http://" + ln.Addr().String() + "/v1/events"
	counters := func() (lookups, failed float64) {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				switch mf.GetName() {
				case "touchstream_gateway_dedup_lookups_total":
					lookups = m.GetCounter().GetValue()
				case "touchstream_gateway_dedup_lookup_failures_total":
					failed = m.GetCounter().GetValue()
				}
			}
		}
		return lookups, failed
	}

	const source, key = "urn:touchstream:channel:crm-import", "dev-crm-import-key"
	client := &http.Client{Timeout: 30 * time.Second}
	var mu sync.Mutex
	acked := map[string]int{}
	var phase *pgPhase
	newPhase := func() *pgPhase {
		mu.Lock()
		defer mu.Unlock()
		l, f := counters()
		phase = &pgPhase{byStatus: map[string]int64{}, byCode: map[int]int64{}, lookups: l, failed: f}
		return phase
	}
	endPhase := func(p *pgPhase) {
		mu.Lock()
		defer mu.Unlock()
		l, f := counters()
		p.lookups, p.failed = l-p.lookups, f-p.failed
	}
	post := func(evs []*events.Event) (int, *overloadResponse, error) {
		body := []byte{'['}
		for i, e := range evs {
			if i > 0 {
				body = append(body, ',')
			}
			body = e.AppendJSON(body)
		}
		code, _, resp, err := overloadPost(ctx, client, url, key, append(body, ']'))
		return code, resp, err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for n := 0; loadCtx.Err() == nil; n++ {
				evs := make([]*events.Event, 100)
				for i := range evs {
					e, err := events.NewEvent(fmt.Sprintf("C-PGD-%05d", (n*100+i)%10_000), time.Now(),
						events.StoreVisited{StoreID: "S9", Purpose: "inquiry", DurationSeconds: 45})
					if err != nil {
						panic(err)
					}
					e.ID, e.Source = fmt.Sprintf("pgd-%d-%06d-%03d", c, n, i), source
					evs[i] = e
				}
				code, resp, err := post(evs)
				mu.Lock()
				p := phase
				p.requests++
				p.events += int64(len(evs))
				switch {
				case err != nil:
					p.byCode[0]++
				default:
					p.byCode[code]++
					if resp != nil {
						for _, r := range resp.Results {
							p.byStatus[r.Status]++
							if r.Status == "stored" || r.Status == "duplicate" {
								acked[(&events.Event{Source: source, ID: r.ID, Subject: "-"}).DedupKey()]++
							}
						}
					}
				}
				mu.Unlock()
				select { // a steady load, not an overload (TestGatewayOverload is that)
				case <-loadCtx.Done():
				case <-time.After(25 * time.Millisecond):
				}
			}
		})
	}

	before := newPhase()
	time.Sleep(2 * time.Second)
	endPhase(before)
	outage := newPhase()
	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	time.Sleep(4 * time.Second)
	endPhase(outage)
	after := newPhase()
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL SIGKILLed, dead for %s, started again", time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second)
	endPhase(after)
	stopLoad()
	wg.Wait()

	// After the restart the index answers: an event it holds is a duplicate.
	probe, err := events.NewEvent("C-PGD-PROBE", time.Now(), events.StoreVisited{StoreID: "S9", Purpose: "inquiry", DurationSeconds: 45})
	if err != nil {
		t.Fatal(err)
	}
	probe.ID, probe.Source = "pgd-probe", source
	if err := dedup.Record(ctx, pool, []dedup.Entry{{Key: probe.DedupKey(), Stream: def.Layout.Streams[0].Name, Seq: 1, StoredAt: time.Now()}}); err != nil {
		t.Fatalf("record in the index after the restart: %v", err)
	}
	code, resp, err := post([]*events.Event{probe})
	if err != nil || code != http.StatusOK || resp == nil || len(resp.Results) != 1 || resp.Results[0].Status != "duplicate" {
		t.Errorf("an event in the index, after the restart: %d %+v %v; want 200 duplicate", code, resp, err)
	}

	inLog := map[string]int{}
	logged := readMsgIDs(t, js, def.Layout.Streams[0].Name, inLog)
	var missing, twice int
	for k := range acked {
		if inLog[k] == 0 {
			missing++
		}
	}
	for _, n := range inLog {
		if n > 1 {
			twice++
		}
	}
	for i, p := range []*pgPhase{before, outage, after} {
		name := []string{"before the crash", "PostgreSQL down", "after the restart"}[i]
		t.Logf("%-17s: %4d requests, %6d events: %v, answers %v; index lookups %.0f, failed and skipped %.0f",
			name, p.requests, p.events, p.byStatus, p.byCode, p.lookups, p.failed)
		if p.byStatus["stored"] == 0 || p.byStatus["stored"] != p.events || len(p.byCode) != 1 || p.byCode[http.StatusOK] != p.requests {
			t.Errorf("%s: %d of %d events stored, answers %v: want every event stored, every request 200", name, p.byStatus["stored"], p.events, p.byCode)
		}
	}
	if outage.failed == 0 {
		t.Errorf("no index lookup failed while PostgreSQL was down: the outage was not observed")
	}
	if before.failed != 0 {
		t.Errorf("%.0f index lookups failed before the crash", before.failed)
	}
	if after.lookups <= after.failed {
		t.Errorf("after the restart: %.0f lookups, %.0f failed: want lookups to succeed again", after.lookups, after.failed)
	}
	t.Logf("acknowledged %d events; the log holds %d messages (%d distinct); %d acknowledged missing, %d twice", len(acked), logged, len(inLog), missing, twice)
	if missing > 0 || twice > 0 || len(acked) != logged {
		t.Errorf("acknowledged %d, log %d, missing %d, twice %d: want every acknowledged event in the log once", len(acked), logged, missing, twice)
	}
}
