package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/outbox"
	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/notify"
	"github.com/touchstream/touchstream/testkit"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// receiver is a webhook endpoint: status decides each request's answer from the
// signal id and how many requests for it came before (0 for the first).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	status func(id string, prior int) int
	// requests per idempotency key; accepted per key (2xx answered); order of acceptance.
	requests map[string]int
	accepted map[string]int
	order    []string
	attempts map[string]string // the attempt header of the accepted request
	badSig   int
	delay    time.Duration
}

func newReceiver(t *testing.T, status func(id string, prior int) int) *receiver {
	t.Helper()
	r := &receiver{t: t, status: status, requests: map[string]int{}, accepted: map[string]int{}, attempts: map[string]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get(notify.HeaderIdempotencyKey)
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := notify.Verify([]byte(testSecret), req.Header.Get(notify.HeaderSignature), body, time.Now(), time.Minute); err != nil {
		r.badSig++
	}
	var s outbox.Signal
	if err := json.Unmarshal(body, &s); err != nil || s.ID != id || req.Header.Get(notify.HeaderSignal) != s.Type ||
		req.Header.Get("Content-Type") != "application/json" {
		r.badSig++
	}
	prior := r.requests[id]
	r.requests[id]++
	code := r.status(id, prior)
	if code/100 == 2 {
		r.accepted[id]++
		r.order = append(r.order, id)
		r.attempts[id] = req.Header.Get(notify.HeaderAttempt)
	}
	w.WriteHeader(code)
}

func (r *receiver) setStatus(f func(id string, prior int) int) {
	r.mu.Lock()
	r.status = f
	r.mu.Unlock()
}

// snapshot returns the number of distinct keys accepted, of requests, and of
// signature failures.
func (r *receiver) snapshot() (accepted, requests, badSig int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.requests {
		requests += n
	}
	return len(r.accepted), requests, r.badSig
}

func always(code int) func(string, int) int { return func(string, int) int { return code } }

// env provides the stack: NATS with SIGNALS, a database, and a publisher of signals.
type env struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	pool *pgxpool.Pool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	n := testkit.StartNATS(t)
	nc, js := n.JetStream(t)
	if _, err := js.CreateStream(t.Context(), streams.Default().SignalsConfig()); err != nil {
		t.Fatalf("create SIGNALS: %v", err)
	}
	pool, _ := testkit.Pool(t)
	if err := notify.Migrate(t.Context(), pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return &env{nc: nc, js: js, pool: pool}
}

// publish stores n signals, alternating two types, as the outbox forwarder does, and
// returns their ids in order.
func (e *env) publish(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		typ := "loyalty.tier_changed"
		if i%2 == 1 {
			typ = "churn.alert_raised"
		}
		cause := events.EventRef{Source: "urn:touchstream:test", ID: fmt.Sprintf("ev-%d-%s", i, testkit.Unique())}
		s := outbox.Signal{ID: outbox.NewID(typ, cause, ""), Type: typ, Customer: fmt.Sprintf("C%04d", i), Partition: i % 4,
			Time: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), CausedBy: cause, Seq: uint64(i + 1), Target: "test_v1",
			Data: json.RawMessage(`{"n":` + fmt.Sprint(i) + `}`)}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.js.PublishMsg(t.Context(), &nats.Msg{Subject: "signals." + typ, Data: b, Header: nats.Header{}},
			jetstream.WithMsgID(s.ID), jetstream.WithExpectStream("SIGNALS")); err != nil {
			t.Fatalf("publish: %v", err)
		}
		ids = append(ids, s.ID)
	}
	return ids
}

// testConfig has short backoffs and timeouts.
func testConfig(hooks ...notify.Webhook) notify.Config {
	return notify.Config{
		Webhooks:        hooks,
		Env:             config.MapEnv(map[string]string{"HOOK_SECRET": testSecret}),
		InitialInterval: 5 * time.Millisecond,
		Multiplier:      2,
		MaxInterval:     50 * time.Millisecond,
		MaxRetries:      5,
		CloseTimeout:    3 * time.Second,
	}
}

func hook(name string, r *receiver) notify.Webhook {
	return notify.Webhook{Name: name, URL: r.srv.URL, SecretEnv: "HOOK_SECRET", Timeout: notify.Duration(500 * time.Millisecond), Start: notify.StartAll}
}

// start runs a notifier until the returned stop is called (or the test ends).
func (e *env) start(t *testing.T, cfg notify.Config) (n *notify.Notifier, stop func()) {
	t.Helper()
	n, err := notify.New(cfg, notify.Deps{Pool: e.pool, NATS: e.nc, Registry: prometheus.NewRegistry(), Log: testkit.Logger(t)})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	return n, testkit.Go(t, "notifier", 15*time.Second, n.Run)
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func parked(t *testing.T, pool *pgxpool.Pool, webhook string) []notify.ParkedDelivery {
	t.Helper()
	ps, err := notify.Parked(context.Background(), pool, webhook, 1000)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("parked: %v", err)
	}
	return ps
}
