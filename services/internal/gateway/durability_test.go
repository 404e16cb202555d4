package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/testkit"
)

// TestDurabilityUnderKills runs the real binary: `touchstream nats` and `touchstream
// gateway` as child processes. Several clients stream 100,000 recharge.completed events
// in batches while the gateway and then the NATS server are SIGKILLed and restarted;
// clients re-send (same ids) every event that did not get a stored or duplicate
// outcome. Afterwards every event is in the stream exactly once, at the sequence its
// acknowledgement named.
func TestDurabilityUnderKills(t *testing.T) {
	const (
		total     = 100_000
		batchSize = 500
		clients   = 4
		customers = 2_000
	)
	dir := t.TempDir()
	bin := testkit.BuildBinary(t)
	deploy := filepath.Join(dir, "deploy")
	if err := os.Mkdir(deploy, 0o755); err != nil {
		t.Fatal(err)
	}
	const key = "durability-test-key"
	const source = "urn:touchstream:channel:durability"
	writeJSON(t, filepath.Join(deploy, "streams.json"), streams.Default())
	writeJSON(t, filepath.Join(deploy, "channels.json"), gateway.ChannelFile{Channels: []gateway.Channel{{
		Name: "durability", Source: source, NATSUser: "channel-durability", AllowedTypes: []string{rechargeType},
		APIKeys: []gateway.APIKey{{ID: "k1", SHA256: gateway.HashKey(key)}},
	}}})
	natsPort, gwAddr, adminAddr := testkit.FreePort(t), "127.0.0.1:"+strconv.Itoa(testkit.FreePort(t)), "127.0.0.1:"+strconv.Itoa(testkit.FreePort(t))
	natsURL := "nats://127.0.0.1:" + strconv.Itoa(natsPort)
	dbURL := testkit.Database(t)

	natsProc := testkit.NewProcess(t, "nats", bin, "nats", "--data-dir", filepath.Join(dir, "data"), "--port", strconv.Itoa(natsPort))
	gwProc := testkit.NewProcess(t, "gateway", bin, "gateway",
		"--deploy-dir", deploy, "--nats-url", natsURL, "--addr", gwAddr, "--admin-addr", adminAddr,
		"--database-url", dbURL, "--ack-timeout", "2s", "--shutdown-timeout", "5s", "--log-level", "warn")
	natsProc.Start()
	testkit.WaitTCP(t, natsPort)
	gwProc.Start()
	testkit.WaitHTTP(t, "http://"+adminAddr+"/readyz")

	// acked[i] is the sequence at which event i was acknowledged (stored or duplicate).
	acked := make([]atomic.Uint64, total)
	var ackedCount atomic.Int64
	at := time.Now().In(shanghai).Format(time.RFC3339Nano)
	eventJSON := func(i int) string {
		id := strconv.Itoa(i)
		return `{"specversion":"1.0","id":"dur-` + id + `","source":"` + source + `","type":"recharge.completed","subject":"C-` +
			strconv.Itoa(i%customers) + `","time":"` + at + `","dataschema":"https://touchstream.dev/schemas/recharge.completed/v1",` +
			`"data":{"recharge_id":"R-` + id + `","amount":{"fen":5000,"currency":"CNY"},"method":"cash"}}`
	}
	batches := make(chan []int, total/batchSize)
	for start := 0; start < total; start += batchSize {
		b := make([]int, 0, batchSize)
		for i := start; i < min(start+batchSize, total); i++ {
			b = append(b, i)
		}
		batches <- b
	}
	close(batches)

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 20 * time.Second}
	var attempts, resent atomic.Int64
	send := func(pending []int) []int {
		var body bytes.Buffer
		body.WriteByte('[')
		for k, i := range pending {
			if k > 0 {
				body.WriteByte(',')
			}
			body.WriteString(eventJSON(i))
		}
		body.WriteByte(']')
		attempts.Add(1)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+gwAddr+"/v1/events", &body)
		req.Header.Set("Content-Type", ctBatch)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := client.Do(req)
		if err != nil {
			return pending
		}
		defer resp.Body.Close()
		var r gateway.Response
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Results) != len(pending) {
			return pending
		}
		var left []int
		for k, res := range r.Results {
			i := pending[k]
			switch res.Status {
			case gateway.StatusStored, gateway.StatusDuplicate:
				if acked[i].Swap(res.Seq) == 0 {
					ackedCount.Add(1)
				}
			case gateway.StatusRefused:
				t.Errorf("event %d refused: %+v", i, res.Errors)
			default:
				left = append(left, i)
			}
		}
		return left
	}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for b := range batches {
				pending := b
				for wait := 50 * time.Millisecond; len(pending) > 0; wait = min(2*wait, time.Second) {
					if ctx.Err() != nil {
						return
					}
					if pending = send(pending); len(pending) == 0 {
						break
					}
					resent.Add(int64(len(pending)))
					time.Sleep(wait)
				}
			}
		})
	}

	// Chaos: kill the gateway a quarter of the way, NATS a little past half way.
	waitCount := func(n int64) {
		for ackedCount.Load() < n && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCount(total / 4)
	gwProc.Kill()
	t.Logf("gateway killed at %d acknowledged", ackedCount.Load())
	time.Sleep(300 * time.Millisecond)
	gwProc.Start()
	testkit.WaitHTTP(t, "http://"+adminAddr+"/readyz")
	waitCount(total * 55 / 100)
	natsProc.Kill()
	t.Logf("nats killed at %d acknowledged", ackedCount.Load())
	time.Sleep(500 * time.Millisecond)
	natsProc.Start()
	testkit.WaitTCP(t, natsPort)

	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("clients did not finish: %d of %d acknowledged", ackedCount.Load(), total)
	}
	t.Logf("%d requests, %d event re-sends", attempts.Load(), resent.Load())

	// Every event acknowledged is in the stream exactly once, at its acknowledged seq.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	keyAt, count := readDedupKeys(t, nc)
	seen := map[string]int{}
	for _, k := range keyAt {
		seen[k]++
	}
	for i := range total {
		ev := events.Event{Source: source, ID: "dur-" + strconv.Itoa(i), Subject: "C-" + strconv.Itoa(i%customers)}
		k := ev.DedupKey()
		if n := seen[k]; n != 1 {
			t.Errorf("event %d is in the stream %d times", i, n)
		}
		if seq := acked[i].Load(); keyAt[seq] != k {
			t.Errorf("event %d was acknowledged at seq %d, which holds another event", i, seq)
		}
	}
	if count != total {
		t.Errorf("stream holds %d messages, want %d", count, total)
	}
}

// readDedupKeys reads the whole stream with an ordered consumer: seq -> Nats-Msg-Id.
func readDedupKeys(t *testing.T, nc *nats.Conn) (map[uint64]string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "TOUCHPOINTS")
	if err != nil {
		t.Fatal(err)
	}
	last := s.CachedInfo().State.LastSeq
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]string{}
	n := 0
	for n < int(s.CachedInfo().State.Msgs) {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			out[md.Sequence.Stream] = m.Headers().Get(jetstream.MsgIDHeader)
			n++
			got++
			if md.Sequence.Stream >= last {
				return out, n
			}
		}
		if got == 0 {
			t.Fatalf("stream read stalled at %d messages", n)
		}
	}
	return out, n
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
