package erase_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/erase"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/testkit"
)

const (
	storeSrc = "urn:test:store"
	opsSrc   = "urn:touchstream:service:ops"
)

var phoneKey = []byte("0123456789abcdef0123456789abcdef")

// env is a real log, key service and database with the timeline and customer 360
// folded from the log.
type env struct {
	t      *testing.T
	pool   *pgxpool.Pool
	nc     *nats.Conn
	js     jetstream.JetStream
	layout events.Layout
	store  *keystore.Store
	keys   *events.KeyClient
	pub    *events.Publisher
	ops    *events.Publisher
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t}
	e.pool, _ = testkit.Pool(t)
	ns := testkit.StartNATS(t)
	e.nc, e.js = ns.JetStream(t)
	def := streams.Default()
	def.Layout.Partitions, def.Layout.Streams[0].Last = 8, 7
	if _, err := streams.Apply(t.Context(), e.js, def); err != nil {
		t.Fatal(err)
	}
	e.layout = def.Layout
	if err := keystore.Migrate(t.Context(), e.pool); err != nil {
		t.Fatal(err)
	}
	kek, _, err := keystore.LoadOrCreateMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if e.store, err = keystore.Open(t.Context(), e.pool, kek); err != nil {
		t.Fatal(err)
	}
	knc, err := natsconn.Connect(ns.URL, "", "keys", testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(knc.Close)
	svc, err := keystore.NewService(keystore.ServiceConfig{}, keystore.ServiceDeps{Store: e.store, NC: knc, Log: testkit.Logger(t),
		Erasures: &keystore.ErasureLog{JS: e.js, Layout: e.layout}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "key service", 20*time.Second, svc.Run)
	e.keys = events.NewKeyClient(e.nc, events.KeyClientConfig{})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := e.nc.Request(events.KeySubjectIDs, []byte(`{}`), time.Second); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("key service not answering: %v", err)
		}
	}
	if e.pub, err = events.NewPublisher(t.Context(), e.nc, events.WithSource(storeSrc), events.WithLayout(e.layout), events.WithKeys(e.keys),
		events.WithLimits(events.Limits{MaxSize: 64 << 10})); err != nil {
		t.Fatal(err)
	}
	if e.ops, err = events.NewPublisher(t.Context(), e.nc, events.WithSource(opsSrc), events.WithLayout(e.layout)); err != nil {
		t.Fatal(err)
	}
	return e
}

// publish stores an event of customer at the given time.
func (e *env) publish(customer string, at time.Time, p events.Payload) *events.Event {
	e.t.Helper()
	ev, err := events.NewEvent(customer, at, p)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.pub.Publish(e.t.Context(), ev); err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// projection builds the projection of a target, as the projector would.
func (e *env) projection(target string) (projections.Projection, error) {
	name, _, _ := projections.TargetVersion(target)
	switch name {
	case customer360.Name:
		return customer360.New(customer360.Options{Target: target, Tiers: valuetier.Default(), Keys: e.keys, PhoneKey: phoneKey})
	case timeline.Name:
		return timeline.New(target), nil
	}
	return nil, fmt.Errorf("no projection writes %s", target)
}

// fold catches the first versions of the timeline and customer 360 up with the log.
func (e *env) fold() {
	e.t.Helper()
	c360, err := e.projection("customer360_v1")
	if err != nil {
		e.t.Fatal(err)
	}
	cat, _ := events.DefaultCatalog()
	r, err := projections.NewRunner(projections.Config{Group: "projector"}, projections.Deps{Pool: e.pool, JS: e.js, Layout: e.layout,
		Catalog: cat, Log: testkit.Logger(e.t)}, timeline.New("timeline_v1"), c360)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := r.CatchUp(e.t.Context(), nil); err != nil {
		e.t.Fatal(err)
	}
	if _, err := projections.EnsureServing(e.t.Context(), e.pool, map[string]string{"customer360": "customer360_v1", "timeline": "timeline_v1"}); err != nil {
		e.t.Fatal(err)
	}
}

// eraser builds an Eraser over the environment; resolve overrides the projections'.
func (e *env) eraser(cfg erase.Config, resolve func(string) (projections.Projection, error)) *erase.Eraser {
	e.t.Helper()
	if resolve == nil {
		resolve = e.projection
	}
	er, err := erase.New(e.t.Context(), cfg, erase.Deps{Pool: e.pool, Publisher: e.ops, Layout: e.layout,
		Keys: &keystore.EraseClient{NC: e.nc}, Resolve: resolve, Forget: e.keys.Forget, Log: testkit.Logger(e.t)})
	if err != nil {
		e.t.Fatal(err)
	}
	return er
}

func registration(name, phone, idNumber string) events.CustomerRegistered {
	return events.CustomerRegistered{Name: events.Clear(name), Phone: events.Clear(phone), IDType: "resident_id",
		IDNumber: events.Clear(idNumber), CustomerType: "individual", Region: "CN-GD-SZ",
		Plan: events.Plan{ID: "P58", Kind: "prepaid", MonthlyFee: events.CNY(5800)}}
}
