package query_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
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
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/access"
	"github.com/touchstream/touchstream/services/internal/audit"
	"github.com/touchstream/touchstream/services/internal/query"
	"github.com/touchstream/touchstream/testkit"
)

// Targets the fixture folds, as the projector names them.
const (
	c360Target     = "customer360_v1"
	timelineTarget = "timeline_v1"
)

// Sources (channels) of the fixture's events.
const (
	srcCRM      = "urn:touchstream:channel:crm"
	srcRecharge = "urn:touchstream:channel:recharge"
	srcStore    = "urn:touchstream:channel:store"
)

// The fixture's customers and their clear personal data (what a full-access viewer
// must get back, and a masked one must never see).
const (
	alice         = "C-ALICE"
	alicePhone    = "+8613800138000"
	aliceName     = "张伟"
	aliceIDNumber = "110101199003074578"
	aliceAddress  = "广东省深圳市福田区深南大道1号"
	bob           = "C-BOB"
	bobPhone      = "13900139000"
	erased        = "C-ERASE"
	erasedPhone   = "13700137000"
	nobody        = "C-NOBODY"
)

// aliceTimeline is how many events C-ALICE has: the registration, then recharges,
// store visits and a complaint, some sharing an event time.
const (
	aliceRecharges = 18
	aliceVisits    = 12
	aliceEvents    = 1 + aliceRecharges + aliceVisits + 1
	regionCount    = 11 // customers in region CN-BJ-HD (C-R000...), for paging a search
)

// fixture is a query API over read models folded for real from an embedded log.
type fixture struct {
	pool     *pgxpool.Pool
	nats     *testkit.NATS
	nc       *nats.Conn
	js       jetstream.JetStream
	layout   events.Layout
	keys     *testkit.Keys
	phoneKey []byte
	base     time.Time // event time of the first event
	reg      *prometheus.Registry
	logs     *syncBuffer
	api      *query.Server
	audit    *audit.Log
	srv      *httptest.Server
	doc      *testkit.OpenAPI
	runner   *projections.Runner
}

// newFixture publishes the data set, folds it with the projector's read models and
// serves the API over it.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{keys: testkit.NewKeys(), logs: &syncBuffer{}}
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
	f.phoneKey = make([]byte, 32)
	_, _ = rand.Read(f.phoneKey)
	f.base = time.Now().Add(-10 * 24 * time.Hour).Truncate(time.Second).UTC()

	f.publish(t, f.dataSet(t))
	f.runner = f.newRunner(t, projections.Config{Group: "query-test"})
	if err := f.runner.CatchUp(ctx, nil); err != nil {
		t.Fatalf("catch up: %v", err)
	}
	f.serve(t, query.Config{Tiers: valuetier.Default().Names()}, query.Deps{})
	return f
}

// serve starts the API with cfg and deps completed from the fixture.
func (f *fixture) serve(t testing.TB, cfg query.Config, deps query.Deps) {
	t.Helper()
	cfg.Layout, cfg.PhoneKey = f.layout, f.phoneKey
	if deps.DB == nil {
		deps.DB = f.pool
	}
	if deps.Keys == nil {
		deps.Keys = f.keys
	}
	if deps.Viewer == nil {
		g := f.gate(t)
		deps.Viewer, deps.Tickets = g.Principal, g.Tickets
	}
	if deps.Audit == nil {
		deps.Audit = f.auditLog(t)
	}
	f.reg = prometheus.NewRegistry()
	deps.Registry = f.reg
	deps.Log = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	api, err := query.New(cfg, deps)
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

// newRunner builds the projector's read models over the fixture's log, as the
// projector's buildProjector does.
func (f *fixture) newRunner(t testing.TB, cfg projections.Config) *projections.Runner {
	t.Helper()
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	c360, err := customer360.New(customer360.Options{Target: c360Target, Tiers: valuetier.Default(), Keys: f.keys, PhoneKey: f.phoneKey})
	if err != nil {
		t.Fatal(err)
	}
	history := &projections.LogHistory{
		Index:   &timeline.Index{Target: timelineTarget, Layout: f.layout},
		JS:      f.js,
		Decoder: projections.NewDecoder(f.layout, cat),
	}
	r, err := projections.NewRunner(cfg, projections.Deps{
		Pool: f.pool, JS: f.js, Layout: f.layout, Catalog: cat, History: history, Log: slog.New(slog.DiscardHandler),
	}, timeline.New(timelineTarget), c360)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// dataSet is the events the fixture publishes, each customer's in order.
func (f *fixture) dataSet(t testing.TB) []*events.Event {
	t.Helper()
	var evs []*events.Event
	add := func(customer, source string, at time.Time, p events.Payload) {
		e, err := events.NewEvent(customer, at, p)
		if err != nil {
			t.Fatal(err)
		}
		e.Source = source
		evs = append(evs, e)
	}
	plan := events.Plan{ID: "4G-58", Name: "4G 畅享 58", Kind: "prepaid", MonthlyFee: events.CNY(5800)}
	register := func(customer, name, phone, region, segment string, at time.Time) {
		add(customer, srcCRM, at, events.CustomerRegistered{
			Name: events.Clear(name), Phone: events.Clear(phone), CustomerType: "individual",
			Segment: segment, Region: region, Plan: plan,
		})
	}
	t0 := f.base

	add(alice, srcCRM, t0, events.CustomerRegistered{
		Name: events.Clear(aliceName), Phone: events.Clear(alicePhone), IDType: "resident_id",
		IDNumber: events.Clear(aliceIDNumber), Address: events.Clear(aliceAddress),
		CustomerType: "individual", Segment: "consumer", Region: "CN-GD-SZ", Plan: plan,
	})
	for i := range aliceRecharges {
		// Pairs of recharges share an event time, so paging must break ties by sequence.
		at := t0.Add(time.Duration(1+i/2) * time.Hour)
		add(alice, srcRecharge, at, events.RechargeCompleted{RechargeID: fmt.Sprintf("R-A-%02d", i), Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "wechat_pay"})
	}
	for i := range aliceVisits {
		at := t0.Add(time.Duration(30+i) * time.Hour)
		add(alice, srcStore, at, events.StoreVisited{StoreID: "SZ-FT-012", Purpose: "inquiry", DurationSeconds: 300})
	}
	add(alice, srcStore, t0.Add(50*time.Hour), events.ComplaintOpened{ComplaintID: "CMP-1", Category: "network", Severity: "high",
		PromisedBy: t0.Add(74 * time.Hour), Description: events.Clear("信号很差，张伟投诉")})

	register(bob, "李娜", bobPhone, "CN-BJ-CY", "youth", t0)
	add(bob, srcRecharge, t0.Add(time.Hour), events.RechargeCompleted{RechargeID: "R-B-1", Amount: events.CNY(60000), Credited: events.CNY(60000), Method: "alipay"})

	register(erased, "王芳", erasedPhone, "CN-SH-PD", "senior", t0)

	for i := range regionCount {
		register(fmt.Sprintf("C-R%03d", i), "赵磊", fmt.Sprintf("1350000%04d", i), "CN-BJ-HD", "sme", t0.Add(time.Duration(i)*time.Minute))
	}
	return evs
}

func (f *fixture) publish(t testing.TB, evs []*events.Event) {
	t.Helper()
	pub, err := events.NewPublisher(context.Background(), f.nc, events.WithLayout(f.layout), events.WithKeys(f.keys))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i, r := range pub.PublishBatch(context.Background(), evs) {
		if r.Err != nil {
			t.Fatalf("publish %d (%s): %v", i, evs[i].Type, r.Err)
		}
	}
}

// The fixture's staff and their tokens, as a static token file holds them. A request
// without an Authorization header is sent with deskToken (agent, retention and
// manager: every query route, personal fields masked); noToken sends none.
var testStaff = []access.Staff{
	{ID: "agent-7", Roles: []access.Role{access.Agent}, Tokens: []access.Token{{ID: "1", SHA256: access.HashToken("tok-agent")}}},
	{ID: "ret-li02", Roles: []access.Role{access.Retention}, Tokens: []access.Token{{ID: "1", SHA256: access.HashToken("tok-retention")}}},
	{ID: "mgr-1", Roles: []access.Role{access.Manager}, Tokens: []access.Token{{ID: "1", SHA256: access.HashToken("tok-manager")}}},
	{ID: "ops-1", Roles: []access.Role{access.Operator}, Tokens: []access.Token{{ID: "1", SHA256: access.HashToken("tok-operator")}}},
	{ID: "sup-1", Roles: []access.Role{access.Supervisor}, Tokens: []access.Token{
		{ID: "2026-01", SHA256: access.HashToken("tok-supervisor")}, {ID: "2026-07", SHA256: access.HashToken("tok-supervisor-2")}}},
	{ID: "ret-wang01", Roles: []access.Role{access.Agent, access.Retention, access.Manager},
		Tokens: []access.Token{{ID: "1", SHA256: access.HashToken(deskToken)}}},
}

const deskToken = "tok-desk"

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// Headers of the fixture's staff.
var (
	full    = bearer("tok-supervisor") // personal fields in clear
	agentH  = bearer("tok-agent")
	noToken = http.Header{"Authorization": nil}
)

// gate is the real authenticator over the fixture's staff, with stream tickets.
func (f *fixture) gate(t testing.TB) *access.Gate {
	t.Helper()
	st, err := access.NewStaticTokens(testStaff)
	if err != nil {
		t.Fatal(err)
	}
	tickets, err := access.NewTickets(access.RandomTicketKey(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return &access.Gate{Tokens: st, Tickets: tickets}
}

// auditLog is the real access audit log over the fixture's database, running.
func (f *fixture) auditLog(t testing.TB) *audit.Log {
	t.Helper()
	if f.audit != nil {
		return f.audit
	}
	if err := audit.Migrate(context.Background(), f.pool); err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(audit.Config{}, f.pool, nil, slog.New(slog.NewTextHandler(f.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "audit log", 5*time.Second, l.Run)
	f.audit = l
	return l
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// get requests path and validates the answer against the served OpenAPI document.
func (f *fixture) get(t testing.TB, path string, header http.Header) response {
	t.Helper()
	return f.do(t, http.MethodGet, path, header)
}

func (f *fixture) do(t testing.TB, method, path string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	authorize(req, header)
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: res.StatusCode, header: res.Header, body: body}
	if f.doc != nil {
		f.doc.Conform(t, req, nil, r.status, r.header, r.body)
	}
	return r
}

// authorize sets the request's headers: the desk's token unless the header names an
// Authorization (noToken: none).
func authorize(req *http.Request, header http.Header) {
	if _, ok := header["Authorization"]; !ok {
		req.Header.Set("Authorization", "Bearer "+deskToken)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
}

// loadDocument loads the served document, validates it and builds a router over it.
func (f *fixture) loadDocument(t testing.TB) {
	t.Helper()
	f.doc = nil
	r := f.get(t, "/v1/openapi.json", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json: %d", r.status)
	}
	f.doc = testkit.LoadOpenAPI(t, r.body)
	// The document's own answer, validated now that there is a document.
	f.get(t, "/v1/openapi.json", nil)
}

// decode unmarshals a body, failing the test on error.
func decode[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %T: %v\nbody: %s", v, err, r.body)
	}
	return v
}

// errorOf decodes an error answer.
type errorAnswer struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Parameter string `json:"parameter"`
		RequestID string `json:"request_id"`
	} `json:"error"`
	Freshness *query.Freshness `json:"freshness"`
}

func ptr[T any](v T) *T { return &v }

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

// assertNoPersonalData fails if the server logged any of the fixture's clear
// personal data, or the query string of a phone search.
func (f *fixture) assertNoPersonalData(t testing.TB) {
	t.Helper()
	logs := f.logs.String()
	for _, s := range []string{aliceName, alicePhone, "13800138000", aliceIDNumber, aliceAddress, bobPhone, erasedPhone, "李娜", "phone="} {
		if strings.Contains(logs, s) {
			t.Errorf("the server logged personal data %q", s)
		}
	}
}
