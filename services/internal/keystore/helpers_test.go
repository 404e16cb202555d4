package keystore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/testkit"
)

// newKEK creates a fresh master key file in a temporary directory.
func newKEK(t testing.TB) *keystore.MasterKey {
	t.Helper()
	k, _, err := keystore.LoadOrCreateMasterKey(filepath.Join(t.TempDir(), "secrets", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newStore migrates a fresh database and opens a store on it with a fresh master key.
func newStore(t testing.TB) (*keystore.Store, *pgxpool.Pool, *keystore.MasterKey) {
	t.Helper()
	pool, _ := testkit.Pool(t)
	if err := keystore.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	kek := newKEK(t)
	store, err := keystore.Open(context.Background(), pool, kek)
	if err != nil {
		t.Fatal(err)
	}
	return store, pool, kek
}

// connect opens a NATS connection the way the services do (reconnecting forever),
// closed when the test ends.
func connect(t testing.TB, url, name string) *nats.Conn {
	t.Helper()
	nc, err := natsconn.Connect(url, "", name, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// serve runs a key service on its own connection until stop is called or the test
// ends, waits until it answers, and checks that Run returns nil on cancellation.
func serve(t testing.TB, store *keystore.Store, url string, cfg keystore.ServiceConfig, reg prometheus.Registerer) (stop func()) {
	t.Helper()
	nc := connect(t, url, "keys-under-test")
	svc, err := keystore.NewService(cfg, keystore.ServiceDeps{Store: store, NC: nc, Log: testkit.Logger(t), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	stop = testkit.Go(t, "key service", 20*time.Second, svc.Run)
	waitAnswering(t, url)
	return stop
}

// waitAnswering waits until some key service answers on url.
func waitAnswering(t testing.TB, url string) {
	t.Helper()
	nc := connect(t, url, "probe")
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := nc.Request(events.KeySubjectIDs, []byte(`{}`), time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key service not answering after 15s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// customers returns n fresh customer ids.
func customers(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + "-" + testkit.Unique()
	}
	return out
}
