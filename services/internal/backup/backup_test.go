package backup_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/services/internal/backup"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/testkit"
)

// site is one touchstream installation's NATS and database.
type site struct {
	ns   *testkit.NATS
	nc   *nats.Conn
	js   jetstream.JetStream
	pool *pgxpool.Pool
	url  string
}

func newSite(t *testing.T) *site {
	t.Helper()
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	pool, url := testkit.Pool(t)
	return &site{ns: ns, nc: nc, js: js, pool: pool, url: url}
}

func (s *site) deps(def streams.Definition) backup.Deps {
	return backup.Deps{NATS: s.nc, Pool: s.pool, DatabaseURL: s.url, Streams: def, Log: slog.New(slog.DiscardHandler)}
}

// spread is a layout of 8 partitions over two streams, as a large operator spreads them.
func spread() streams.Definition {
	def := streams.Default()
	def.Ingest = false
	def.Layout.Partitions = 8
	def.Layout.Streams = []events.StreamLayout{{Name: "TP_0_3", First: 0, Last: 3}, {Name: "TP_4_7", First: 4, Last: 7}}
	return def
}

func deployDir(t *testing.T, def streams.Definition) string {
	t.Helper()
	dir := t.TempDir()
	b, _ := json.Marshal(def)
	for name, body := range map[string][]byte{"streams.json": b, "channels.json": []byte(`{"channels":[]}`), "README.txt": []byte("not configuration")} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// populate fills a site: events in both streams, folded into the timeline and the
// idempotency index, data keys in the key store, an empty model store.
func populate(t *testing.T, s *site, def streams.Definition, kek *keystore.MasterKey) {
	t.Helper()
	ctx := t.Context()
	if _, err := streams.Apply(ctx, s.js, def); err != nil {
		t.Fatal(err)
	}
	pub, err := events.NewPublisher(ctx, s.nc, events.WithLayout(def.Layout), events.WithSource("urn:test:store"), events.WithValidation(false))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var evs []*events.Event
	for i := range 2_000 {
		ev, err := events.NewEvent(fmt.Sprintf("C-%03d", i%50), time.Now().Add(-time.Hour), events.StoreVisited{StoreID: "S1", Purpose: "inquiry", DurationSeconds: 60})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	for _, r := range pub.PublishBatch(ctx, evs) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if _, err := projections.EnsureServing(ctx, s.pool, map[string]string{timeline.Name: "timeline_v1"}); err != nil {
		t.Fatal(err)
	}
	cat, _ := events.DefaultCatalog()
	r, err := projections.NewRunner(projections.Config{Group: "backup-test", NoSignals: true}, projections.Deps{Pool: s.pool, JS: s.js, Layout: def.Layout, Catalog: cat,
		Log: slog.New(slog.DiscardHandler)}, timeline.New("timeline_v1"), dedup.Projection{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := keystore.Migrate(ctx, s.pool); err != nil {
		t.Fatal(err)
	}
	store, err := keystore.Open(ctx, s.pool, kek)
	if err != nil {
		t.Fatal(err)
	}
	var cs []string
	for i := range 50 {
		cs = append(cs, fmt.Sprintf("C-%03d", i))
	}
	if _, err := store.CustomerKeys(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if err := churn.MigrateModels(ctx, s.pool); err != nil {
		t.Fatal(err)
	}
}

func masterKey(t *testing.T) *keystore.MasterKey {
	t.Helper()
	k, _, err := keystore.LoadOrCreateMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestBackupRestoreRoundTrip backs up a site whose log is spread over two streams and
// restores it into a fresh NATS and database: the streams come back with their
// sequences, the key store, model store and idempotency index with their rows and
// checkpoints, the serving versions with the sequences they had emitted up to, and
// the configuration files; a declared schema the site lacks is reported absent.
func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := t.Context()
	def := spread()
	kek := masterKey(t)
	src := newSite(t)
	populate(t, src, def, kek)
	deploy := deployDir(t, def)

	dir := filepath.Join(t.TempDir(), "backup")
	var steps []string
	m, err := backup.Backup(ctx, backup.Config{Dir: dir, DeployDir: deploy, Progress: func(p backup.Progress) {
		if len(steps) == 0 || steps[len(steps)-1] != p.Step {
			steps = append(steps, p.Step)
		}
	}}, src.deps(def))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("steps: %v", steps)
	var names []string
	for _, s := range m.Streams {
		names = append(names, fmt.Sprintf("%s:%d", s.Name, s.Messages))
		if s.Log && s.Messages == 0 {
			t.Errorf("stream %s snapshotted empty", s.Name)
		}
	}
	var schemas []string
	for _, s := range m.Schemas {
		schemas = append(schemas, fmt.Sprintf("%s/%s/absent=%v", s.Phase, s.Name, s.Absent))
	}
	want := []string{"before_log/dedup/absent=false", "after_log/keystore/absent=false", "after_log/churn_models/absent=false", "after_log/access_audit/absent=true"}
	if diff := cmp.Diff(want, schemas); diff != "" {
		t.Errorf("schemas (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"channels.json", "streams.json"}, m.Deploy); diff != "" {
		t.Errorf("deploy files (-want +got):\n%s", diff)
	}
	if m.KEK != kek.ID() {
		t.Errorf("manifest kek %q, want %q", m.KEK, kek.ID())
	}
	t.Logf("backup: streams %v, schemas %v, %d files", names, schemas, len(m.Files))

	dst := newSite(t)
	deployTo := filepath.Join(t.TempDir(), "deploy")
	rep, err := backup.Restore(ctx, backup.RestoreConfig{Dir: dir, DeployTo: deployTo, MasterKey: keyOf(kek)}, dst.deps(streams.Definition{}))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range m.Streams {
		info, err := dst.js.Stream(ctx, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		st := info.CachedInfo().State
		if st.Msgs != s.Messages || st.LastSeq != s.LastSeq || s.Messages > 0 && st.FirstSeq != s.FirstSeq {
			t.Errorf("stream %s restored with %d messages %d-%d, backed up %d %d-%d", s.Name, st.Msgs, st.FirstSeq, st.LastSeq, s.Messages, s.FirstSeq, s.LastSeq)
		}
		if rep.Streams[i].Name != s.Name {
			t.Errorf("report stream %d is %s, want %s", i, rep.Streams[i].Name, s.Name)
		}
	}
	for _, q := range []string{
		`SELECT count(*) FROM keystore.data_keys`,
		`SELECT count(*) FROM dedup.dedup_index`,
		`SELECT count(*) FROM projections.checkpoints WHERE target = 'dedup'`,
		`SELECT coalesce(sum(seq), 0) FROM projections.checkpoints WHERE target = 'dedup'`,
		`SELECT count(*) FROM public.touchstream_migrations WHERE schema_name IN ('keystore', 'dedup', 'churn_models')`,
	} {
		if got, want := count(t, dst.pool, q), count(t, src.pool, q); got != want || want == 0 {
			t.Errorf("%s: %d restored, %d in the source (want equal, above 0)", q, got, want)
		}
	}
	var target string
	var seqs map[int]uint64
	if err := dst.pool.QueryRow(ctx, `SELECT target, switch_seqs FROM projections.serving WHERE projection = 'timeline'`).Scan(&target, &seqs); err != nil {
		t.Fatal(err)
	}
	cps, err := projections.LoadCheckpoints(ctx, src.pool, "timeline_v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for p, cp := range cps {
		if seqs[p] != cp.Seq || cp.Seq == 0 {
			t.Errorf("timeline partition %d: emits after %d, the serving version had emitted up to %d", p, seqs[p], cp.Seq)
		}
	}
	if target != "timeline_v1" || count(t, dst.pool, `SELECT count(*) FROM pg_namespace WHERE nspname = 'timeline_v1'`) != 0 {
		t.Errorf("serving %s; the read model itself must not be restored (it is rebuilt from the log)", target)
	}
	for _, f := range []string{"streams.json", "channels.json"} {
		a, _ := os.ReadFile(filepath.Join(deploy, f))
		b, err := os.ReadFile(filepath.Join(deployTo, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("deploy file %s not restored as backed up (%v)", f, err)
		}
	}
	if rep.Erasures == nil || rep.DataKeys != 50 {
		t.Errorf("erasures %+v, data keys %d: want the erasures re-applied and 50 keys", rep.Erasures, rep.DataKeys)
	}
	if diff := cmp.Diff([]string{"access_audit"}, rep.Absent); diff != "" {
		t.Errorf("absent (-want +got):\n%s", diff)
	}
	js, _ := json.Marshal(rep)
	t.Logf("restore report: %s", js)

	// The same restore again: the target is not empty any more.
	_, err = backup.Restore(ctx, backup.RestoreConfig{Dir: dir, MasterKey: keyOf(kek)}, dst.deps(streams.Definition{}))
	if !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("restore into the restored site: %v, want ErrNotEmpty", err)
	}
	t.Logf("refused: %v", err)
	// Forced, it replaces everything and ends where the first restore did.
	rep2, err := backup.Restore(ctx, backup.RestoreConfig{Dir: dir, MasterKey: keyOf(kek), Force: true}, dst.deps(streams.Definition{}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rep.Streams, rep2.Streams); diff != "" || len(rep2.Occupied) == 0 {
		t.Errorf("forced restore: occupied %v, streams (-first +forced):\n%s", rep2.Occupied, diff)
	}
}

// TestRestoreRefusesBeforeTouchingAnything: a backup whose files do not match the
// manifest, or a master key that is not the backup's, is refused with nothing created
// in the target.
func TestRestoreRefusesBeforeTouchingAnything(t *testing.T) {
	ctx := t.Context()
	def := spread()
	kek := masterKey(t)
	src := newSite(t)
	populate(t, src, def, kek)
	dir := filepath.Join(t.TempDir(), "backup")
	if _, err := backup.Backup(ctx, backup.Config{Dir: dir, DeployDir: deployDir(t, def)}, src.deps(def)); err != nil {
		t.Fatal(err)
	}
	// A backup never writes into a directory that holds something.
	if _, err := backup.Backup(ctx, backup.Config{Dir: dir, DeployDir: deployDir(t, def)}, src.deps(def)); err == nil {
		t.Fatal("a second backup into the same directory succeeded")
	}

	dst := newSite(t)
	untouched := func(what string) {
		t.Helper()
		for name := range dst.js.StreamNames(ctx).Name() {
			t.Errorf("%s: stream %s created", what, name)
		}
		if n := count(t, dst.pool, `SELECT count(*) FROM pg_namespace WHERE nspname IN ('projections', 'keystore', 'dedup')`); n != 0 {
			t.Errorf("%s: %d schemas created", what, n)
		}
	}
	_, err := backup.Restore(ctx, backup.RestoreConfig{Dir: dir, MasterKey: keyOf(masterKey(t))}, dst.deps(streams.Definition{}))
	if !errors.Is(err, backup.ErrWrongMasterKey) {
		t.Fatalf("restore with another master key: %v, want ErrWrongMasterKey", err)
	}
	untouched("wrong master key")
	_, err = backup.Restore(ctx, backup.RestoreConfig{Dir: dir}, dst.deps(streams.Definition{}))
	if err == nil {
		t.Fatal("restore without the master key succeeded")
	}
	untouched("no master key")

	// One flipped byte in the middle of the first log snapshot.
	snap := filepath.Join(dir, "streams", def.Layout.Streams[0].Name+".snapshot")
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(snap, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = backup.Restore(ctx, backup.RestoreConfig{Dir: dir, MasterKey: keyOf(kek)}, dst.deps(streams.Definition{}))
	if !errors.Is(err, backup.ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("streams/TP_0_3.snapshot")) {
		t.Fatalf("restore of a corrupted backup: %v, want ErrCorrupt naming the file", err)
	}
	untouched("corrupted snapshot")
	t.Logf("refused: %v", err)
}

func keyOf(k *keystore.MasterKey) func() (*keystore.MasterKey, error) {
	return func() (*keystore.MasterKey, error) { return k, nil }
}
