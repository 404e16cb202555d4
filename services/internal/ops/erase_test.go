package ops_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/erase"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/services/internal/ops"
	"github.com/touchstream/touchstream/testkit"
)

// TestEraseRoute: POST /v1/ops/customers/{id}/erase erases as the operator, answers
// with the receipt (checked against the OpenAPI document), refuses an operator not
// allowed to erase, a bad reason code and an unknown body field, and answers a second
// call with "already erased".
func TestEraseRoute(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.publish(t, "reg", "C-ER", events.CustomerRegistered{Name: events.Clear(aliceName), Phone: events.Clear(alicePhone),
		CustomerType: "individual", Region: "CN-BJ", Plan: events.Plan{ID: "P1", Kind: "prepaid", MonthlyFee: events.CNY(1000)}})
	f.fold(t, timeline.New("timeline_v1"), f.c360)

	// A key service for the eraser (the fixture seals with test keys: the customer has
	// no key in this store, which the receipt says).
	if err := keystore.Migrate(ctx, f.pool); err != nil {
		t.Fatal(err)
	}
	kek, _, err := keystore.LoadOrCreateMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := keystore.Open(ctx, f.pool, kek)
	if err != nil {
		t.Fatal(err)
	}
	ns := testkit.StartNATS(t)
	nc, err := natsconn.Connect(ns.URL, "", "ops-test", testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	svc, err := keystore.NewService(keystore.ServiceConfig{}, keystore.ServiceDeps{Store: store, NC: nc})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "key service", 20*time.Second, svc.Run)
	er, err := erase.New(ctx, erase.Config{}, erase.Deps{Pool: f.pool, Publisher: f.opsPub, Layout: f.layout, Keys: &keystore.EraseClient{NC: nc},
		Resolve: func(target string) (projections.Projection, error) {
			switch target {
			case c360Target:
				return f.c360.Projection, nil
			case "timeline_v1":
				return timeline.New(target), nil
			}
			return nil, errors.New("unknown target " + target)
		}, Log: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	withEraser, err := ops.New(ops.Deps{Pool: f.pool, JS: f.js, Layout: f.layout, Catalog: f.cat, Timeline: "timeline_v1", Eraser: er, Log: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ops.NewHandler(withEraser, ops.HandlerConfig{Operator: func(r *http.Request) (ops.Operator, error) {
		if r.Header.Get("X-Test-Operator") == "dpo" {
			return ops.Operator{ID: "dpo-01", Erase: true}, nil
		}
		return ops.Operator{ID: "console"}, nil
	}}))
	t.Cleanup(srv.Close)
	f.srv = srv

	path := "/v1/ops/customers/C-ER/erase"
	if r := f.do(t, http.MethodPost, path, "", map[string]string{"reason": "customer_request"}); r.status != http.StatusForbidden {
		t.Errorf("erase by the console: %d %s, want 403", r.status, r.body)
	}
	if r := f.do(t, http.MethodPost, path, "dpo", map[string]string{"reason": "客户要求"}); r.status != http.StatusBadRequest {
		t.Errorf("erase with free text: %d %s, want 400", r.status, r.body)
	}
	if r := f.do(t, http.MethodPost, path, "dpo", map[string]string{"reason": "customer_request", "name": "x"}); r.status != http.StatusBadRequest {
		t.Errorf("erase with an unknown field: %d %s, want 400", r.status, r.body)
	}
	r := f.do(t, http.MethodPost, path, "dpo", map[string]string{"reason": "customer_request"})
	if r.status != http.StatusOK {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	rc := decode[erase.Receipt](t, r)
	if rc.Operator != "dpo-01" || rc.Seq == 0 || len(rc.KeyIDs) != 0 || rc.AlreadyErased {
		t.Errorf("receipt: %+v", rc)
	}
	if p, err := customer360.Get(ctx, f.pool, c360Target, "C-ER"); err != nil || p.Name != nil || p.Phone != nil {
		t.Errorf("profile after the erasure: %+v, %v", p, err)
	}
	again := decode[erase.Receipt](t, f.do(t, http.MethodPost, path, "dpo", map[string]string{"reason": "customer_request"}))
	if !again.AlreadyErased || again.Request != rc.Request {
		t.Errorf("second erase: %+v", again)
	}
}
