package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/ops"
	"github.com/touchstream/touchstream/testkit"
)

const (
	srcStore    = "urn:test:store"
	c360Target  = "customer360_v1"
	cleanTarget = "customer360_v9"
	// Personal data of the fixture: what a sealed view must never show.
	aliceName    = "王芳"
	alicePhone   = "+8613800001111"
	aliceComment = "信号太差，经常掉线"
)

// buggy is customer360 with a bug: it cannot apply the events whose ids are in broken
// until fixed is set. Its recompute has the same bug, and delegates once fixed.
type buggy struct {
	*customer360.Projection
	broken map[string]bool
	fixed  atomic.Bool
}

var _ projections.CustomerRecomputer = (*buggy)(nil)

func (b *buggy) bug(e *projections.Envelope) error {
	if b.broken[e.ID] && !b.fixed.Load() {
		return fmt.Errorf("%s: unsupported field in this version", e.Type)
	}
	return nil
}

func (b *buggy) Apply(ctx context.Context, tx pgx.Tx, batch *projections.Batch) error {
	for _, e := range batch.Events {
		if err := b.bug(e); err != nil {
			return projections.Poison(e, err)
		}
	}
	return b.Projection.Apply(ctx, tx, batch)
}

func (b *buggy) RecomputeCustomer(ctx context.Context, tx pgx.Tx, customer string, partition int, history []*projections.Envelope) error {
	for _, e := range history {
		if err := b.bug(e); err != nil {
			return err
		}
	}
	return b.Projection.RecomputeCustomer(ctx, tx, customer, partition, history)
}

type fixture struct {
	pool   *pgxpool.Pool
	js     jetstream.JetStream
	layout events.Layout
	cat    *events.Catalog
	keys   *testkit.Keys
	pub    *events.Publisher
	opsPub *events.Publisher
	c360   *buggy
	svc    *ops.Service
	srv    *httptest.Server
	doc    *testkit.OpenAPI
	at     time.Time
	// Events of the fixture by name.
	ev map[string]*events.Event
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{keys: testkit.NewKeys(), ev: map[string]*events.Event{}, at: time.Now().Add(-72 * time.Hour).Truncate(time.Second)}
	f.pool, _ = testkit.Pool(t)
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	f.js = js
	def := streams.Default()
	def.Layout.Partitions = 8
	def.Layout.Streams[0].Last = 7
	if _, err := streams.Apply(t.Context(), js, def); err != nil {
		t.Fatal(err)
	}
	f.layout = def.Layout
	var err error
	if f.cat, err = events.DefaultCatalog(); err != nil {
		t.Fatal(err)
	}
	if f.pub, err = events.NewPublisher(t.Context(), nc, events.WithSource(srcStore), events.WithLayout(f.layout), events.WithKeys(f.keys),
		events.WithLimits(events.Limits{MaxSize: 64 << 10})); err != nil {
		t.Fatal(err)
	}
	if f.opsPub, err = events.NewPublisher(t.Context(), nc, events.WithSource(ops.Source), events.WithLayout(f.layout)); err != nil {
		t.Fatal(err)
	}
	inner, err := customer360.New(customer360.Options{Target: c360Target, Tiers: valuetier.Default()})
	if err != nil {
		t.Fatal(err)
	}
	f.c360 = &buggy{Projection: inner, broken: map[string]bool{}}
	f.svc, err = ops.New(ops.Deps{Pool: f.pool, JS: js, Layout: f.layout, Catalog: f.cat, Timeline: "timeline_v1",
		Projections: []projections.Projection{f.c360}, Publisher: f.opsPub, Keys: f.keys, Log: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(ops.NewHandler(f.svc, ops.HandlerConfig{Operator: func(r *http.Request) (ops.Operator, error) {
		switch r.Header.Get("X-Test-Operator") {
		case "":
			return ops.Operator{ID: "console"}, nil
		case "auditor":
			return ops.Operator{ID: "auditor-01", Reveal: true}, nil
		case "stranger":
			return ops.Operator{}, ops.ErrUnauthenticated
		}
		return ops.Operator{}, errors.New("unknown test operator")
	}}))
	t.Cleanup(f.srv.Close)
	f.loadDocument(t)
	return f
}

func (f *fixture) publish(t *testing.T, name, customer string, p events.Payload) *events.Event {
	t.Helper()
	f.at = f.at.Add(time.Minute)
	e, err := events.NewEvent(customer, f.at, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.pub.Publish(t.Context(), e); err != nil {
		t.Fatalf("publish %s: %v", name, err)
	}
	f.ev[name] = e
	return e
}

func (f *fixture) history() projections.History {
	return &projections.LogHistory{Index: &timeline.Index{Target: "timeline_v1", Layout: f.layout}, JS: f.js, Decoder: projections.NewDecoder(f.layout, f.cat)}
}

// fold catches the projector's read models up with the log.
func (f *fixture) fold(t *testing.T, ps ...projections.Projection) {
	t.Helper()
	r, err := projections.NewRunner(projections.Config{BatchSize: 100}, projections.Deps{Pool: f.pool, JS: f.js, Layout: f.layout,
		Catalog: f.cat, History: f.history(), Log: testkit.Logger(t)}, ps...)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}

type response struct {
	status int
	body   []byte
}

// do sends a request and validates the answer against the served OpenAPI document.
func (f *fixture) do(t *testing.T, method, path, operator string, body any) response {
	t.Helper()
	var rd io.Reader
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if operator != "" {
		req.Header.Set("X-Test-Operator", operator)
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
	if res.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s %s: no X-Request-Id", method, path)
	}
	if f.doc != nil {
		f.doc.Conform(t, req, raw, res.StatusCode, res.Header, b)
	}
	return response{status: res.StatusCode, body: b}
}

func (f *fixture) loadDocument(t *testing.T) {
	t.Helper()
	r := f.do(t, http.MethodGet, "/v1/ops/openapi.json", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/ops/openapi.json: %d", r.status)
	}
	f.doc = testkit.LoadOpenAPI(t, r.body)
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// profileRow is a customer's profile as stored, for comparing two targets.
func profileRow(t *testing.T, pool *pgxpool.Pool, target, customer string) map[string]any {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT * FROM `+pgx.Identifier{target, "profiles"}.Sanitize()+` WHERE customer_id = $1`, customer)
	if err != nil {
		t.Fatal(err)
	}
	row, err := pgx.CollectExactlyOneRow(rows, pgx.RowToMap)
	if err != nil {
		t.Fatalf("profile of %s in %s: %v", customer, target, err)
	}
	return row
}
