package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/services/internal/gateway"
)

// ignoreVolatile drops what differs from run to run: request ids and sequences.
var ignoreVolatile = cmp.Options{
	cmpopts.IgnoreFields(gateway.Response{}, "RequestID"),
	cmpopts.IgnoreFields(gateway.Result{}, "Seq"),
	cmpopts.IgnoreUnexported(events.FieldError{}),
}

func TestEveryModeStores(t *testing.T) {
	e := newEnv(t, envOpts{})
	ev := func(id string) map[string]any { return rechargeEvent(storeSrc, id, "C-"+id, 5000) }
	binaryHeaders := func(id string) map[string]string {
		return map[string]string{
			"ce-specversion": "1.0", "ce-id": id, "ce-source": url.PathEscape(storeSrc), "ce-type": rechargeType,
			"ce-subject": "C-" + id, "ce-time": now(), "ce-dataschema": "https://touchstream.dev/schemas/recharge.completed/v1",
		}
	}
	tests := []struct {
		name   string
		ct     string
		body   []byte
		header map[string]string
		want   gateway.Response
	}{
		{name: "structured", ct: ctStructured, body: mustJSON(t, ev("s-1")),
			want: gateway.Response{Stored: 1, Results: []gateway.Result{{Index: 0, ID: "s-1", Status: "stored", Stream: "TOUCHPOINTS"}}}},
		{name: "binary", ct: ctBinary, header: binaryHeaders("b-1"),
			body: []byte(`{"recharge_id":"R-b-1","amount":{"fen":3000,"currency":"CNY"},"method":"cash"}`),
			want: gateway.Response{Stored: 1, Results: []gateway.Result{{Index: 0, ID: "b-1", Status: "stored", Stream: "TOUCHPOINTS"}}}},
		{name: "batch", ct: ctBatch, body: batch(t, ev("m-1"), ev("m-2"), ev("m-3")),
			want: gateway.Response{Stored: 3, Results: []gateway.Result{
				{Index: 0, ID: "m-1", Status: "stored", Stream: "TOUCHPOINTS"},
				{Index: 1, ID: "m-2", Status: "stored", Stream: "TOUCHPOINTS"},
				{Index: 2, ID: "m-3", Status: "stored", Stream: "TOUCHPOINTS"}}}},
		{name: "structured with charset and X-API-Key", ct: ctStructured + "; charset=utf-8", body: mustJSON(t, ev("x-1")),
			header: map[string]string{"Authorization": "", "X-API-Key": storeKey2},
			want:   gateway.Response{Stored: 1, Results: []gateway.Result{{Index: 0, ID: "x-1", Status: "stored", Stream: "TOUCHPOINTS"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.post(t, storeKey, tt.ct, tt.body, tt.header)
			if got.code != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", got.code, got.raw)
			}
			if diff := cmp.Diff(tt.want, got.body, ignoreVolatile); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
			for _, r := range got.body.Results {
				m, err := e.stream.GetMsg(t.Context(), r.Seq)
				if err != nil {
					t.Fatalf("stored seq %d: %v", r.Seq, err)
				}
				stored := eventOf(t, m)
				wantSubject := e.def.Layout.Subject(e.def.Layout.PartitionOf(stored.Subject), rechargeType)
				if stored.ID != r.ID || stored.Source != storeSrc || m.Subject != wantSubject {
					t.Errorf("seq %d holds id %s source %s on %s; want id %s source %s on %s", r.Seq, stored.ID, stored.Source, m.Subject, r.ID, storeSrc, wantSubject)
				}
				if got, want := m.Header.Get("Nats-Msg-Id"), stored.DedupKey(); got != want {
					t.Errorf("Nats-Msg-Id %q, want the dedup key %q", got, want)
				}
			}
		})
	}
	if got := metricValue(t, e, "touchstream_gateway_events_total", "store", "stored"); got != 6 {
		t.Errorf("events_total{store,stored} = %v, want 6", got)
	}
}

func TestBatchOutcomes(t *testing.T) {
	e := newEnv(t, envOpts{})
	good := func(id string) map[string]any { return rechargeEvent(storeSrc, id, "C-7", 100) }
	badAmount := func(id string) map[string]any {
		ev := rechargeEvent(storeSrc, id, "C-7", 100)
		ev["data"].(map[string]any)["amount"] = map[string]any{"fen": "a lot", "currency": "CNY"}
		return ev
	}
	noSubject := func(id string) map[string]any {
		ev := rechargeEvent(storeSrc, id, "C-7", 100)
		delete(ev, "subject")
		return ev
	}
	tests := []struct {
		name     string
		body     []byte
		wantCode int
		want     gateway.Response
	}{
		{name: "one bad event among good ones", body: batch(t, good("p-1"), badAmount("p-2"), good("p-3")), wantCode: http.StatusMultiStatus,
			want: gateway.Response{Stored: 2, Refused: 1, Results: []gateway.Result{
				{Index: 0, ID: "p-1", Status: "stored", Stream: "TOUCHPOINTS"},
				{Index: 1, ID: "p-2", Status: "refused", Errors: []events.FieldError{{Field: "/data/amount/fen", Reason: "got string, want integer"}}},
				{Index: 2, ID: "p-3", Status: "stored", Stream: "TOUCHPOINTS"}}}},
		{name: "all bad", body: batch(t, badAmount("q-1"), noSubject("q-2")), wantCode: http.StatusUnprocessableEntity,
			want: gateway.Response{Refused: 2, Results: []gateway.Result{
				{Index: 0, ID: "q-1", Status: "refused", Errors: []events.FieldError{{Field: "/data/amount/fen", Reason: "got string, want integer"}}},
				{Index: 1, ID: "q-2", Status: "refused", Errors: []events.FieldError{{Field: "/subject", Reason: "required: the customer id"}}}}}},
		{name: "an element that is not an object", body: []byte(`[42]`), wantCode: http.StatusUnprocessableEntity,
			want: gateway.Response{Refused: 1, Results: []gateway.Result{
				{Index: 0, Status: "refused", Errors: []events.FieldError{{Field: "", Reason: "must be a JSON object: a CloudEvents structured-mode event"}}}}}},
		{name: "duplicate attribute", body: []byte(`[{"specversion":"1.0","id":"d-1","id":"d-2"}]`), wantCode: http.StatusUnprocessableEntity,
			want: gateway.Response{Refused: 1, Results: []gateway.Result{
				{Index: 0, Status: "refused", Errors: []events.FieldError{{Field: "/id", Reason: "the key appears more than once in its object: send each key once"}}}}}},
		{name: "duplicate key inside data", wantCode: http.StatusUnprocessableEntity,
			body: bytes.Replace(batch(t, good("d-3")), []byte(`"fen":100`), []byte(`"fen":100,"fen":-100`), 1),
			want: gateway.Response{Refused: 1, Results: []gateway.Result{
				{Index: 0, Status: "refused", Errors: []events.FieldError{{Field: "/data/amount/fen", Reason: "the key appears more than once in its object: send each key once"}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.post(t, storeKey, ctBatch, tt.body, nil)
			if got.code != tt.wantCode {
				t.Errorf("status %d, want %d: %s", got.code, tt.wantCode, got.raw)
			}
			// Reasons of schema errors are the validator's words: compare fields only
			// where the wording is not ours.
			if diff := cmp.Diff(tt.want, got.body, ignoreVolatile, cmp.Comparer(func(a, b events.FieldError) bool {
				return a.Field == b.Field && (a.Reason == b.Reason || strings.Contains(a.Reason, "want integer") || strings.Contains(b.Reason, "want integer"))
			})); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDuplicates(t *testing.T) {
	window := time.Second
	e := newEnv(t, envOpts{dupWindow: window})
	send := func(t *testing.T, id string) gateway.Result {
		t.Helper()
		got := e.post(t, rechargeKey, ctStructured, mustJSON(t, rechargeEvent(rechargeSrc, id, "C-dup", 1000)), nil)
		if got.code != http.StatusOK || len(got.body.Results) != 1 {
			t.Fatalf("status %d: %s", got.code, got.raw)
		}
		return got.body.Results[0]
	}

	t.Run("inside the stream's window", func(t *testing.T) {
		first := send(t, "w-1")
		again := send(t, "w-1")
		if diff := cmp.Diff(gateway.Result{Index: 0, ID: "w-1", Status: "duplicate", Stream: "TOUCHPOINTS", Seq: first.Seq}, again); diff != "" {
			t.Errorf("resend (-want +got):\n%s", diff)
		}
	})

	t.Run("days later, from the index", func(t *testing.T) {
		first := send(t, "late-1")
		// The dedup projection folds the log into the index, as the projector does.
		cat, _ := events.DefaultCatalog()
		r, err := projections.NewRunner(projections.Config{}, projections.Deps{Pool: e.pool, JS: e.js, Layout: e.def.Layout, Catalog: cat}, dedup.Projection{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CatchUp(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
		control := send(t, "late-2")              // stored after the index caught up: not in it
		time.Sleep(window + 500*time.Millisecond) // the stream has forgotten both
		before := e.msgCount(t)
		again := send(t, "late-1")
		if diff := cmp.Diff(gateway.Result{Index: 0, ID: "late-1", Status: "duplicate", Stream: "TOUCHPOINTS", Seq: first.Seq}, again); diff != "" {
			t.Errorf("resend (-want +got):\n%s", diff)
		}
		if got := e.msgCount(t); got != before {
			t.Errorf("stream holds %d messages after the answered duplicate, want %d", got, before)
		}
		// Without the index entry the window alone no longer catches it: the index is
		// what answered above.
		if again := send(t, "late-2"); again.Status != "stored" || again.Seq == control.Seq {
			t.Errorf("control resend past the window without index entry = %+v, want stored anew", again)
		}
		if got := metricValue(t, e, "touchstream_gateway_dedup_hits_total"); got != 1 {
			t.Errorf("dedup_hits_total = %v, want 1", got)
		}
	})

	t.Run("twice within one batch", func(t *testing.T) {
		b := batch(t, rechargeEvent(rechargeSrc, "in-1", "C-dup", 1), rechargeEvent(rechargeSrc, "in-1", "C-dup", 1))
		got := e.post(t, rechargeKey, ctBatch, b, nil)
		if got.code != http.StatusOK {
			t.Fatalf("status %d: %s", got.code, got.raw)
		}
		r := got.body.Results
		if r[0].Status != "stored" || r[1].Status != "duplicate" || r[1].Seq != r[0].Seq {
			t.Errorf("results %+v, want stored then duplicate of the same seq", r)
		}
	})
}

func TestIndexDownKeepsAccepting(t *testing.T) {
	dead, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dead.Close)
	e := newEnv(t, envOpts{deps: func(d *gateway.Deps) { d.Dedup = dead }})
	for i, id := range ids("down-", 3) {
		got := e.post(t, rechargeKey, ctStructured, mustJSON(t, rechargeEvent(rechargeSrc, id, "C-1", 100)), nil)
		if got.code != http.StatusOK || got.body.Stored != 1 {
			t.Fatalf("request %d: status %d: %s", i, got.code, got.raw)
		}
	}
	if got := metricValue(t, e, "touchstream_gateway_dedup_lookup_failures_total"); got != 3 {
		t.Errorf("dedup_lookup_failures_total = %v, want 3", got)
	}
}

func TestChannelRights(t *testing.T) {
	e := newEnv(t, envOpts{})
	registered := registeredEvent(rechargeSrc, "r-1", "C-1")
	tests := []struct {
		name     string
		key      string
		body     []byte
		wantCode int
		want     []gateway.Result
	}{
		{name: "type not allowed", key: rechargeKey, body: batch(t, registered), wantCode: http.StatusForbidden,
			want: []gateway.Result{{Index: 0, ID: "r-1", Status: "refused", Errors: []events.FieldError{{Field: "/type", Reason: "channel recharge may not write this type"}}}}},
		{name: "another channel's source", key: rechargeKey, body: batch(t, rechargeEvent(storeSrc, "r-2", "C-1", 100)), wantCode: http.StatusForbidden,
			want: []gateway.Result{{Index: 0, ID: "r-2", Status: "refused", Errors: []events.FieldError{{Field: "/source", Reason: `channel recharge writes only under its own source "urn:touchstream:channel:recharge"`}}}}},
		{name: "one forbidden, one allowed", key: rechargeKey, body: batch(t, rechargeEvent(storeSrc, "r-3", "C-1", 100), rechargeEvent(rechargeSrc, "r-4", "C-1", 100)),
			wantCode: http.StatusMultiStatus,
			want: []gateway.Result{
				{Index: 0, ID: "r-3", Status: "refused", Errors: []events.FieldError{{Field: "/source", Reason: `channel recharge writes only under its own source "urn:touchstream:channel:recharge"`}}},
				{Index: 1, ID: "r-4", Status: "stored", Stream: "TOUCHPOINTS"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.post(t, tt.key, ctBatch, tt.body, nil)
			if got.code != tt.wantCode {
				t.Errorf("status %d, want %d: %s", got.code, tt.wantCode, got.raw)
			}
			if diff := cmp.Diff(tt.want, got.body.Results, ignoreVolatile); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		})
	}
	if got := metricValue(t, e, "touchstream_gateway_events_total", "recharge", "forbidden"); got != 3 {
		t.Errorf("events_total{recharge,forbidden} = %v, want 3", got)
	}
}

func TestRequestErrors(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *gateway.Config) { c.MaxBodyBytes = 4096; c.MaxBatch = 5 }})
	ok := mustJSON(t, rechargeEvent(storeSrc, "e-1", "C-1", 100))
	big := mustJSON(t, rechargeEvent(storeSrc, "e-2", "C-1", 100))
	big = bytes.Replace(big, []byte(`"method"`), []byte(`"pad":"`+strings.Repeat("x", 5000)+`","method"`), 1)
	six := make([]map[string]any, 6)
	for i := range six {
		six[i] = rechargeEvent(storeSrc, "six", "C-1", 100)
	}
	tests := []struct {
		name      string
		key       string
		header    map[string]string
		ct        string
		body      []byte
		wantCode  int
		wantError string
	}{
		{name: "no key", ct: ctStructured, body: ok, wantCode: 401, wantError: "missing API key"},
		{name: "unknown key", key: "not-a-key", ct: ctStructured, body: ok, wantCode: 401, wantError: "unknown API key"},
		{name: "basic auth", header: map[string]string{"Authorization": "Basic eDp5"}, ct: ctStructured, body: ok, wantCode: 401, wantError: "Bearer"},
		{name: "body over the limit", key: storeKey, ct: ctStructured, body: big, wantCode: 413, wantError: "limit is 4096"},
		{name: "batch over the limit", key: storeKey, ct: ctBatch, body: mustJSON(t, six), wantCode: 413, wantError: "batch of 6 events: the limit is 5"},
		{name: "text/plain", key: storeKey, ct: "text/plain", body: ok, wantCode: 415, wantError: "unsupported Content-Type"},
		{name: "no content type", key: storeKey, body: ok, wantCode: 415, wantError: "missing Content-Type"},
		{name: "latin-1", key: storeKey, ct: ctStructured + "; charset=iso-8859-1", body: ok, wantCode: 415, wantError: "utf-8"},
		{name: "not JSON", key: storeKey, ct: ctStructured, body: []byte(`{"id": oops}`), wantCode: 400, wantError: "body is not valid JSON: syntax error at byte 8"},
		{name: "batch not an array", key: storeKey, ct: ctBatch, body: ok, wantCode: 400, wantError: "JSON array"},
		{name: "empty batch", key: storeKey, ct: ctBatch, body: []byte(`[]`), wantCode: 400, wantError: "empty batch"},
		{name: "binary body not JSON", key: storeKey, ct: ctBinary, body: []byte(`amount=5`), wantCode: 400, wantError: "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.post(t, tt.key, tt.ct, tt.body, tt.header)
			if got.code != tt.wantCode || !strings.Contains(got.body.Error, tt.wantError) {
				t.Errorf("got %d %q, want %d containing %q", got.code, got.body.Error, tt.wantCode, tt.wantError)
			}
			if got.body.RequestID == "" || got.header.Get("X-Request-Id") != got.body.RequestID {
				t.Errorf("request id %q, header %q: want the same, non-empty", got.body.RequestID, got.header.Get("X-Request-Id"))
			}
		})
	}
	if got := e.msgCount(t); got != 0 {
		t.Errorf("stream holds %d messages, want 0", got)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, envOpts{})
	two := batch(t, rechargeEvent(limitedSrc, "l-1", "C-1", 100), rechargeEvent(limitedSrc, "l-2", "C-1", 100))
	if got := e.post(t, limitedKey, ctBatch, two, nil); got.code != http.StatusOK {
		t.Fatalf("first batch within the burst: status %d: %s", got.code, got.raw)
	}
	got := e.post(t, limitedKey, ctStructured, mustJSON(t, rechargeEvent(limitedSrc, "l-3", "C-1", 100)), nil)
	if got.code != http.StatusTooManyRequests || got.header.Get("Retry-After") != "1" || got.body.RetryAfter != 1 {
		t.Errorf("over the rate: status %d, Retry-After %q, body %s; want 429 with Retry-After 1", got.code, got.header.Get("Retry-After"), got.raw)
	}
	three := batch(t, rechargeEvent(limitedSrc, "l-4", "C-1", 1), rechargeEvent(limitedSrc, "l-5", "C-1", 1), rechargeEvent(limitedSrc, "l-6", "C-1", 1))
	if got := e.post(t, limitedKey, ctBatch, three, nil); got.code != http.StatusRequestEntityTooLarge {
		t.Errorf("batch over the burst: status %d, want 413: %s", got.code, got.raw)
	}
	// Other channels are not limited by it.
	if got := e.post(t, storeKey, ctStructured, mustJSON(t, rechargeEvent(storeSrc, "l-7", "C-1", 100)), nil); got.code != http.StatusOK {
		t.Errorf("another channel: status %d: %s", got.code, got.raw)
	}
}

func TestInFlightBudget(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *gateway.Config) { c.MaxInFlight = 4; c.MaxBatch = 4 }})
	release := e.keys.holdRequests()
	defer release()
	first := make(chan reply, 1)
	go func() {
		b := batch(t, registeredEvent(storeSrc, "f-1", "C-1"), registeredEvent(storeSrc, "f-2", "C-2"),
			registeredEvent(storeSrc, "f-3", "C-3"), registeredEvent(storeSrc, "f-4", "C-4"))
		first <- e.post(t, storeKey, ctBatch, b, nil)
	}()
	<-e.keys.asked // the first request holds the whole budget, waiting for keys
	got := e.post(t, storeKey, ctStructured, mustJSON(t, rechargeEvent(storeSrc, "f-5", "C-5", 100)), nil)
	if got.code != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" {
		t.Errorf("over budget: status %d, Retry-After %q: %s; want 503 with Retry-After", got.code, got.header.Get("Retry-After"), got.raw)
	}
	if got := metricValue(t, e, "touchstream_gateway_events_in_flight"); got != 4 {
		t.Errorf("events_in_flight = %v, want 4", got)
	}
	release()
	if r := <-first; r.code != http.StatusOK || r.body.Stored != 4 {
		t.Errorf("held request: status %d: %s", r.code, r.raw)
	}
	if got := e.post(t, storeKey, ctStructured, mustJSON(t, rechargeEvent(storeSrc, "f-5", "C-5", 100)), nil); got.code != http.StatusOK {
		t.Errorf("after the budget freed: status %d: %s", got.code, got.raw)
	}
}

func TestNATSDown(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.ns.Server.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for e.nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := e.post(t, storeKey, ctStructured, mustJSON(t, rechargeEvent(storeSrc, "n-1", "C-1", 100)), nil)
	if got.code != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" {
		t.Errorf("status %d, Retry-After %q: %s; want 503 with Retry-After", got.code, got.header.Get("Retry-After"), got.raw)
	}
}

func TestPersonalFieldsSealed(t *testing.T) {
	e := newEnv(t, envOpts{})
	got := e.post(t, storeKey, ctBatch, batch(t, registeredEvent(storeSrc, "pd-1", "C-pd"), rechargeEvent(storeSrc, "pd-2", "C-pd", 100)), nil)
	if got.code != http.StatusOK {
		t.Fatalf("status %d: %s", got.code, got.raw)
	}
	msgs := e.storedMsgs(t)
	if len(msgs) != 2 {
		t.Fatalf("stream holds %d messages, want 2", len(msgs))
	}
	for _, m := range msgs {
		for _, clear := range []string{clearName, clearPhone, "13912345678", clearIDNum, clearAddress} {
			if bytes.Contains(m.Data, []byte(clear)) {
				t.Errorf("stored message %d contains a clear personal value", m.Sequence)
			}
		}
	}
	// The sealed values open with the customer's key and give the values sent.
	ev := eventOf(t, msgs[0])
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	schema, err := events.NewValidator(cat, 64, events.DefaultLimits(), nil).CheckStored(&ev)
	if err != nil {
		t.Fatalf("stored form invalid: %v", err)
	}
	data, err := events.NewSealer(e.keys).Reveal(t.Context(), schema, &ev)
	if err != nil {
		t.Fatal(err)
	}
	var revealed struct{ Name, Phone string }
	if err := json.Unmarshal(data, &revealed); err != nil {
		t.Fatal(err)
	}
	if revealed.Name != clearName || revealed.Phone != clearPhone {
		t.Errorf("revealed name/phone differ from what was sent")
	}
}

func TestNATSDoor(t *testing.T) {
	e := newEnv(t, envOpts{noServer: true})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	client := e.ns.Connect(t)
	const door = "ingest.store.recharge.completed"
	waitResponder(t, client, door)
	tests := []struct {
		name     string
		subject  string
		body     []byte
		wantCode int
		wantOut  []string
	}{
		{name: "batch", subject: door, body: batch(t, rechargeEvent(storeSrc, "nd-1", "C-1", 100), rechargeEvent(storeSrc, "nd-2", "C-2", 100)),
			wantCode: 200, wantOut: []string{"stored", "stored"}},
		{name: "one event", subject: door, body: mustJSON(t, rechargeEvent(storeSrc, "nd-3", "C-1", 100)), wantCode: 200, wantOut: []string{"stored"}},
		{name: "resent", subject: door, body: mustJSON(t, rechargeEvent(storeSrc, "nd-3", "C-1", 100)), wantCode: 200, wantOut: []string{"duplicate"}},
		{name: "the subject carries the type", subject: "ingest.store.customer.registered",
			body: batch(t, registeredEvent(storeSrc, "nd-6", "C-2"), rechargeEvent(storeSrc, "nd-7", "C-2", 100)), wantCode: 207, wantOut: []string{"stored", "refused"}},
		{name: "the subject names the channel", subject: "ingest.recharge.recharge.completed", body: mustJSON(t, rechargeEvent(storeSrc, "nd-4", "C-1", 100)), wantCode: 403, wantOut: []string{"refused"}},
		{name: "unknown channel", subject: "ingest.nobody.recharge.completed", body: mustJSON(t, rechargeEvent(storeSrc, "nd-5", "C-1", 100)), wantCode: 404},
		{name: "a subject without the type", subject: "ingest.store.v1", body: mustJSON(t, rechargeEvent(storeSrc, "nd-8", "C-1", 100)), wantCode: 400},
		{name: "not JSON", subject: door, body: []byte("hello"), wantCode: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := client.Request(tt.subject, tt.body, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var got gateway.Response
			if err := json.Unmarshal(m.Data, &got); err != nil {
				t.Fatalf("reply is not JSON: %s", m.Data)
			}
			if got.Status != tt.wantCode {
				t.Errorf("status %d, want %d: %s", got.Status, tt.wantCode, m.Data)
			}
			var outs []string
			for _, r := range got.Results {
				outs = append(outs, r.Status)
				if r.Status == "stored" {
					if _, err := e.stream.GetMsg(t.Context(), r.Seq); err != nil {
						t.Errorf("answered stored at %d before it was: %v", r.Seq, err)
					}
				}
			}
			if diff := cmp.Diff(tt.wantOut, outs); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
		})
	}
}

// waitResponder waits until a request on subject is answered at all.
func waitResponder(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := nc.Request(subject, []byte("[]"), time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no responder on %s: %v", subject, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCustomerOrderKept(t *testing.T) {
	e := newEnv(t, envOpts{})
	customers := []string{"C-a", "C-b", "C-c", "C-d", "C-e"}
	var evs []map[string]any
	sent := map[string][]string{}
	for i := range 200 {
		c := customers[(i*7)%len(customers)]
		id := c + "-" + string(rune('A'+i/26)) + string(rune('a'+i%26))
		evs = append(evs, rechargeEvent(storeSrc, id, c, 100+i))
		sent[c] = append(sent[c], id)
	}
	if got := e.post(t, storeKey, ctBatch, batch(t, evs...), nil); got.code != http.StatusOK {
		t.Fatalf("status %d: %s", got.code, got.raw)
	}
	stored := map[string][]string{}
	for _, m := range e.storedMsgs(t) {
		ev := eventOf(t, m)
		stored[ev.Subject] = append(stored[ev.Subject], ev.ID)
	}
	if diff := cmp.Diff(sent, stored); diff != "" {
		t.Errorf("per-customer order in the stream (-sent +stored):\n%s", diff)
	}
}

func TestShutdownDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{noServer: true, deps: func(d *gateway.Deps) { d.Listener = ln }})
	e.url = "http://" + ln.Addr().String() + "/v1/events"
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.gw.Run(ctx) }()
	client := e.ns.Connect(t)
	waitResponder(t, client, "ingest.store.customer.registered")

	release := e.keys.holdRequests()
	defer release()
	var wg sync.WaitGroup
	var httpReply reply
	wg.Go(func() {
		httpReply = e.post(t, storeKey, ctStructured, mustJSON(t, registeredEvent(storeSrc, "sd-1", "C-1")), nil)
	})
	<-e.keys.asked
	var natsReply gateway.Response
	var natsErr error
	wg.Go(func() {
		m, err := client.Request("ingest.store.customer.registered", mustJSON(t, registeredEvent(storeSrc, "sd-2", "C-2")), 20*time.Second)
		if natsErr = err; err == nil {
			natsErr = json.Unmarshal(m.Data, &natsReply)
		}
	})
	<-e.keys.asked // both requests are in progress, waiting for keys
	cancel()
	time.Sleep(200 * time.Millisecond) // Run is draining
	select {
	case err := <-done:
		t.Fatalf("Run returned %v before the requests in progress finished", err)
	default:
	}
	release()
	wg.Wait()
	if httpReply.code != http.StatusOK || httpReply.body.Stored != 1 {
		t.Errorf("http request in progress at shutdown: status %d: %s", httpReply.code, httpReply.raw)
	}
	if natsErr != nil || natsReply.Status != http.StatusOK || natsReply.Stored != 1 {
		t.Errorf("nats request in progress at shutdown: %v %+v", natsErr, natsReply)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after draining")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Errorf("the listener still accepts after Run returned")
	}
	if _, err := client.Request("ingest.store.customer.registered", []byte("{}"), 300*time.Millisecond); err == nil {
		t.Errorf("the NATS door still answers after Run returned")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  gateway.Config
		want []string
	}{
		{name: "defaults with channels", cfg: gateway.Config{Channels: testChannels()}},
		{name: "no channels", cfg: gateway.Config{}, want: []string{"Channels"}},
		{name: "budget below a batch", cfg: gateway.Config{Channels: testChannels(), MaxBatch: 100, MaxInFlight: 10}, want: []string{"MaxInFlight 10"}},
		{name: "bad addr and body", cfg: gateway.Config{Channels: testChannels(), Addr: "nope", MaxBodyBytes: 10}, want: []string{"Addr \"nope\"", "MaxBodyBytes 10"}},
		{name: "negative timeout", cfg: gateway.Config{Channels: testChannels(), AckTimeout: -time.Second}, want: []string{"AckTimeout -1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want errors naming %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// metricValue returns the value of a counter or gauge with the given label values
// (in the order of its label names), 0 if it has not been touched.
func metricValue(t testing.TB, e *env, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i, lp := range m.GetLabel() {
				if i >= len(labels) || lp.GetValue() != labels[i] {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// With the key service down, events with personal fields fail (retry later) and the
// others of the batch are still stored.
func TestKeyServiceDown(t *testing.T) {
	e := newEnv(t, envOpts{noKeys: true})
	got := e.post(t, storeKey, ctBatch, batch(t, rechargeEvent(storeSrc, "ks-1", "C-1", 100), registeredEvent(storeSrc, "ks-2", "C-2")), nil)
	want := gateway.Response{Stored: 1, Failed: 1, Results: []gateway.Result{
		{Index: 0, ID: "ks-1", Status: "stored", Stream: "TOUCHPOINTS"},
		{Index: 1, ID: "ks-2", Status: "failed", Reason: "data key unavailable to seal personal fields; not stored, retry later"}}}
	if got.code != http.StatusMultiStatus {
		t.Errorf("status %d, want 207: %s", got.code, got.raw)
	}
	if diff := cmp.Diff(want, got.body, ignoreVolatile); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
	got = e.post(t, storeKey, ctStructured, mustJSON(t, registeredEvent(storeSrc, "ks-3", "C-3")), nil)
	if got.code != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" {
		t.Errorf("only failed events: status %d, Retry-After %q; want 503 with Retry-After: %s", got.code, got.header.Get("Retry-After"), got.raw)
	}
}

// Answers never quote personal values, even when they break the schema.
func TestRefusalsDoNotEchoPersonalData(t *testing.T) {
	e := newEnv(t, envOpts{})
	ev := registeredEvent(storeSrc, "pii-1", "C-1")
	ev["data"].(map[string]any)["phone"] = "PHONE-13912345678"
	got := e.post(t, storeKey, ctStructured, mustJSON(t, ev), nil)
	if got.code != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422: %s", got.code, got.raw)
	}
	if bytes.Contains(got.raw, []byte("13912345678")) {
		t.Errorf("the answer quotes the personal value: %s", got.raw)
	}
	want := []events.FieldError{{Field: "/data/phone", Reason: `'[personal]' does not match pattern '^\\+?[0-9]{5,20}$'`}}
	if diff := cmp.Diff(want, got.body.Results[0].Errors, ignoreVolatile); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
