package keystore_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/testkit"
)

func TestServiceRoundTrip(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	store, _, _ := newStore(t)
	reg := prometheus.NewRegistry()
	serve(t, store, ns.URL, keystore.ServiceConfig{}, reg)
	client := events.NewKeyClient(connect(t, ns.URL, "client"), events.KeyClientConfig{})
	cs := customers("C", 3)

	byCust, err := client.CustomerKeys(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(cs))
	want := map[string]events.DataKey{}
	for _, c := range cs {
		ids = append(ids, byCust[c].ID)
		want[byCust[c].ID] = byCust[c]
	}
	// A fresh client has no cache: KeysByID goes to the service.
	fresh := events.NewKeyClient(connect(t, ns.URL, "fresh"), events.KeyClientConfig{})
	byID, err := fresh.KeysByID(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, byID); diff != "" {
		t.Errorf("KeysByID over NATS (-want +got):\n%s", diff)
	}
	direct, err := store.CustomerKeys(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(direct, byCust); diff != "" {
		t.Errorf("keys over NATS differ from the store's (-store +nats):\n%s", diff)
	}

	// Second calls are served from the client's cache.
	before := client.Requests()
	if _, err := client.CustomerKeys(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if _, err := client.KeysByID(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if got := client.Requests(); got != before {
		t.Errorf("cached calls made %d round trips, want 0", got-before)
	}

	// Metrics (waitAnswering's probe is one more ok request on the ids subject).
	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"touchstream_keys_requests_total", requests(events.KeySubjectCustomers, keystore.OutcomeOK), 1},
		{"touchstream_keys_requests_total", requests(events.KeySubjectIDs, keystore.OutcomeOK), 2},
		{"touchstream_keys_created_total", nil, float64(len(cs))},
	} {
		if got := counter(t, reg, m.name, m.labels); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "touchstream_keys_request_seconds" {
			if n := len(mf.GetMetric()); n != 2 {
				t.Errorf("latency histogram has %d series, want 2 (one per subject)", n)
			}
			if got := mf.GetMetric()[0].GetHistogram().GetSampleCount(); got == 0 {
				t.Error("latency histogram holds no samples")
			}
		}
	}
}

// counter returns the value of the counter of the given name and labels in reg (0 if
// it has no such series yet).
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if cmp.Equal(got, labels, cmpopts.EquateEmpty()) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func requests(subject, outcome string) map[string]string {
	return map[string]string{"subject": subject, "outcome": outcome}
}

func TestKeysSurviveServiceRestart(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	store, pool, kek := newStore(t)
	stop := serve(t, store, ns.URL, keystore.ServiceConfig{}, nil)
	cs := customers("C", 5)
	first, err := events.NewKeyClient(connect(t, ns.URL, "client-1"), events.KeyClientConfig{}).CustomerKeys(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	stop()

	// A new process: new store on the same database and master key, new service.
	store2, err := keystore.Open(ctx, pool, kek)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, store2, ns.URL, keystore.ServiceConfig{}, nil)
	client := events.NewKeyClient(connect(t, ns.URL, "client-2"), events.KeyClientConfig{})
	again, err := client.CustomerKeys(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("keys changed across a restart (-before +after):\n%s", diff)
	}
	ids := []string{first[cs[0]].ID, first[cs[4]].ID}
	byID, err := events.NewKeyClient(connect(t, ns.URL, "client-3"), events.KeyClientConfig{}).KeysByID(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]events.DataKey{ids[0]: first[cs[0]], ids[1]: first[cs[4]]}, byID); diff != "" {
		t.Errorf("KeysByID after a restart (-want +got):\n%s", diff)
	}
}

func TestConcurrentCustomerKeysOverNATS(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _, _ := newStore(t)
	serve(t, store, ns.URL, keystore.ServiceConfig{}, nil)
	c := customers("NEW", 1)[0]
	const callers = 50
	ids := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		// Separate clients, so no cache is shared: 50 requests reach the service.
		client := events.NewKeyClient(connect(t, ns.URL, "client"), events.KeyClientConfig{Timeout: 10 * time.Second})
		wg.Go(func() {
			keys, err := client.CustomerKeys(t.Context(), []string{c})
			ids[i], errs[i] = keys[c].ID, err
		})
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("caller %d got key %s, caller 0 got %s", i, ids[i], ids[0])
		}
	}
}

func TestEraseOverNATS(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	store, _, _ := newStore(t)
	serve(t, store, ns.URL, keystore.ServiceConfig{}, nil)
	nc := connect(t, ns.URL, "client")
	client := events.NewKeyClient(nc, events.KeyClientConfig{})
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	c := customers("C", 1)[0]

	// An event sealed through the door, as the gateway does, before the erasure.
	ev, err := events.NewEvent(c, time.Now(), events.CustomerRegistered{
		Name: events.Clear("张伟"), Phone: events.Clear("+8613800138000"), CustomerType: "individual",
		Region: "CN-GD-SZ", Plan: events.Plan{ID: "P58", Kind: "prepaid", MonthlyFee: events.CNY(5800)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev.Source = "urn:test"
	door := events.NewDoor(events.DefaultLayout(), events.NewValidator(cat, 64, events.DefaultLimits(), nil), client, true)
	msgs, errs := door.Prepare(ctx, []*events.Event{ev})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if bytes.Contains(msgs[0].Body, []byte("13800138000")) {
		t.Fatalf("stored body holds the phone in clear")
	}
	var stored events.Event
	if err := json.Unmarshal(msgs[0].Body, &stored); err != nil {
		t.Fatal(err)
	}
	schema, ok := cat.Lookup(stored.DataSchema)
	if !ok {
		t.Fatalf("no schema %s", stored.DataSchema)
	}
	keyBefore, err := client.CustomerKeys(ctx, []string{c})
	if err != nil {
		t.Fatal(err)
	}
	gone := keyBefore[c].ID
	opened, err := events.NewSealer(client).Reveal(ctx, schema, &stored)
	if err != nil || !bytes.Contains(opened, []byte("13800138000")) {
		t.Fatalf("Reveal before erasure: %s, %v", opened, err)
	}

	receipt, err := store.Erase(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{gone}, receipt.KeyIDs); diff != "" {
		t.Errorf("receipt ids (-want +got):\n%s", diff)
	}
	client.Forget(c) // the erasing process drops its cache; others wait for CacheTTL

	// The service reports the id erased and omits the key.
	msg, err := nc.Request(events.KeySubjectIDs, []byte(`{"ids":["`+gone+`"]}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply events.KeyReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events.KeyReply{Erased: []string{gone}}, reply); diff != "" {
		t.Errorf("reply for an erased id (-want +got):\n%s", diff)
	}

	revealed, err := events.NewSealer(client).Reveal(ctx, schema, &stored)
	if !errors.Is(err, events.ErrErased) {
		t.Fatalf("Reveal after erasure: %s, %v; want ErrErased", revealed, err)
	}
	if bytes.Contains(revealed, []byte("13800138000")) || bytes.Contains(revealed, []byte("张伟")) {
		t.Errorf("Reveal after erasure still shows personal data: %s", revealed)
	}

	after, err := client.CustomerKeys(ctx, []string{c})
	if err != nil {
		t.Fatal(err)
	}
	if after[c].ID == gone {
		t.Errorf("CustomerKeys after erasure returned the erased key %s", gone)
	}
}

func TestBadRequestsGetErrorReplies(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _, _ := newStore(t)
	reg := prometheus.NewRegistry()
	serve(t, store, ns.URL, keystore.ServiceConfig{}, reg)
	nc := connect(t, ns.URL, "client")
	many, _ := json.Marshal(events.KeyRequest{Customers: customers("C", keystore.MaxNames+1)})
	tests := []struct {
		name    string
		subject string
		body    []byte
		want    string
	}{
		{"oversized payload", events.KeySubjectCustomers, bytes.Repeat([]byte(" "), keystore.MaxRequestBytes+1), "at most 262144"},
		{"not JSON", events.KeySubjectCustomers, []byte("customers please"), "not a JSON key request"},
		{"wrong JSON shape", events.KeySubjectIDs, []byte(`{"ids":"k-1"}`), "not a JSON key request"},
		{"too many customers", events.KeySubjectCustomers, many, "customers: 1001 listed, at most 1000"},
		{"phone as customer id", events.KeySubjectCustomers, []byte(`{"customers":["C-1","+8613800138000"]}`), "customers[1]: not a valid customer id"},
		{"ids on the customers subject", events.KeySubjectCustomers, []byte(`{"ids":["k-1"]}`), "ids: not accepted on " + events.KeySubjectCustomers},
		{"customers on the ids subject", events.KeySubjectIDs, []byte(`{"customers":["C-1"]}`), "customers: not accepted on " + events.KeySubjectIDs},
		{"empty id", events.KeySubjectIDs, []byte(`{"ids":[""]}`), "ids[0]: must be 1 to 64 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := nc.Request(tt.subject, tt.body, 5*time.Second)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			var reply events.KeyReply
			if err := json.Unmarshal(msg.Data, &reply); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(reply.Error, tt.want) || len(reply.Keys) != 0 {
				t.Errorf("reply %+v: want no keys and an error saying %q", reply, tt.want)
			}
			if strings.Contains(reply.Error, "13800138000") {
				t.Errorf("error %q echoes personal data", reply.Error)
			}
		})
	}
	// Still serving.
	if _, err := events.NewKeyClient(nc, events.KeyClientConfig{}).CustomerKeys(t.Context(), []string{"C-still-here"}); err != nil {
		t.Fatalf("after bad requests: %v", err)
	}
	if got, want := counter(t, reg, "touchstream_keys_requests_total", requests(events.KeySubjectCustomers, keystore.OutcomeInvalid)), 5.0; got != want {
		t.Errorf("invalid customers requests counted %v, want %v", got, want)
	}
}

func TestServiceBoundsConcurrency(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _, _ := newStore(t)
	reg := prometheus.NewRegistry()
	serve(t, store, ns.URL, keystore.ServiceConfig{Workers: 1, Backlog: 2}, reg)
	nc := connect(t, ns.URL, "flood")
	// A flood of requests for new customers, all at once: the one worker and its small
	// backlog serve some, the rest are told "busy" at once; every request is answered.
	const n = 200
	replies := make(chan *nats.Msg, n)
	inbox := nats.NewInbox()
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, c := range customers("F", n) {
		body, _ := json.Marshal(events.KeyRequest{Customers: []string{c}})
		if err := nc.PublishRequest(events.KeySubjectCustomers, inbox, body); err != nil {
			t.Fatal(err)
		}
	}
	var ok, busy int
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case m := <-replies:
			var r events.KeyReply
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			switch {
			case r.Error == "" && len(r.Keys) == 1:
				ok++
			case strings.Contains(r.Error, "busy"):
				busy++
			default:
				t.Errorf("unexpected reply %+v", r)
			}
		case <-timeout:
			t.Fatalf("only %d ok and %d busy replies of %d after 30s", ok, busy, n)
		}
	}
	if ok == 0 || busy == 0 {
		t.Errorf("%d ok, %d busy: want both", ok, busy)
	}
	if got := counter(t, reg, "touchstream_keys_requests_total", requests(events.KeySubjectCustomers, keystore.OutcomeBusy)); got != float64(busy) {
		t.Errorf("busy counted %v, want %d", got, busy)
	}
	t.Logf("%d requests at once, 1 worker, backlog 2: %d served, %d busy", n, ok, busy)
}

func TestServiceSurvivesNATSRestart(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	store, _, _ := newStore(t)
	serve(t, store, ns.URL, keystore.ServiceConfig{}, nil)
	client := events.NewKeyClient(connect(t, ns.URL, "client"), events.KeyClientConfig{CacheTTL: -1, Timeout: time.Second})
	c := customers("C", 1)[0]
	before, err := client.CustomerKeys(ctx, []string{c})
	if err != nil {
		t.Fatal(err)
	}

	ns.Restart(t)

	deadline := time.Now().Add(20 * time.Second)
	for {
		after, err := client.CustomerKeys(ctx, []string{c})
		if err == nil {
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("key changed across a NATS restart (-before +after):\n%s", diff)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer 20s after the NATS restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := client.Requests(); got < 2 {
		t.Errorf("%d round trips, want at least 2 (cache disabled)", got)
	}
}

func TestServiceDrainsOnShutdown(t *testing.T) {
	ns := testkit.StartNATS(t)
	store, _, _ := newStore(t)
	const n = 100
	stop := serve(t, store, ns.URL, keystore.ServiceConfig{Workers: 1, Backlog: n}, nil)
	nc := connect(t, ns.URL, "client")
	replies := make(chan *nats.Msg, n)
	inbox := nats.NewInbox()
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, c := range customers("D", n) {
		body, _ := json.Marshal(events.KeyRequest{Customers: []string{c}})
		if err := nc.PublishRequest(events.KeySubjectCustomers, inbox, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil { // the server has routed every request to the service
		t.Fatal(err)
	}
	stop() // Run returns nil once every accepted request is answered

	timeout := time.After(10 * time.Second)
	for i := range n {
		select {
		case m := <-replies:
			var r events.KeyReply
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			if r.Error != "" || len(r.Keys) != 1 {
				t.Errorf("reply %d: %+v, want one key", i, r)
			}
		case <-timeout:
			t.Fatalf("%d of %d requests answered after the drain", i, n)
		}
	}
}

// TestLargeLookupsOverNATS asks for more keys than one request may name: the client
// splits them into requests sent a few at a time, and the answer is whole, or an
// error naming what the key service does not know.
func TestLargeLookupsOverNATS(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	store, _, _ := newStore(t)
	serve(t, store, ns.URL, keystore.ServiceConfig{}, nil)
	client := events.NewKeyClient(connect(t, ns.URL, "client"), events.KeyClientConfig{CacheTTL: -1})
	cs := customers("C", 2*events.MaxKeyRequestNames+500)

	byCust, err := client.CustomerKeys(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if len(byCust) != len(cs) || client.Requests() != 3 {
		t.Fatalf("%d keys in %d requests, want %d in 3", len(byCust), client.Requests(), len(cs))
	}
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		if byCust[c].Customer != c {
			t.Fatalf("customer %s got the key of %q", c, byCust[c].Customer)
		}
		ids = append(ids, byCust[c].ID)
	}
	byID, err := client.KeysByID(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if diff := cmp.Diff(byCust[c], byID[byCust[c].ID]); diff != "" {
			t.Fatalf("key of %s by id (-by customer +by id):\n%s", c, diff)
		}
	}
	// One id unknown to the key service, in the last request: the lookup fails.
	ids[len(ids)-1] = "dk-unknown"
	if _, err := client.KeysByID(ctx, ids); err == nil || !strings.Contains(err.Error(), `does not know key id "dk-unknown"`) {
		t.Errorf("KeysByID with an unknown id: %v, want the id named", err)
	}
}
