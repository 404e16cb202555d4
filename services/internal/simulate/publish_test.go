package simulate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/testkit"
)

// realGateway runs the real gateway over an embedded JetStream and a fresh
// PostgreSQL database (the idempotency index), with the channels of
// deploy/channels.json. It returns the gateway's base URL and the log stream.
func realGateway(t *testing.T) (string, jetstream.Stream) {
	t.Helper()
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	def := streams.Default()
	if _, err := streams.Apply(ctx, js, def); err != nil {
		t.Fatalf("apply streams: %v", err)
	}
	pool, _ := testkit.Pool(t)
	if err := dedup.Migrate(ctx, pool); err != nil {
		t.Fatalf("dedup migrate: %v", err)
	}
	chs, err := gateway.LoadChannels(deployFile("channels.json"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Channels: chs, ShutdownTimeout: 5 * time.Second},
		gateway.Deps{NATS: nc, Layout: def.Layout, Keys: testkit.NewKeys(), Dedup: pool, Log: testkit.Logger(t), Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(gctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
	})
	st, err := js.Stream(ctx, "TOUCHPOINTS")
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + ln.Addr().String(), st
}

// storedEvents reads the whole stream in sequence order.
func storedEvents(t *testing.T, st jetstream.Stream) []events.Event {
	t.Helper()
	ctx := t.Context()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Event
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		var e events.Event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		out = append(out, e)
	}
	return out
}

// checkLogOrder: in the log, every customer's registration comes first and their
// events are in time order, whatever channels and requests carried them.
func checkLogOrder(t *testing.T, evs []events.Event) int {
	t.Helper()
	last := map[string]time.Time{}
	for _, e := range evs {
		prev, known := last[e.Subject]
		switch {
		case !known && e.Type != events.TypeCustomerRegistered:
			t.Fatalf("first event of %s in the log is %s %s", e.Subject, e.Type, e.ID)
		case known && e.Time.Before(prev):
			t.Fatalf("event %s of %s at %s stored after one at %s", e.ID, e.Subject, e.Time, prev)
		}
		last[e.Subject] = e.Time
	}
	return len(last)
}

func simConfig(t *testing.T, url string, seed uint64) Config {
	t.Helper()
	p := params(t)
	return Config{Gateway: url, Params: p, Channels: channels(t, p), Seed: seed, Log: testkit.Logger(t),
		Concurrency: 4, BatchSize: 100, Linger: 50 * time.Millisecond}
}

func run(t *testing.T, cfg Config) Stats {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err != nil {
		t.Fatalf("run: %v", err)
	}
	return s.Stats()
}

// TestPublishEndToEnd sends simulated traffic through the real gateway and checks
// every event is stored, in order per customer; sending the same seed again stores
// nothing new.
func TestPublishEndToEnd(t *testing.T) {
	url, st := realGateway(t)
	now := time.Now()

	// History: three days of 300 customers.
	cfg := simConfig(t, url, 7)
	cfg.Customers, cfg.HistoryDays, cfg.Rate = 300, 3, 50_000
	cfg.Now = func() time.Time { return now }
	var progress strings.Builder
	cfg.Progress, cfg.ProgressInterval = &progress, 100*time.Millisecond
	got := run(t, cfg)
	// How many events three days hold depends on the calendar (bills fall at month
	// ends); every customer at least registers.
	if got.Generated < int64(cfg.Customers) || got.Sent != got.Generated || got.Stored != got.Generated || got.Refused != 0 || got.Abandoned != 0 {
		t.Fatalf("history: %+v, want every generated event sent and stored", got)
	}
	stored := storedEvents(t, st)
	if int64(len(stored)) != got.Stored {
		t.Fatalf("the log holds %d events, the gateway said %d stored", len(stored), got.Stored)
	}
	custs := checkLogOrder(t, stored)
	t.Logf("history: %d events of %d customers stored (%d retries); progress: %q", got.Stored, custs, got.Retries, lastLine(progress.String()))

	// The same seed again: the same ids, all duplicates.
	again := run(t, cfg)
	if diff := cmp.Diff(Stats{Generated: got.Generated, Sent: got.Generated, Duplicate: got.Generated},
		Stats{Generated: again.Generated, Sent: again.Sent, Duplicate: again.Duplicate, Stored: again.Stored, Refused: again.Refused}); diff != "" {
		t.Errorf("re-run of the same seed (-want +got):\n%s", diff)
	}

	// Live: event time now, until MaxEvents.
	live := simConfig(t, url, 8)
	live.Customers, live.Rate, live.MaxEvents = 200, 2000, 1500
	got = run(t, live)
	if got.Generated != 1500 || got.Stored != 1500 || got.Refused != 0 {
		t.Fatalf("live: %+v, want 1500 stored", got)
	}
	stored = storedEvents(t, st)
	checkLogOrder(t, stored)
	t.Logf("live: %d stored, %d dropped by the calendar rules", got.Stored, got.Dropped)
}

// TestRunCancelFlushes: cancelling a live run stops it cleanly: nil, and every event
// sent has its outcome.
func TestRunCancelFlushes(t *testing.T) {
	url, st := realGateway(t)
	cfg := simConfig(t, url, 9)
	cfg.Customers, cfg.Rate = 500, 400
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(1500*time.Millisecond, cancel)
	start := time.Now()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run after cancellation: %v, want nil", err)
	}
	got := s.Stats()
	if got.Sent == 0 || got.Abandoned != 0 || got.Stored+got.Duplicate+got.Refused != got.Sent || got.Sent != got.Generated {
		t.Fatalf("after cancellation: %+v, want every event sent and settled", got)
	}
	if n := len(storedEvents(t, st)); int64(n) != got.Stored {
		t.Errorf("the log holds %d events, %d reported stored", n, got.Stored)
	}
	t.Logf("cancelled after %s: %+v", time.Since(start).Round(time.Millisecond), got)
}

// TestWrongKey: a key the gateway does not know stops the run with an error.
func TestWrongKey(t *testing.T) {
	url, _ := realGateway(t)
	cfg := simConfig(t, url, 10)
	cfg.Customers, cfg.MaxEvents = 20, 50
	for i := range cfg.Channels {
		cfg.Channels[i].APIKey = "not-a-key"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); !errors.Is(err, errUnauthorized) {
		t.Fatalf("Run with an unknown key: %v, want %v", err, errUnauthorized)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// batchServer is a real HTTP server speaking the gateway's batch protocol with
// trouble: it answers 429 to the first request, 413 to the first batch of more than
// 40 events, "unknown" the first time it sees one event in seven (as if the
// acknowledgement were lost after storing), and refuses surveys. It checks the batch
// format and records the order in which each customer's events first arrive.
type batchServer struct {
	t       *testing.T
	keys    map[string]string // key -> source
	mu      sync.Mutex
	n       int
	split   bool
	seen    map[string]bool
	order   map[string][]int // customer -> event numbers in first-arrival order
	refused int
}

func (b *batchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	fail := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		if code == 429 {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"request_id":"x","error":%q}`, msg)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/events" || r.Header.Get("Content-Type") != BatchContentType {
		b.t.Errorf("request %s %s %s", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		fail(400, "bad request")
		return
	}
	key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	source, ok := b.keys[key]
	if !ok {
		fail(401, "unknown API key")
		return
	}
	body, _ := io.ReadAll(r.Body)
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		b.t.Errorf("body is not a JSON array: %v", err)
		fail(400, "not a batch")
		return
	}
	if b.n == 1 {
		fail(429, "slow down")
		return
	}
	if len(raw) > 40 && !b.split {
		b.split = true
		fail(413, "too many")
		return
	}
	var resp Response
	for i, m := range raw {
		var e events.Event
		if err := json.Unmarshal(mustJSON(b.t, m), &e); err != nil {
			b.t.Errorf("event %d: %v", i, err)
			continue
		}
		for _, attr := range []string{"specversion", "id", "source", "type", "subject", "time", "dataschema", "data"} {
			if _, ok := m[attr]; !ok {
				b.t.Errorf("event %s has no %s", e.ID, attr)
			}
		}
		if e.Source != source {
			b.t.Errorf("event %s of source %s sent with the key of %s", e.ID, e.Source, source)
		}
		res := Result{Index: i, ID: e.ID}
		parts := strings.Split(e.ID, "-")
		num, _ := strconv.Atoi(parts[len(parts)-1])
		switch {
		case e.Type == events.TypeSurveyAnswered:
			res.Status, res.Errors = StatusRefused, []FieldError{{Field: "/data/comment", Reason: "says '<personal text>'"}}
			b.refused++
		case b.seen[e.ID]:
			res.Status = StatusDuplicate
		case crc32.ChecksumIEEE([]byte(e.ID))%7 == 0:
			res.Status, res.Reason = StatusUnknown, "acknowledgement lost"
			b.seen[e.ID] = true
			b.order[e.Subject] = append(b.order[e.Subject], num)
		default:
			res.Status = StatusStored
			b.seen[e.ID] = true
			b.order[e.Subject] = append(b.order[e.Subject], num)
		}
		resp.Results = append(resp.Results, res)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusMultiStatus)
	_ = json.NewEncoder(w).Encode(resp)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSenderRetries drives the sender against a server that rate-limits, finds a batch
// too large, loses acknowledgements and refuses events: every event ends stored,
// duplicate (a retried "unknown") or refused, and each customer's events first reach
// the server in the order they were generated.
func TestSenderRetries(t *testing.T) {
	p := params(t)
	chs := channels(t, p)
	srv := &batchServer{t: t, keys: map[string]string{}, seen: map[string]bool{}, order: map[string][]int{}}
	for _, c := range chs {
		srv.keys[c.APIKey] = c.Source
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	cfg := simConfig(t, hs.URL, 12)
	cfg.Customers, cfg.HistoryDays, cfg.Rate, cfg.BatchSize = 150, 2, 20_000, 80
	// A fixed clock: which events two days of history hold (a survey among them, for
	// the refusals) depends on the days, so the test must not depend on today's date.
	end := time.Date(2026, 11, 23, 12, 0, 0, 0, time.FixedZone("CST", 8*3600))
	cfg.Now = func() time.Time { return end }
	got := run(t, cfg)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if got.Sent != got.Generated || got.Stored+got.Duplicate+got.Refused != got.Sent || got.Abandoned != 0 {
		t.Fatalf("%+v: want every event settled", got)
	}
	if got.Duplicate == 0 || got.Retries == 0 || int(got.Refused) != srv.refused || got.Refused == 0 {
		t.Errorf("%+v: want retries, duplicates (retried unknowns) and %d refused", got, srv.refused)
	}
	if int64(len(srv.seen)) != got.Stored+got.Duplicate {
		t.Errorf("server holds %d events, client counted %d stored and %d duplicates", len(srv.seen), got.Stored, got.Duplicate)
	}
	for c, nums := range srv.order {
		for i := 1; i < len(nums); i++ {
			if nums[i] < nums[i-1] {
				t.Fatalf("customer %s: event %d arrived after event %d", c, nums[i], nums[i-1])
			}
		}
	}
	t.Logf("%+v over %d requests", got, srv.n)
}
