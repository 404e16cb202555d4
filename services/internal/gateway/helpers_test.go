package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/services/internal/gateway"
	"github.com/touchstream/touchstream/testkit"
)

// keyServer is an in-memory key service speaking the real request-reply protocol
// (events.KeyRequest/KeyReply on events.KeySubjectCustomers/IDs), so that the gateway's
// real events.KeyClient is exercised. One key per customer, created on first use.
type keyServer struct {
	mu     sync.Mutex
	byCust map[string]events.DataKey
	byID   map[string]events.DataKey
	// hold, when set, makes customer-key requests wait until it is closed; each such
	// request is announced on asked first.
	hold  chan struct{}
	asked chan struct{}
}

func startKeyServer(t testing.TB, nc *nats.Conn) *keyServer {
	t.Helper()
	ks := &keyServer{byCust: map[string]events.DataKey{}, byID: map[string]events.DataKey{}, asked: make(chan struct{}, 16)}
	serve := func(subject string, answer func(context.Context, []string) (map[string]events.DataKey, error), names func(events.KeyRequest) []string) {
		handle := func(m *nats.Msg) {
			var req events.KeyRequest
			var reply events.KeyReply
			if err := json.Unmarshal(m.Data, &req); err != nil {
				reply.Error = "bad request"
			} else if keys, err := answer(context.Background(), names(req)); err != nil {
				reply.Error = err.Error()
			} else {
				for _, k := range keys {
					reply.Keys = append(reply.Keys, k)
				}
			}
			b, _ := json.Marshal(reply)
			_ = m.Respond(b)
		}
		// Each request in its own goroutine, so that held requests do not queue others.
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) { go handle(m) })
		if err != nil {
			t.Fatalf("key server: %v", err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	serve(events.KeySubjectCustomers, ks.CustomerKeys, func(r events.KeyRequest) []string { return r.Customers })
	serve(events.KeySubjectIDs, ks.KeysByID, func(r events.KeyRequest) []string { return r.IDs })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ks
}

var _ events.KeySource = (*keyServer)(nil)

func (ks *keyServer) CustomerKeys(_ context.Context, cs []string) (map[string]events.DataKey, error) {
	ks.mu.Lock()
	hold := ks.hold
	ks.mu.Unlock()
	if hold != nil {
		ks.asked <- struct{}{}
		<-hold
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	out := map[string]events.DataKey{}
	for _, c := range cs {
		k, ok := ks.byCust[c]
		if !ok {
			k = events.DataKey{ID: "k-" + c, Customer: c, Key: make([]byte, 32)}
			_, _ = rand.Read(k.Key)
			ks.byCust[c], ks.byID[k.ID] = k, k
		}
		out[c] = k
	}
	return out, nil
}

func (ks *keyServer) KeysByID(_ context.Context, ids []string) (map[string]events.DataKey, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	out := map[string]events.DataKey{}
	for _, id := range ids {
		if k, ok := ks.byID[id]; ok {
			out[id] = k
		}
	}
	return out, nil
}

// holdRequests makes customer-key requests wait until the returned func is called.
func (ks *keyServer) holdRequests() (release func()) {
	ch := make(chan struct{})
	ks.mu.Lock()
	ks.hold = ch
	ks.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			ks.mu.Lock()
			ks.hold = nil
			ks.mu.Unlock()
			close(ch)
		})
	}
}

// Test channels and their keys.
const (
	storeKey     = "test-store-key"
	storeKey2    = "test-store-key-rotated"
	rechargeKey  = "test-recharge-key"
	limitedKey   = "test-limited-key"
	storeSrc     = "urn:touchstream:channel:store"
	rechargeSrc  = "urn:touchstream:channel:recharge"
	limitedSrc   = "urn:touchstream:channel:limited"
	rechargeType = "recharge.completed"
)

func testChannels() []gateway.Channel {
	return []gateway.Channel{
		{Name: "store", Source: storeSrc, NATSUser: "channel-store",
			AllowedTypes: []string{"customer.registered", "recharge.completed"},
			APIKeys:      []gateway.APIKey{{ID: "old", SHA256: gateway.HashKey(storeKey)}, {ID: "new", SHA256: gateway.HashKey(storeKey2)}}},
		{Name: "recharge", Source: rechargeSrc, NATSUser: "channel-recharge",
			AllowedTypes: []string{"recharge.completed"},
			APIKeys:      []gateway.APIKey{{ID: "k1", SHA256: gateway.HashKey(rechargeKey)}}},
		{Name: "limited", Source: limitedSrc, NATSUser: "channel-limited",
			AllowedTypes: []string{"recharge.completed"}, RateLimit: &gateway.RateLimit{EventsPerSecond: 1, Burst: 2},
			APIKeys: []gateway.APIKey{{ID: "k1", SHA256: gateway.HashKey(limitedKey)}}},
	}
}

type envOpts struct {
	dupWindow time.Duration         // stream duplicate window; default 2m
	cfg       func(*gateway.Config) // adjusts the gateway configuration
	noServer  bool                  // do not start an httptest server
	serve     bool                  // serve with Run (its http.Server and timeouts) instead of httptest
	noKeys    bool                  // no key service answers
	deps      func(*gateway.Deps)
}

type env struct {
	ns     *testkit.NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	pool   *pgxpool.Pool
	keys   *keyServer
	gw     *gateway.Gateway
	reg    *prometheus.Registry
	url    string
	addr   string // host:port of the listener, with serve
	def    streams.Definition
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{ns: testkit.StartNATS(t)}
	e.nc, e.js = e.ns.JetStream(t)
	e.def = streams.Default()
	if o.dupWindow > 0 {
		e.def.Touchpoints.DuplicateWindow = streams.Duration(o.dupWindow)
	}
	if _, err := streams.Apply(ctx, e.js, e.def); err != nil {
		t.Fatalf("apply streams: %v", err)
	}
	var err error
	if e.stream, err = e.js.Stream(ctx, "TOUCHPOINTS"); err != nil {
		t.Fatal(err)
	}
	e.pool, _ = testkit.Pool(t)
	if err := dedup.Migrate(ctx, e.pool); err != nil {
		t.Fatalf("dedup migrate: %v", err)
	}
	if !o.noKeys {
		e.keys = startKeyServer(t, e.ns.Connect(t))
	}
	cfg := gateway.Config{Channels: testChannels(), AckTimeout: 5 * time.Second, ShutdownTimeout: 10 * time.Second}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	e.reg = prometheus.NewRegistry()
	deps := gateway.Deps{
		NATS:     e.nc,
		Layout:   e.def.Layout,
		Keys:     events.NewKeyClient(e.nc, events.KeyClientConfig{Timeout: time.Second}),
		Dedup:    e.pool,
		Registry: e.reg,
		Log:      testkit.Logger(t),
	}
	if o.deps != nil {
		o.deps(&deps)
	}
	if o.serve {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		deps.Listener, e.addr = ln, ln.Addr().String()
	}
	if e.gw, err = gateway.New(cfg, deps); err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	if o.serve {
		testkit.Go(t, "gateway", 15*time.Second, e.gw.Run)
		e.url = "http://" + e.addr + "/v1/events"
	} else if !o.noServer {
		srv := httptest.NewServer(e.gw.Handler())
		t.Cleanup(srv.Close)
		e.url = srv.URL + "/v1/events"
	}
	return e
}

// reply is a decoded answer with its status code and headers.
type reply struct {
	code   int
	header http.Header
	body   gateway.Response
	raw    []byte
}

func (e *env) post(t testing.TB, key, contentType string, body []byte, header map[string]string) reply {
	t.Helper()
	r := postRaw(t, e.url, key, contentType, body, header)
	if err := json.Unmarshal(r.raw, &r.body); err != nil {
		t.Fatalf("response is not JSON (%d): %s", r.code, r.raw)
	}
	return r
}

// postRaw posts body and returns the answer whatever it is (body left undecoded).
func postRaw(t testing.TB, url, key, contentType string, body []byte, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{code: resp.StatusCode, header: resp.Header, raw: raw}
}

const (
	ctStructured = "application/cloudevents+json"
	ctBatch      = "application/cloudevents-batch+json"
	ctBinary     = "application/json"
)

var shanghai = time.FixedZone("CST", 8*3600)

func now() string { return time.Now().In(shanghai).Format(time.RFC3339Nano) }

// rechargeEvent is a structured-mode recharge.completed event.
func rechargeEvent(source, id, customer string, fen int) map[string]any {
	return map[string]any{
		"specversion": "1.0", "id": id, "source": source, "type": rechargeType, "subject": customer,
		"time": now(), "dataschema": "https://touchstream.dev/schemas/recharge.completed/v1",
		"data": map[string]any{"recharge_id": "R-" + id, "amount": map[string]any{"fen": fen, "currency": "CNY"}, "method": "wechat_pay"},
	}
}

// Clear personal values of registeredEvent, which must never reach the log.
const (
	clearName    = "张伟测试"
	clearPhone   = "+8613912345678"
	clearIDNum   = "110101199003074578"
	clearAddress = "广东省深圳市福田区深南大道1号"
)

func registeredEvent(source, id, customer string) map[string]any {
	return map[string]any{
		"specversion": "1.0", "id": id, "source": source, "type": "customer.registered", "subject": customer,
		"time": now(), "dataschema": "https://touchstream.dev/schemas/customer.registered/v1",
		"data": map[string]any{
			"name": clearName, "phone": clearPhone, "id_type": "resident_id", "id_number": clearIDNum, "address": clearAddress,
			"customer_type": "individual", "region": "CN-GD-SZ",
			"plan": map[string]any{"id": "4G-58", "kind": "prepaid", "monthly_fee": map[string]any{"fen": 5800, "currency": "CNY"}},
		},
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func batch(t testing.TB, evs ...map[string]any) []byte { return mustJSON(t, evs) }

// storedMsgs returns every message in the stream, in sequence order.
func (e *env) storedMsgs(t testing.TB) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	info, err := e.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := e.stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get msg %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

func (e *env) msgCount(t testing.TB) uint64 {
	t.Helper()
	info, err := e.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// eventOf decodes a stored message.
func eventOf(t testing.TB, m *jetstream.RawStreamMsg) events.Event {
	t.Helper()
	var ev events.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatalf("stored message %d: %v", m.Sequence, err)
	}
	return ev
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}
