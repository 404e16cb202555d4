package faults_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/testkit"
)

// natsNode is one nats-server process of a three-node JetStream cluster on loopback
// ports, restartable on the same ports and store.
type natsNode struct {
	name   string
	client int
	proc   *testkit.Process
}

func (n *natsNode) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.client) }

// startNATSCluster starts three `touchstream nats --config` processes (the embedded
// nats-server, v2.15.x from the Go module), clustered over routes on loopback ports,
// each with its own JetStream store under its own data directory.
func startNATSCluster(t *testing.T, bin, dir string) []*natsNode {
	t.Helper()
	nodes := make([]*natsNode, 3)
	routes := make([]string, 3)
	routePorts := make([]int, 3)
	for i := range nodes {
		nodes[i] = &natsNode{name: "n" + strconv.Itoa(i+1), client: testkit.FreePort(t)}
		routePorts[i] = testkit.FreePort(t)
		routes[i] = "nats-route://127.0.0.1:" + strconv.Itoa(routePorts[i])
	}
	for i, n := range nodes {
		conf := filepath.Join(dir, n.name+".conf")
		body := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
max_payload: 8MB
jetstream: enabled
cluster {
  name: touchstream-faults
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n.name, n.client, routePorts[i], strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		n.proc = testkit.NewProcess(t, "nats-"+n.name, bin, "nats", "--config", conf, "--port", strconv.Itoa(n.client),
			"--data-dir", filepath.Join(dir, n.name), "--log-level", "warn")
		n.proc.Start()
	}
	for _, n := range nodes {
		testkit.WaitTCP(t, n.client)
	}
	return nodes
}

// connectCluster connects to all three nodes, reconnecting for ever, and waits until
// JetStream answers (a meta leader is elected).
func connectCluster(t *testing.T, nodes []*natsNode) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url()
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectBufSize(64<<20), nats.Name("touchstream-faults"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, func() bool { _, err := js.AccountInfo(t.Context()); return err == nil })
	return nc, js
}

// streamInfo is the named stream's info, nil while it cannot be read (no leader).
func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		return nil
	}
	info, err := s.Info(t.Context())
	if err != nil || info.Cluster == nil {
		return nil
	}
	return info
}

// loadCounts is what the producers saw: every event acknowledged, by id, with the
// stream sequence of its stored copy.
type loadCounts struct {
	mu          sync.Mutex
	acked       map[string]uint64 // event id -> stream sequence
	bySeq       map[uint64]*events.Event
	perCustomer map[string]int64
	duplicates  int // acknowledgements of a retry that found the original stored
	failures    int // publish attempts that failed and were retried
	errs        map[string]int
	lastAck     time.Time
	longestGap  time.Duration // longest time without any acknowledgement
}

func (l *loadCounts) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// produce publishes n events for the customers prefix+0..customers-1 in batches at a
// steady pace, retrying failed events with the same id until each is acknowledged.
func produce(ctx context.Context, pub *events.Publisher, l *loadCounts, prefix string, n, customers, batchSize int, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	at := time.Now().Add(-time.Hour)
	for off := 0; off < n; off += batchSize {
		batch := make([]*events.Event, 0, batchSize)
		for i := off; i < min(off+batchSize, n); i++ {
			cust := fmt.Sprintf("%s%05d", prefix, i%customers)
			var p events.Payload
			switch i % 3 {
			case 0:
				p = events.RechargeCompleted{RechargeID: prefix + "R" + strconv.Itoa(i), Amount: events.CNY(3000), Credited: events.CNY(3000), Method: "wechat_pay"}
			case 1:
				p = events.CallCompleted{CallID: prefix + "CL" + strconv.Itoa(i), Direction: "inbound", Queue: "billing", WaitSeconds: 20,
					HandlingSeconds: 180, Answered: true, Outcome: "resolved"}
			default:
				p = events.StoreVisited{StoreID: "S7", Purpose: "payment", DurationSeconds: 300}
			}
			e, err := events.NewEvent(cust, at, p)
			if err != nil {
				return err
			}
			batch = append(batch, e)
		}
		deadline := time.Now().Add(45 * time.Second)
		for len(batch) > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			results := pub.PublishBatch(ctx, batch)
			var retry []*events.Event
			l.mu.Lock()
			now := time.Now()
			for i, r := range results {
				if r.Err != nil {
					l.failures++
					l.errs[errorKind(r.Err)]++
					retry = append(retry, batch[i])
					continue
				}
				if r.Duplicate {
					l.duplicates++
				}
				if _, seen := l.acked[batch[i].ID]; !seen {
					l.acked[batch[i].ID] = r.Seq
					l.bySeq[r.Seq] = batch[i]
					l.perCustomer[batch[i].Subject]++
				}
				if !l.lastAck.IsZero() && now.Sub(l.lastAck) > l.longestGap {
					l.longestGap = now.Sub(l.lastAck)
				}
				l.lastAck = now
			}
			l.mu.Unlock()
			if batch = retry; len(batch) > 0 {
				if time.Now().After(deadline) {
					return fmt.Errorf("%d events of batch %d not acknowledged within 45s: %v", len(batch), off/batchSize, results[0].Err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		<-tick.C
	}
	return nil
}

// errorKind names a publish error for the log without its varying details.
func errorKind(err error) string {
	for _, s := range []error{events.ErrAckUnknown, events.ErrStreamRefused, nats.ErrNoResponders, nats.ErrTimeout, nats.ErrConnectionClosed} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// TestNATSNodeKilledUnderLoad runs a three-node JetStream cluster with the TOUCHPOINTS
// and SIGNALS streams at three replicas, two producers publishing 100,000 events at a
// steady pace and a projector process folding them. Mid-load it SIGKILLs the node that
// leads TOUCHPOINTS and restarts it on the same ports and store a few seconds later.
// Publishing goes on through the failover, every event acknowledged is in the stream
// exactly once (no loss, retries deduplicated by event id), the restarted node catches
// up and can lead the stream with every message, and the projector applies every event
// exactly once to each read model.
func TestNATSNodeKilledUnderLoad(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	bin := testkit.BuildBinary(t)
	nodes := startNATSCluster(t, bin, dir)
	nc, js := connectCluster(t, nodes)

	def := streams.Default()
	def.Touchpoints.Replicas, def.Signals.Replicas = 3, 3
	waitUntil(t, 30*time.Second, func() bool { _, err := streams.Apply(t.Context(), js, def); return err == nil })
	stream := def.Layout.Streams[0].Name
	t.Logf("cluster formed and streams created at 3 replicas (%s)", time.Since(start).Round(10*time.Millisecond))

	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url()
	}
	c := &cluster{t: t, bin: bin, dir: dir, natsURL: strings.Join(urls, ","), nc: nc, js: js, layout: def.Layout}
	c.deploy = filepath.Join(dir, "deploy")
	if err := os.MkdirAll(filepath.Join(dir, "data", "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(c.deploy, 0o755); err != nil {
		t.Fatal(err)
	}
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
	if err := os.WriteFile(filepath.Join(dir, "data", "secrets", "phone-index.key"),
		[]byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.pool, c.dbURL = testkit.Pool(t)
	c.projector("a").Start()
	t.Logf("projector started (%s)", time.Since(start).Round(10*time.Millisecond))

	pub, err := events.NewPublisher(t.Context(), nc, events.WithSource("urn:touchstream:test:natscluster"), events.WithLayout(def.Layout),
		events.WithAckTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })

	// Two producers over disjoint customers (each customer's events stay in order),
	// 50,000 events each in batches of 250 every 50 ms: at most 10,000 events a second
	// together (about 6,500 on two cores).
	const perProducer, customers, batchSize = 50_000, 5_000, 250
	load := &loadCounts{acked: map[string]uint64{}, bySeq: map[uint64]*events.Event{}, perCustomer: map[string]int64{}, errs: map[string]int{}}
	var wg sync.WaitGroup
	produced := make(chan error, 2)
	loadStart := time.Now()
	for _, prefix := range []string{"NA", "NB"} {
		wg.Go(func() {
			produced <- produce(t.Context(), pub, load, prefix, perProducer, customers, batchSize, 50*time.Millisecond)
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// Mid-load: SIGKILL the TOUCHPOINTS leader, keep publishing, restart it.
	waitUntil(t, 60*time.Second, func() bool { return load.ackedCount() >= 25_000 })
	var info *jetstream.StreamInfo
	waitUntil(t, 10*time.Second, func() bool { info = streamInfo(t, js, stream); return info != nil && info.Cluster.Leader != "" })
	var victim *natsNode
	for _, n := range nodes {
		if n.name == info.Cluster.Leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("stream leader %q is none of the nodes", info.Cluster.Leader)
	}
	victim.proc.Kill()
	killedAt, ackedAtKill := time.Now(), load.ackedCount()
	t.Logf("SIGKILLed %s, the %s leader, with %d events acknowledged (%s into the load)", victim.name, stream, ackedAtKill,
		killedAt.Sub(loadStart).Round(10*time.Millisecond))
	waitUntil(t, 30*time.Second, func() bool { return load.ackedCount() >= ackedAtKill+5_000 })
	t.Logf("publishing resumed: %d more events acknowledged %s after the kill", load.ackedCount()-ackedAtKill,
		time.Since(killedAt).Round(10*time.Millisecond))
	time.Sleep(3 * time.Second)
	victim.proc.Start()
	restartedAt, ackedAtRestart := time.Now(), load.ackedCount()
	t.Logf("restarted %s on the same ports and store after %s; %d events acknowledged while it was down",
		victim.name, restartedAt.Sub(killedAt).Round(10*time.Millisecond), ackedAtRestart-ackedAtKill)
	if i := streamInfo(t, js, stream); i != nil {
		t.Logf("%s leads %s", i.Cluster.Leader, stream)
	}

	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("load did not finish within 90s: %d events acknowledged", load.ackedCount())
	}
	close(produced)
	for err := range produced {
		if err != nil {
			t.Fatal(err)
		}
	}
	loadTime := time.Since(loadStart)
	acked := load.ackedCount()
	t.Logf("load: %d distinct events acknowledged in %s (%.0f/s); %d failed attempts retried %v; %d retries acknowledged as duplicates; longest gap without acks %s",
		acked, loadTime.Round(10*time.Millisecond), float64(acked)/loadTime.Seconds(), load.failures, load.errs, load.duplicates,
		load.longestGap.Round(10*time.Millisecond))
	if acked != 2*perProducer {
		t.Fatalf("%d distinct events acknowledged, want %d", acked, 2*perProducer)
	}
	if after := acked - ackedAtRestart; after < 10_000 {
		t.Errorf("only %d events acknowledged after %s restarted, want at least 10000", after, victim.name)
	}

	// No acknowledged event lost, none stored twice: the stream holds exactly the
	// acknowledged events, at the sequences their acknowledgements named.
	seqs := map[uint64]bool{}
	for _, s := range load.acked {
		seqs[s] = true
	}
	info = streamInfo(t, js, stream)
	if info == nil {
		t.Fatal("stream info unavailable after the load")
	}
	if info.State.Msgs != uint64(acked) || info.State.FirstSeq != 1 || info.State.LastSeq != uint64(acked) || len(seqs) != acked {
		t.Fatalf("stream holds %d messages (%d-%d); acknowledgements name %d distinct sequences; want %d, 1-%d",
			info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, len(seqs), acked, acked)
	}

	// Retries are safe across the failover: the 1,000 events stored last before the
	// kill, published again with the same ids, are recognised by the new leader as
	// duplicates of the originals.
	var again []*events.Event
	for seq := uint64(ackedAtKill) - 999; seq <= uint64(ackedAtKill); seq++ {
		again = append(again, load.bySeq[seq])
	}
	for i, r := range pub.PublishBatch(t.Context(), again) {
		if want := uint64(ackedAtKill) - 999 + uint64(i); r.Err != nil || !r.Duplicate || r.Seq != want {
			t.Fatalf("event of sequence %d published again: duplicate %t, sequence %d, error %v; want a duplicate of %d", want, r.Duplicate, r.Seq, r.Err, want)
		}
	}
	if info = streamInfo(t, js, stream); info == nil || info.State.Msgs != uint64(acked) {
		t.Fatalf("stream after publishing 1000 events again: %+v, want %d messages", info, acked)
	}
	t.Logf("1000 events stored before the kill, published again: all duplicates of their original sequences; stream still %d messages", acked)

	// The restarted node catches up: every replica current with no lag, then the node
	// itself leads the stream and reports every message.
	waitUntil(t, 30*time.Second, func() bool {
		i := streamInfo(t, js, stream)
		if i == nil || len(i.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range i.Cluster.Replicas {
			if !r.Current || r.Offline || r.Lag != 0 {
				return false
			}
		}
		return true
	})
	t.Logf("%s caught up %s after its restart", victim.name, time.Since(restartedAt).Round(10*time.Millisecond))
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": victim.name}})
	waitUntil(t, 30*time.Second, func() bool {
		if i := streamInfo(t, js, stream); i != nil && i.Cluster.Leader == victim.name {
			info = i
			return true
		}
		_, _ = nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, req, 2*time.Second)
		time.Sleep(500 * time.Millisecond)
		return false
	})
	if info.State.Msgs != uint64(acked) || info.State.LastSeq != uint64(acked) {
		t.Fatalf("%s leads %s with %d messages (last %d), want %d", victim.name, stream, info.State.Msgs, info.State.LastSeq, acked)
	}
	t.Logf("%s leads %s again with all %d messages", victim.name, stream, info.State.Msgs)

	// Projections continue: every read model applies every event exactly once.
	c.waitApplied(uint64(acked), 60*time.Second)
	applied := map[string]int64{}
	rows, err := c.pool.Query(t.Context(), `SELECT target, sum(applied) FROM projections.checkpoints GROUP BY target`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var target string
		var n int64
		if err := rows.Scan(&target, &n); err != nil {
			t.Fatal(err)
		}
		applied[target] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for target, n := range applied {
		if n != int64(acked) {
			t.Errorf("read model %s applied %d events, want %d", target, n, acked)
		}
	}
	t.Logf("events applied per read model: %v", applied)
	c.checkExactlyOnce(load.perCustomer, uint64(acked))
	t.Logf("projector applied all %d events %s after the load ended; test took %s", acked,
		time.Since(loadStart.Add(loadTime)).Round(10*time.Millisecond), time.Since(start).Round(10*time.Millisecond))
}
