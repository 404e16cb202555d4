package faults_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/testkit"
)

// Overload settings: far more clients and events than the in-flight budget and the
// channels' rate limits allow.
const (
	overloadFor      = 20 * time.Second
	overloadBatch    = 500       // events per request: within every channel's burst
	overloadRSSLimit = 512 << 20 // bytes
)

// overloadClient is a group of clients posting on one channel.
type overloadClient struct {
	channel, source string
	clients         int
}

// overloadTally is what the clients saw.
type overloadTally struct {
	mu         sync.Mutex
	offered    int64            // events in every request sent, retries included
	byCode     map[int]int64    // requests per HTTP status
	byStatus   map[string]int64 // events per outcome in 200 and 207 answers
	acked      map[string]int   // dedup keys (the hash of source and id) answered stored or duplicate
	noRetry    []string         // 429 and 503 answers without Retry-After
	transport  int64            // requests that got no answer
	unexpected []string         // first answers with another status
}

func (t *overloadTally) unexpectedf(format string, args ...any) {
	if len(t.unexpected) < 5 {
		t.unexpected = append(t.unexpected, fmt.Sprintf(format, args...))
	}
}

// TestGatewayOverload runs the real gateway process against an embedded JetStream and
// drives it far over capacity for 20 s: 160 clients posting batches of 500 events as fast
// as they are answered, on rate-limited channels (429) and on the unlimited crm-import
// channel, whose requests exceed the in-flight budget (503). A shed batch is resent at
// once with the same ids, like an impatient client. The gateway must shed with 429 or
// 503 and Retry-After, answer no other 5xx, keep its resident memory under 512 MB, and
// every event it answered stored or duplicate must be in the log exactly once.
func TestGatewayOverload(t *testing.T) {
	ctx := t.Context()
	bin := testkit.BuildBinary(t)
	dir := t.TempDir()
	deploy := filepath.Join(dir, "deploy")
	if err := os.Mkdir(deploy, 0o755); err != nil {
		t.Fatal(err)
	}
	def := streams.Default()
	writeJSON(t, filepath.Join(deploy, "streams.json"), def)
	channels, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "channels.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deploy, "channels.json"), channels, 0o644); err != nil {
		t.Fatal(err)
	}

	ns := testkit.StartNATS(t)
	_, js := ns.JetStream(t)
	if _, err := streams.Apply(ctx, js, def); err != nil {
		t.Fatal(err)
	}
	_, dbURL := testkit.Pool(t)
	port, admin := testkit.FreePort(t), testkit.FreePort(t)
	gw := testkit.NewProcess(t, "gateway", bin, "gateway", "--deploy-dir", deploy, "--data-dir", filepath.Join(dir, "data"),
		"--nats-url", ns.URL, "--database-url", dbURL, "--addr", "127.0.0.1:"+strconv.Itoa(port),
		"--admin-addr", "127.0.0.1:"+strconv.Itoa(admin), "--log-level", "warn")
	gw.Start()
	testkit.WaitHTTP(t, "http://127.0.0.1:"+strconv.Itoa(admin)+"/readyz")
	pid := pidOf(t, bin, "gateway")

	// Resident memory, every 100 ms until the load is over.
	var peakRSS atomic.Int64
	rssDone := make(chan struct{})
	rssStopped := make(chan struct{})
	go func() {
		defer close(rssStopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, ok := vmRSS(pid); ok && rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			select {
			case <-rssDone:
				return
			case <-tick.C:
			}
		}
	}()

	groups := []overloadClient{
		{channel: "crm-import", source: "urn:touchstream:channel:crm-import", clients: 96}, // unlimited: the in-flight budget sheds (503)
		{channel: "recharge", source: "urn:touchstream:channel:recharge", clients: 32},     // 5,000 events/s
		{channel: "store", source: "urn:touchstream:channel:store", clients: 32},           // 500 events/s
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/v1/events"
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	tally := &overloadTally{byCode: map[int]int64{}, byStatus: map[string]int64{}, acked: map[string]int{}}

	start := time.Now()
	deadline := start.Add(overloadFor)
	var wg sync.WaitGroup
	for gi, g := range groups {
		for c := range g.clients {
			wg.Go(func() { overloadClientLoop(ctx, client, url, g, fmt.Sprintf("g%dc%03d", gi, c), deadline, tally) })
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(rssDone)
	<-rssStopped
	if !gw.Running() {
		t.Fatal("the gateway exited under load")
	}

	// What the log holds: every message once per dedup key.
	inLog := map[string]int{}
	var logged int
	for _, s := range def.Layout.Streams {
		logged += readMsgIDs(t, js, s.Name, inLog)
	}
	var twice, missing int
	for k, n := range inLog {
		if n > 1 {
			twice++
			if twice <= 3 {
				t.Errorf("dedup key %s is %d times in the log", k, n)
			}
		}
	}
	for k := range tally.acked {
		if inLog[k] == 0 {
			missing++
			if missing <= 3 {
				t.Errorf("dedup key %s was answered stored or duplicate but is not in the log", k)
			}
		}
	}

	stored := tally.byStatus["stored"]
	shed := tally.byCode[http.StatusTooManyRequests] + tally.byCode[http.StatusServiceUnavailable]
	t.Logf("%s of load: offered %d events in %d requests (%.0f events/s); stored %d, duplicate %d, unknown %d, failed %d, refused %d; "+
		"answers %v; shed %d requests (%d events); %d requests unanswered; log holds %d messages (%d distinct); gateway peak RSS %.1f MB",
		elapsed.Round(time.Millisecond), tally.offered, sumCodes(tally.byCode)+tally.transport, float64(tally.offered)/elapsed.Seconds(),
		stored, tally.byStatus["duplicate"], tally.byStatus["unknown"], tally.byStatus["failed"], tally.byStatus["refused"],
		tally.byCode, shed, shed*overloadBatch, tally.transport, logged, len(inLog), float64(peakRSS.Load())/(1<<20))

	if tally.offered < 100_000 {
		t.Errorf("offered %d events, want at least 100,000 to overload the gateway", tally.offered)
	}
	if tally.byCode[http.StatusTooManyRequests] == 0 || tally.byCode[http.StatusServiceUnavailable] == 0 {
		t.Errorf("answers %v: want both 429 (rate limits) and 503 (in-flight budget)", tally.byCode)
	}
	if len(tally.noRetry) > 0 {
		t.Errorf("%d shed answers without Retry-After, e.g. %s", len(tally.noRetry), tally.noRetry[0])
	}
	for _, u := range tally.unexpected {
		t.Errorf("unexpected answer: %s", u)
	}
	if tally.transport > 0 {
		t.Errorf("%d requests got no answer", tally.transport)
	}
	if peak := peakRSS.Load(); peak == 0 || peak >= overloadRSSLimit {
		t.Errorf("gateway peak RSS %d bytes, want above 0 and under %d", peak, overloadRSSLimit)
	}
	if stored == 0 {
		t.Error("nothing stored under overload: shedding must not starve every client")
	}
	if tally.byStatus["unknown"] == 0 && tally.byStatus["failed"] == 0 && tally.transport == 0 && int64(logged) != stored {
		t.Errorf("log holds %d messages, the gateway answered %d stored", logged, stored)
	}
	if twice == 0 && missing == 0 {
		t.Logf("exactly once: all %d acknowledged events in the log once each", len(tally.acked))
	}
}

// overloadClientLoop posts batches until the deadline: a shed batch is resent at once,
// an answered one is replaced by a new batch.
func overloadClientLoop(ctx context.Context, client *http.Client, url string, g overloadClient, name string,
	deadline time.Time, tally *overloadTally) {
	key := "dev-" + g.channel + "-key"
	now := time.Now()
	var body []byte
	for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; {
		if body == nil {
			evs := make([]*events.Event, overloadBatch)
			for i := range evs {
				id := fmt.Sprintf("%s-%06d", name, n)
				n++
				e, err := events.NewEvent(fmt.Sprintf("C-OV-%05d", n%20_000), now,
					events.RechargeCompleted{RechargeID: "R-" + id, Amount: events.CNY(3000), Credited: events.CNY(3000), Method: "wechat_pay"})
				if err != nil {
					panic(err)
				}
				e.ID, e.Source = id, g.source
				evs[i] = e
			}
			body = append(body[:0], '[')
			for i, e := range evs {
				if i > 0 {
					body = append(body, ',')
				}
				body = e.AppendJSON(body)
			}
			body = append(body, ']')
		}
		code, retryAfter, resp, err := overloadPost(ctx, client, url, key, body)
		tally.mu.Lock()
		tally.offered += overloadBatch
		switch {
		case err != nil:
			if ctx.Err() == nil {
				tally.transport++
				tally.unexpectedf("%s: %v", g.channel, err)
			}
		case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
			tally.byCode[code]++
			if retryAfter == "" {
				tally.noRetry = append(tally.noRetry, fmt.Sprintf("%d on %s", code, g.channel))
			}
			if resp != nil { // a 503 of a request whose every event is unknown or failed
				tally.count(g.source, resp)
			}
		case code == http.StatusOK || code == http.StatusMultiStatus:
			tally.byCode[code]++
			if resp == nil {
				tally.unexpectedf("%d on %s without results", code, g.channel)
				break
			}
			tally.count(g.source, resp)
			if resp.Refused > 0 {
				tally.unexpectedf("%d on %s: %d events refused", code, g.channel, resp.Refused)
			}
			body = nil
		default:
			tally.byCode[code]++
			tally.unexpectedf("%d on %s", code, g.channel)
			body = nil
		}
		tally.mu.Unlock()
	}
}

// count records the outcomes of an answer's events. The caller holds the lock.
func (t *overloadTally) count(source string, r *overloadResponse) {
	for _, res := range r.Results {
		t.byStatus[res.Status]++
		if res.Status == "stored" || res.Status == "duplicate" {
			t.acked[(&events.Event{Source: source, ID: res.ID, Subject: "-"}).DedupKey()]++
		}
	}
}

type overloadResponse struct {
	Refused int `json:"refused"`
	Results []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"results"`
}

func overloadPost(ctx context.Context, client *http.Client, url, key string, body []byte) (int, string, *overloadResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", nil, err
	}
	var r overloadResponse
	if json.Unmarshal(raw, &r) != nil || len(r.Results) == 0 {
		return resp.StatusCode, resp.Header.Get("Retry-After"), nil, nil
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), &r, nil
}

// readMsgIDs reads every message of a stream (headers only) and counts each
// Nats-Msg-Id; it returns the number of messages read.
func readMsgIDs(t *testing.T, js jetstream.JetStream, stream string, into map[string]int) int {
	t.Helper()
	ctx := t.Context()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := int(info.State.Msgs)
	if total == 0 {
		return 0
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	read := 0
	for read < total {
		batch, err := cons.FetchNoWait(min(total-read, 10_000))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			into[m.Headers().Get(jetstream.MsgIDHeader)]++
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if got == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		read += got
	}
	return read
}

// pidOf finds the process running bin with the given first argument.
func pidOf(t *testing.T, bin, arg string) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil {
				continue
			}
			args := strings.Split(string(b), "\x00")
			if len(args) > 1 && args[0] == bin && args[1] == arg {
				return pid
			}
		}
	}
	t.Fatalf("no process runs %s %s", bin, arg)
	return 0
}

// vmRSS reads a process's resident set size in bytes.
func vmRSS(pid int) (int64, bool) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

func sumCodes(m map[int]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
