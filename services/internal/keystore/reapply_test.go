package keystore_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/testkit"
)

// logLayout provisions a log of 8 partitions spread over two streams, as a large
// operator may spread them: the key service must read both.
func logLayout(t *testing.T, js jetstream.JetStream) events.Layout {
	t.Helper()
	def := streams.Default()
	def.Layout.Partitions = 8
	def.Ingest = false
	def.Layout.Streams = []events.StreamLayout{{Name: "TOUCHPOINTS_A", First: 0, Last: 3}, {Name: "TOUCHPOINTS_B", First: 4, Last: 7}}
	if _, err := streams.Apply(t.Context(), js, def); err != nil {
		t.Fatal(err)
	}
	return def.Layout
}

// serveWithLog runs a key service that re-applies the log's erasures at start.
func serveWithLog(t *testing.T, store *keystore.Store, url string, l keystore.ErasureLog) (stop func()) {
	t.Helper()
	nc := connect(t, url, "keys-under-test")
	svc, err := keystore.NewService(keystore.ServiceConfig{}, keystore.ServiceDeps{Store: store, NC: nc, Log: testkit.Logger(t), Erasures: &l})
	if err != nil {
		t.Fatal(err)
	}
	stop = testkit.Go(t, "key service", 20*time.Second, svc.Run)
	waitAnswering(t, url)
	return stop
}

// TestReapplyErasuresAfterRestore: a key store restored from a backup older than an
// erasure holds the erased key again; the key service, starting, reads the erasures
// from the log (both streams) and erases it again before it answers, so the sealed
// fields stay unreadable. A key created after an erasure (new data) is kept.
func TestReapplyErasuresAfterRestore(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	layout := logLayout(t, js)
	erasures := keystore.ErasureLog{JS: js, Layout: layout}
	store, pool, kek := newStore(t)
	stop := serveWithLog(t, store, ns.URL, erasures)

	client := events.NewKeyClient(nc, events.KeyClientConfig{CacheTTL: -1})
	pub, err := events.NewPublisher(ctx, nc, events.WithSource("urn:test:store"), events.WithLayout(layout), events.WithKeys(client))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := events.NewPublisher(ctx, nc, events.WithSource("urn:touchstream:service:ops"), events.WithLayout(layout))
	if err != nil {
		t.Fatal(err)
	}
	// Two customers in different streams.
	gone, kept := "", ""
	for i := 0; gone == "" || kept == ""; i++ {
		c := customers("R", 1)[0]
		switch p := layout.PartitionOf(c); {
		case p < 4 && gone == "":
			gone = c
		case p >= 4 && kept == "":
			kept = c
		}
	}
	register := func(c, phone string) {
		t.Helper()
		ev, err := events.NewEvent(c, time.Now(), events.CustomerRegistered{Name: events.Clear("李娜"), Phone: events.Clear(phone),
			CustomerType: "individual", Region: "CN-BJ", Plan: events.Plan{ID: "P1", Kind: "prepaid", MonthlyFee: events.CNY(1000)}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	erase := func(c string) time.Time {
		t.Helper()
		at := time.Now()
		ev, err := events.NewEvent(c, at, events.CustomerErased{Reason: "customer_request", Operator: "ops-li", RequestedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ops.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if _, err := (&keystore.EraseClient{NC: nc}).Erase(ctx, c, at, false); err != nil {
			t.Fatal(err)
		}
		return at
	}

	// kept: erased once, then registered again: its new key seals new data.
	register(kept, "+8613900000001")
	erase(kept)
	time.Sleep(10 * time.Millisecond) // the new key is created strictly after the erasure
	register(kept, "+8613900000002")
	keptKey := currentKey(t, store, kept)
	// gone: registered; its key is in the backup.
	register(gone, "+8613900000003")
	goneKey := currentKey(t, store, gone)

	backup(t, pool)
	erase(gone)
	if keys, _ := store.KeysByID(ctx, []string{goneKey}); len(keys) != 0 {
		t.Fatalf("key %s still there after the erasure", goneKey)
	}
	stop()

	restore(t, pool)
	if keys, _ := store.KeysByID(ctx, []string{goneKey}); len(keys) != 1 {
		t.Fatalf("the restore did not bring key %s back: the test proves nothing", goneKey)
	}

	// A new key service process on the restored store.
	store2, err := keystore.Open(ctx, pool, kek)
	if err != nil {
		t.Fatal(err)
	}
	serveWithLog(t, store2, ns.URL, erasures)
	fresh := events.NewKeyClient(connect(t, ns.URL, "after-restore"), events.KeyClientConfig{CacheTTL: -1})
	got, err := fresh.KeysByID(ctx, []string{goneKey, keptKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[goneKey]; ok {
		t.Errorf("the erased key %s is served again after the restore", goneKey)
	}
	if _, ok := got[keptKey]; !ok {
		t.Errorf("the key %s created after %s's erasure was erased too", keptKey, kept)
	}
	if erased, err := store2.Erased(ctx, []string{goneKey}); err != nil || !cmp.Equal(erased, []string{goneKey}) {
		t.Errorf("Erased(%s) = %v, %v", goneKey, erased, err)
	}

	// The sealed registration of gone, read from the log, stays unreadable.
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, layout.Stream(layout.PartitionOf(gone)))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, layout.Subject(layout.PartitionOf(gone), events.TypeCustomerRegistered))
	if err != nil {
		t.Fatal(err)
	}
	var stored events.Event
	if err := json.Unmarshal(msg.Data, &stored); err != nil {
		t.Fatal(err)
	}
	schema, _ := cat.Lookup(stored.DataSchema)
	opened, err := events.NewSealer(fresh).Reveal(ctx, schema, &stored)
	if !errors.Is(err, events.ErrErased) || bytes.Contains(opened, []byte("13900000003")) {
		t.Errorf("Reveal after the restore: %s, %v; want ErrErased", opened, err)
	}
}

func currentKey(t *testing.T, store *keystore.Store, customer string) string {
	t.Helper()
	ids, err := store.KeyIDs(t.Context(), customer, time.Time{})
	if err != nil || len(ids) != 1 {
		t.Fatalf("key ids of %s: %v, %v", customer, ids, err)
	}
	return ids[0]
}

// backup copies the key store's rows aside, as a backup would.
func backup(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for _, q := range []string{
		`CREATE TABLE public.backup_data_keys AS SELECT * FROM keystore.data_keys`,
		`CREATE TABLE public.backup_erased_keys AS SELECT * FROM keystore.erased_keys`,
	} {
		if _, err := pool.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
}

// restore puts the copied rows back in place of the current ones.
func restore(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for _, q := range []string{
		`DELETE FROM keystore.data_keys`,
		`DELETE FROM keystore.erased_keys`,
		`INSERT INTO keystore.data_keys SELECT * FROM public.backup_data_keys`,
		`INSERT INTO keystore.erased_keys SELECT * FROM public.backup_erased_keys`,
	} {
		if _, err := pool.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEraseOverNATSDryRunAndBound: the erase subject reports without erasing on a dry
// run, erases only keys created up to the bound, and refuses a malformed customer.
func TestEraseOverNATSDryRunAndBound(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	store, _, _ := newStore(t)
	serve(t, store, ns.URL, keystore.ServiceConfig{}, nil)
	nc := connect(t, ns.URL, "ops")
	c := customers("E", 1)[0]
	before := time.Now().Add(-time.Hour)
	keys, err := store.CustomerKeys(ctx, []string{c})
	if err != nil {
		t.Fatal(err)
	}
	id := keys[c].ID
	ec := &keystore.EraseClient{NC: nc}

	dry, err := ec.Erase(ctx, c, time.Time{}, true)
	if err != nil || !cmp.Equal(dry.KeyIDs, []string{id}) {
		t.Fatalf("dry run: %+v, %v; want key %s listed", dry, err, id)
	}
	if got := currentKey(t, store, c); got != id {
		t.Fatalf("a dry run erased the key")
	}
	early, err := ec.Erase(ctx, c, before, false)
	if err != nil || len(early.KeyIDs) != 0 {
		t.Fatalf("erase up to an hour ago: %+v, %v; want nothing erased (the key is newer)", early, err)
	}
	r, err := ec.Erase(ctx, c, time.Time{}, false)
	if err != nil || !cmp.Equal(r.KeyIDs, []string{id}) || r.ErasedAt.IsZero() {
		t.Fatalf("erase: %+v, %v", r, err)
	}
	again, err := ec.Erase(ctx, c, time.Time{}, false)
	if err != nil || len(again.KeyIDs) != 0 {
		t.Fatalf("erase again: %+v, %v; want an empty receipt", again, err)
	}
	if _, err := ec.Erase(ctx, "not a customer", time.Time{}, false); err == nil || !bytes.Contains([]byte(err.Error()), []byte("customer: not a valid customer id")) {
		t.Errorf("erase of a malformed id: %v", err)
	}
}
