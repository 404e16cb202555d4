package faults_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/testkit"
)

// cluster is an embedded NATS server, a database and the deploy directory that
// projector processes share.
type cluster struct {
	t       *testing.T
	bin     string
	dir     string
	deploy  string
	natsURL string
	dbURL   string
	pool    *pgxpool.Pool
	nc      *nats.Conn
	js      jetstream.JetStream
	layout  events.Layout
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: testkit.BuildBinary(t), dir: t.TempDir()}
	c.deploy = filepath.Join(c.dir, "deploy")
	if err := os.MkdirAll(filepath.Join(c.dir, "data", "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(c.deploy, 0o755); err != nil {
		t.Fatal(err)
	}
	def := streams.Default()
	writeJSON(t, filepath.Join(c.deploy, "streams.json"), def)
	for _, f := range []string{"tiers.json", "loyalty.json", "churn-rules.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.deploy, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.dir, "data", "secrets", "phone-index.key"),
		[]byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t)
	c.natsURL = "nats://127.0.0.1:" + strconv.Itoa(port)
	nproc := testkit.NewProcess(t, "nats", c.bin, "nats", "--data-dir", filepath.Join(c.dir, "data"), "--port", strconv.Itoa(port))
	nproc.Start()
	testkit.WaitTCP(t, port)
	c.pool, c.dbURL = testkit.Pool(t)
	var err error
	if c.nc, err = nats.Connect(c.natsURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.nc.Close)
	if c.js, err = jetstream.New(c.nc); err != nil {
		t.Fatal(err)
	}
	if _, err := streams.Apply(t.Context(), c.js, def); err != nil {
		t.Fatal(err)
	}
	c.layout = def.Layout
	return c
}

// projector describes a projector process with its own instance id.
func (c *cluster) projector(instance string) *testkit.Process {
	return testkit.NewProcess(c.t, "projector-"+instance, c.bin, "projector",
		"--deploy-dir", c.deploy, "--data-dir", filepath.Join(c.dir, "data"), "--nats-url", c.natsURL,
		"--database-url", c.dbURL, "--admin-addr", "127.0.0.1:0", "--instance", instance,
		"--lease-ttl", "2s", "--log-level", "warn")
}

// publish appends n recharge and call events over the given customers and returns how
// many each customer got.
func (c *cluster) publish(n, customers, offset int) map[string]int64 {
	c.t.Helper()
	pub, err := events.NewPublisher(c.t.Context(), c.nc, events.WithSource("urn:touchstream:test:faults"), events.WithLayout(c.layout))
	if err != nil {
		c.t.Fatal(err)
	}
	want := map[string]int64{}
	batch := make([]*events.Event, 0, 2000)
	flush := func() {
		for i, r := range pub.PublishBatch(c.t.Context(), batch) {
			if r.Err != nil {
				c.t.Fatalf("publish %s: %v", batch[i].ID, r.Err)
			}
		}
		batch = batch[:0]
	}
	now := time.Now()
	for i := offset; i < offset+n; i++ {
		cust := fmt.Sprintf("F%06d", i%customers)
		var p events.Payload = events.RechargeCompleted{RechargeID: "R" + strconv.Itoa(i), Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "cash"}
		if i%3 == 0 {
			p = events.CallCompleted{CallID: "CL" + strconv.Itoa(i), Direction: "inbound", Queue: "care", WaitSeconds: 12,
				HandlingSeconds: 200, Answered: true, Outcome: "resolved"}
		}
		e, err := events.NewEvent(cust, now, p)
		if err != nil {
			c.t.Fatal(err)
		}
		batch = append(batch, e)
		want[cust]++
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	return want
}

// streamLength is how many messages the log holds.
func (c *cluster) streamLength() uint64 {
	c.t.Helper()
	s, err := c.js.Stream(c.t.Context(), c.layout.Streams[0].Name)
	if err != nil {
		c.t.Fatal(err)
	}
	info, err := s.Info(c.t.Context())
	if err != nil {
		c.t.Fatal(err)
	}
	return info.State.Msgs
}

// waitApplied waits until every target's checkpoints cover the whole log.
func (c *cluster) waitApplied(total uint64, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var done, targets int
		err := c.pool.QueryRow(c.t.Context(), `SELECT count(*) FILTER (WHERE applied = $1), count(*) FROM (SELECT sum(applied) AS applied
			FROM projections.checkpoints GROUP BY target) t`, int64(total)).Scan(&done, &targets)
		if err == nil && targets >= 3 && done == targets { // every read model the projector folds
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("read models did not apply %d events within %s", total, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkExactlyOnce checks, event by event, that every stream sequence was applied
// once to the timeline and the idempotency index and counted once per customer in the
// profiles, and that nothing was parked.
func (c *cluster) checkExactlyOnce(want map[string]int64, total uint64) {
	c.t.Helper()
	ctx := c.t.Context()
	var rows, distinct, minSeq, maxSeq int64
	if err := c.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM timeline_v1.events`).
		Scan(&rows, &distinct, &minSeq, &maxSeq); err != nil {
		c.t.Fatal(err)
	}
	if rows != int64(total) || distinct != int64(total) || minSeq != 1 || maxSeq != int64(total) {
		c.t.Fatalf("timeline: %d rows, %d distinct sequences, %d-%d; want %d, each of 1-%d once", rows, distinct, minSeq, maxSeq, total, total)
	}
	var indexed int64
	if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM dedup.dedup_index`).Scan(&indexed); err != nil {
		c.t.Fatal(err)
	}
	if indexed != int64(total) {
		c.t.Fatalf("idempotency index: %d keys, want %d", indexed, total)
	}
	got := map[string]int64{}
	r, err := c.pool.Query(ctx, `SELECT customer_id, events_total FROM customer360_v1.profiles`)
	if err != nil {
		c.t.Fatal(err)
	}
	for r.Next() {
		var id string
		var n int64
		if err := r.Scan(&id, &n); err != nil {
			c.t.Fatal(err)
		}
		got[id] = n
	}
	if diff := cmp.Diff(want, got); diff != "" {
		c.t.Fatalf("events per customer in the profiles (-published +applied):\n%s", diff)
	}
	var parked int64
	if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM projections.dead_letters`).Scan(&parked); err != nil {
		c.t.Fatal(err)
	}
	if parked != 0 {
		c.t.Fatalf("%d events parked", parked)
	}
	c.t.Logf("exactly once: %d events in the log; timeline %d rows (%d distinct sequences); index %d keys; %d customers' counts match; 0 parked",
		total, rows, distinct, indexed, len(got))
}

func (c *cluster) owners() map[string]int {
	c.t.Helper()
	out := map[string]int{}
	rows, err := c.pool.Query(c.t.Context(), `SELECT owner, count(*) FROM projections.leases
		WHERE grp = 'projector' AND owner IS NOT NULL AND expires_at > now() GROUP BY owner`)
	if err != nil {
		return out
	}
	for rows.Next() {
		var o string
		var n int
		if rows.Scan(&o, &n) == nil {
			out[o] = n
		}
	}
	return out
}

// TestProjectorKilledMidLoad runs two projector processes over the same partitions,
// SIGKILLs one in the middle of a 100,000-event load, and restarts it: its partitions
// move to the survivor within seconds, and every event is applied exactly once.
func TestProjectorKilledMidLoad(t *testing.T) {
	c := newCluster(t)
	a, b := c.projector("a"), c.projector("b")
	a.Start()
	b.Start()
	waitUntil(t, 30*time.Second, func() bool { o := c.owners(); return o["a"] == 32 && o["b"] == 32 })

	want := c.publish(50_000, 5_000, 0)
	waitUntil(t, 60*time.Second, func() bool {
		var n int64
		_ = c.pool.QueryRow(t.Context(), `SELECT coalesce(sum(applied), 0) FROM projections.checkpoints WHERE target = 'timeline_v1'`).Scan(&n)
		return n > 10_000
	})
	a.Kill()
	killed := time.Now()
	more := c.publish(50_000, 5_000, 50_000)
	for k, v := range more {
		want[k] += v
	}
	waitUntil(t, 30*time.Second, func() bool { return c.owners()["b"] == 64 })
	t.Logf("SIGKILLed projector a mid-load; b holds all 64 partitions %s later", time.Since(killed).Round(100*time.Millisecond))
	a.Start()
	waitUntil(t, 30*time.Second, func() bool { o := c.owners(); return o["a"] == 32 && o["b"] == 32 })
	total := c.streamLength()
	if total != 100_000 {
		t.Fatalf("log holds %d events, want 100000", total)
	}
	c.waitApplied(total, 3*time.Minute)
	c.checkExactlyOnce(want, total)
}

// TestThreeProjectorsShareThePartitions runs projectors joining while the log is being
// folded; leases rebalance to fair shares and nothing is applied twice.
func TestThreeProjectorsShareThePartitions(t *testing.T) {
	c := newCluster(t)
	ps := []*testkit.Process{c.projector("a"), c.projector("b"), c.projector("c")}
	ps[0].Start()
	want := c.publish(30_000, 3_000, 0)
	ps[1].Start()
	more := c.publish(30_000, 3_000, 30_000)
	ps[2].Start()
	for k, v := range more {
		want[k] += v
	}
	waitUntil(t, 30*time.Second, func() bool {
		o := c.owners()
		return o["a"]+o["b"]+o["c"] == 64 && o["a"] >= 20 && o["b"] >= 20 && o["c"] >= 20 // ceil(64/3) = 22: 22, 22, 20
	})
	t.Logf("lease shares: %v", c.owners())
	total := c.streamLength()
	c.waitApplied(total, 3*time.Minute)
	c.checkExactlyOnce(want, total)
	for _, p := range ps {
		p.Stop()
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
