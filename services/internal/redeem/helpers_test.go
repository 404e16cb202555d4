package redeem_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/services/internal/redeem"
	"github.com/touchstream/touchstream/testkit"
)

// fixture is a redemption API over a real PostgreSQL and an embedded JetStream log.
// Balances come from a plain table (test_balances) through a BalanceFunc with the
// signature of loyalty.Available, read in the service's transaction as the real one.
type fixture struct {
	pool   *pgxpool.Pool
	nats   *testkit.NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	layout events.Layout
	pub    *events.Publisher
	now    time.Time
	logs   *syncBuffer
	api    *redeem.Server
	srv    *httptest.Server
	doc    *testkit.OpenAPI
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, redeem.Config{}, balanceFromTable)
}

func newFixtureWith(t testing.TB, cfg redeem.Config, balance redeem.BalanceFunc) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{logs: &syncBuffer{}}
	f.pool, _ = testkit.Pool(t)
	f.nats = testkit.StartNATS(t)
	f.nc, f.js = f.nats.JetStream(t)
	def := streams.Default()
	def.Layout.Partitions = 8
	def.Layout.Streams[0].Last = 7
	if _, err := streams.Apply(ctx, f.js, def); err != nil {
		t.Fatal(err)
	}
	f.layout = def.Layout
	if err := redeem.Migrate(ctx, f.pool); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `CREATE TABLE public.test_balances (customer text PRIMARY KEY, points bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var err error
	f.pub, err = events.NewPublisher(ctx, f.nc, events.WithLayout(f.layout), events.WithSource(redeem.Source))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.pub.Close() })
	f.now = time.Now().UTC().Truncate(time.Second)
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return f.now }
	}
	f.serve(t, cfg, balance)
	return f
}

func (f *fixture) serve(t testing.TB, cfg redeem.Config, balance redeem.BalanceFunc) {
	t.Helper()
	api, err := redeem.New(cfg, redeem.Deps{Pool: f.pool, Publisher: f.pub, Balance: balance, Registry: prometheus.NewRegistry(),
		Log: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	f.api = api
	f.srv = httptest.NewServer(api.Handler())
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", f.logs.String())
		}
	})
	f.loadDocument(t)
}

// balanceFromTable is the test's balance source: test_balances, 0 for a member not in
// it.
func balanceFromTable(ctx context.Context, q projections.Querier, _, customer string, _ time.Time) (int64, error) {
	var points int64
	err := q.QueryRow(ctx, `SELECT coalesce((SELECT points FROM public.test_balances WHERE customer = $1), 0)`, customer).Scan(&points)
	return points, err
}

func (f *fixture) setBalance(t testing.TB, customer string, points int64) {
	t.Helper()
	if _, err := f.pool.Exec(context.Background(), `INSERT INTO public.test_balances VALUES ($1, $2)
		ON CONFLICT (customer) DO UPDATE SET points = excluded.points`, customer, points); err != nil {
		t.Fatal(err)
	}
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) get(t testing.TB, path string) response {
	t.Helper()
	return f.do(t, http.MethodGet, path, "", nil)
}

// post sends a JSON body.
func (f *fixture) post(t testing.TB, path, body string, header http.Header) response {
	t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	for k, vs := range header {
		h[k] = vs
	}
	return f.do(t, http.MethodPost, path, body, h)
}

// do sends a request and checks the answer against the served OpenAPI document.
func (f *fixture) do(t testing.TB, method, path, body string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: res.StatusCode, header: res.Header, body: b}
	if f.doc != nil {
		if r.header.Get("X-Request-Id") == "" {
			t.Errorf("%s %s: no X-Request-Id", req.Method, req.URL.Path)
		}
		f.doc.Conform(t, req, nil, r.status, r.header, r.body)
	}
	return r
}

// loadDocument loads the served document, validates it and builds a router over it.
func (f *fixture) loadDocument(t testing.TB) {
	t.Helper()
	f.doc = nil
	r := f.get(t, "/v1/loyalty/openapi.json")
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/loyalty/openapi.json: %d", r.status)
	}
	f.doc = testkit.LoadOpenAPI(t, r.body)
	f.get(t, "/v1/loyalty/openapi.json")
}

// count is how many events of a type the log holds.
func (f *fixture) count(t testing.TB, eventType string) uint64 {
	t.Helper()
	s, err := f.js.Stream(context.Background(), f.layout.Streams[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(f.layout.Prefix+".*."+eventType))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// event reads the event stored at seq.
func (f *fixture) event(t testing.TB, seq int64) *events.Event {
	t.Helper()
	s, err := f.js.Stream(context.Background(), f.layout.Streams[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), uint64(seq))
	if err != nil {
		t.Fatalf("get message %d: %v", seq, err)
	}
	var e events.Event
	if err := json.Unmarshal(m.Data, &e); err != nil {
		t.Fatalf("decode message %d: %v", seq, err)
	}
	return &e
}

func decode[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %T: %v\nbody: %s", v, err, r.body)
	}
	return v
}

type errorAnswer struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Parameter string `json:"parameter"`
		RequestID string `json:"request_id"`
	} `json:"error"`
	Available *int64 `json:"available"`
}

// syncBuffer collects the server's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
