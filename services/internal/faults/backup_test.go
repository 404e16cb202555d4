package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/projections/verify"
	"github.com/touchstream/touchstream/services/internal/backup"
	"github.com/touchstream/touchstream/services/internal/keystore"
	"github.com/touchstream/touchstream/testkit"
)

// site is one installation: an embedded NATS with a temporary store, a database, a
// deploy and a data directory, and the key service and projector processes over them.
type site struct {
	t      *testing.T
	name   string
	bin    string
	dir    string
	deploy string
	data   string
	ns     *testkit.NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	pool   *pgxpool.Pool
	dbURL  string
	procs  []*testkit.Process
}

func newSite(t *testing.T, name, bin string) *site {
	t.Helper()
	s := &site{t: t, name: name, bin: bin, dir: t.TempDir()}
	s.deploy, s.data = filepath.Join(s.dir, "deploy"), filepath.Join(s.dir, "data")
	for _, d := range []string{s.deploy, filepath.Join(s.data, "secrets")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s.ns = testkit.StartNATS(t)
	s.nc, s.js = s.ns.JetStream(t)
	s.pool, s.dbURL = testkit.Pool(t)
	return s
}

func (s *site) common() []string {
	return []string{"--deploy-dir", s.deploy, "--data-dir", s.data, "--nats-url", s.ns.URL, "--database-url", s.dbURL,
		"--admin-addr", "127.0.0.1:0", "--log-level", "warn"}
}

// start runs the key service and one projector on the site.
func (s *site) start() {
	s.t.Helper()
	keys := testkit.NewProcess(s.t, s.name+"-keys", s.bin, append([]string{"keys"}, s.common()...)...)
	keys.Start()
	proj := testkit.NewProcess(s.t, s.name+"-projector", s.bin, append([]string{"projector", "--instance", s.name}, s.common()...)...)
	proj.Start()
	s.procs = append(s.procs, keys, proj)
}

func (s *site) stop() {
	for _, p := range s.procs {
		p.Stop()
	}
}

// cli runs a one-shot command on the site and returns its standard output.
func (s *site) cli(args ...string) (string, string, error) {
	s.t.Helper()
	cmd := exec.CommandContext(s.t.Context(), s.bin, append(args, s.common()...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// logMessages is how many messages the log streams hold.
func (s *site) logMessages(layout events.Layout) (total uint64, perStream map[string]uint64) {
	s.t.Helper()
	perStream = map[string]uint64{}
	for _, sl := range layout.Streams {
		st, err := s.js.Stream(s.t.Context(), sl.Name)
		if err != nil {
			s.t.Fatal(err)
		}
		info, err := st.Info(s.t.Context())
		if err != nil {
			s.t.Fatal(err)
		}
		perStream[sl.Name] = info.State.Msgs
		total += info.State.Msgs
	}
	return total, perStream
}

// applied is the events consumed per projection target.
func (s *site) applied() map[string]int64 {
	out := map[string]int64{}
	rows, err := s.pool.Query(s.t.Context(), `SELECT target, sum(applied) FROM projections.checkpoints GROUP BY target`)
	if err != nil {
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		var n int64
		if rows.Scan(&t, &n) == nil {
			out[t] = n
		}
	}
	return out
}

// waitCaughtUp waits until each of the read models has consumed total events.
func (s *site) waitCaughtUp(total uint64, targets int, within time.Duration) map[string]int64 {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := s.applied()
		done := 0
		for _, n := range got {
			if n == int64(total) {
				done++
			}
		}
		if len(got) >= targets && done == len(got) {
			return got
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: read models did not consume %d events within %s: %v", s.name, total, within, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *site) count(sql string, args ...any) int64 {
	s.t.Helper()
	var n int64
	if err := s.pool.QueryRow(s.t.Context(), sql, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// readModels is the targets a projector folds: timeline, customer360, loyalty, churn,
// service levels, and the idempotency index.
const readModels = 6

// TestBackupRestoreRebuildVerify loads 100,000 events (2,000 customers registered with
// sealed personal fields, one erasure recorded in the log whose key step never ran),
// folds them with the real key service and projector, backs the site up with the real
// binary while events keep arriving, restores into a fresh embedded NATS and a fresh
// database, lets a projector rebuild every read model from the restored log, and runs
// touchstream verify. Nothing in the backup is lost: every stream comes back with its
// sequences, every read model consumes every event, customer 360 verifies clean, every
// personal field is still openable except the erased customer's, whose key the restore
// erased again from the log.
func TestBackupRestoreRebuildVerify(t *testing.T) {
	ctx := t.Context()
	bin := testkit.BuildBinary(t)
	src := newSite(t, "src", bin)

	def := streams.Default()
	def.Ingest = false
	def.Layout.Partitions = 16
	def.Layout.Streams = []events.StreamLayout{{Name: "TOUCHPOINTS_00_07", First: 0, Last: 7}, {Name: "TOUCHPOINTS_08_15", First: 8, Last: 15}}
	writeJSON(t, filepath.Join(src.deploy, "streams.json"), def)
	for _, f := range []string{"tiers.json", "loyalty.json", "churn-rules.json", "channels.json", "access.json", "privacy.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src.deploy, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src.data, "secrets", "phone-index.key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keystore.LoadOrCreateMasterKey(filepath.Join(src.data, "secrets", "master.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := streams.Apply(ctx, src.js, def); err != nil {
		t.Fatal(err)
	}
	src.start()

	// The load: customers registered through the real key service (personal fields
	// sealed), then activity.
	keys := events.NewKeyClient(src.nc, events.KeyClientConfig{})
	pub, err := events.NewPublisher(ctx, src.nc, events.WithLayout(def.Layout), events.WithSource("urn:touchstream:test:backup"), events.WithKeys(keys))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const customers, total = 2_000, 100_000
	const erased = "C-BK-00007"
	at := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	var batch []*events.Event
	published := 0
	flush := func() {
		for i, r := range pub.PublishBatch(ctx, batch) {
			if r.Err != nil {
				t.Fatalf("publish %s: %v", batch[i].Type, r.Err)
			}
		}
		published += len(batch)
		batch = batch[:0]
	}
	add := func(cust string, p events.Payload, when time.Time) {
		e, err := events.NewEvent(cust, when, p)
		if err != nil {
			t.Fatal(err)
		}
		if batch = append(batch, e); len(batch) == 1000 {
			flush()
		}
	}
	// Waiting for the key service's first answer: the publisher seals through it.
	waitUntil(t, 30*time.Second, func() bool { _, err := keys.CustomerKeys(ctx, []string{"C-BK-PROBE"}); return err == nil })
	for i := range customers {
		cust := fmt.Sprintf("C-BK-%05d", i)
		add(cust, events.CustomerRegistered{Name: events.Clear("Customer " + strconv.Itoa(i)), Phone: events.Clear(fmt.Sprintf("1380000%04d", i)),
			IDType: "resident_id", IDNumber: events.Clear(fmt.Sprintf("11010119900101%04d", i)), CustomerType: "individual", Region: "beijing",
			Plan: events.Plan{ID: "P-58", Name: "4G 58", Kind: "prepaid", MonthlyFee: events.CNY(5800)}}, at)
	}
	for i := customers; i < total-1; i++ {
		cust := fmt.Sprintf("C-BK-%05d", i%customers)
		when := at.Add(time.Duration(i) * time.Second)
		if i%4 == 0 {
			add(cust, events.RechargeCompleted{RechargeID: "R" + strconv.Itoa(i), Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "cash"}, when)
		} else {
			add(cust, events.StoreVisited{StoreID: "S1", Purpose: "inquiry", DurationSeconds: 30 + i%600}, when)
		}
	}
	// An erasure whose log step ran and whose key step did not (the command was
	// interrupted): the key store still holds the key; the log says it is erased.
	add(erased, events.CustomerErased{Reason: "customer_request", Operator: "dpo-01", RequestedAt: time.Now()}, time.Now())
	flush()
	loaded, _ := src.logMessages(def.Layout)
	if loaded != total {
		t.Fatalf("log holds %d events, want %d", loaded, total)
	}
	loadedAt := time.Now()
	src.waitCaughtUp(total, readModels, 3*time.Minute)
	t.Logf("source: %d events folded by %d read models in %s", total, readModels, time.Since(loadedAt).Round(100*time.Millisecond))

	// Light live load during the backup: about 500 events a second.
	var live atomic.Int64
	liveCtx, stopLive := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		livePub, err := events.NewPublisher(liveCtx, src.nc, events.WithLayout(def.Layout), events.WithSource("urn:touchstream:test:live"), events.WithValidation(false))
		if err != nil {
			return
		}
		defer livePub.Close()
		for i := 0; liveCtx.Err() == nil; i++ {
			var evs []*events.Event
			for j := range 50 {
				e, _ := events.NewEvent(fmt.Sprintf("C-BK-%05d", (i*50+j)%customers), time.Now(), events.StoreVisited{StoreID: "S2", Purpose: "purchase", DurationSeconds: 90})
				evs = append(evs, e)
			}
			for _, r := range livePub.PublishBatch(liveCtx, evs) {
				if r.Err == nil {
					live.Add(1)
				}
			}
			select {
			case <-liveCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	backupDir := filepath.Join(t.TempDir(), "backup")
	started := time.Now()
	out, stderr, err := src.cli("backup", "--to", backupDir, "--json")
	backupTook := time.Since(started)
	stopLive()
	wg.Wait()
	if err != nil {
		t.Fatalf("touchstream backup: %v\n%s\n%s", err, out, stderr)
	}
	var m backup.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("backup --json: %v\n%s", err, out)
	}
	if !strings.Contains(stderr, "snapshot TOUCHPOINTS_00_07") {
		t.Errorf("backup showed no progress on standard error:\n%s", stderr)
	}
	var inBackup uint64
	for _, s := range m.Streams {
		if s.Log {
			inBackup += s.Messages
		}
	}
	if inBackup < total {
		t.Fatalf("backup holds %d log events, fewer than the %d loaded before it started", inBackup, total)
	}
	var keysBackedUp int64
	var absent []string
	for _, s := range m.Schemas {
		if s.Name == "keystore" {
			keysBackedUp = s.Tables["data_keys"]
		}
		if s.Absent {
			absent = append(absent, s.Name)
		}
	}
	t.Logf("backup in %s under live load (%d live events acknowledged meanwhile): %d log events (%d loaded + %d live), %d data keys, absent schemas %v, %d files",
		backupTook.Round(time.Millisecond), live.Load(), inBackup, total, inBackup-total, keysBackedUp, absent, len(m.Files))
	src.stop()

	// A fresh NATS and a fresh database; the master key and phone index secret are
	// provisioned apart from the backup, as in production.
	dst := newSite(t, "dst", bin)
	for _, f := range []string{"master.key", "phone-index.key"} {
		b, err := os.ReadFile(filepath.Join(src.data, "secrets", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst.data, "secrets", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, err = dst.cli("restore", "--from", backupDir, "--deploy-to", dst.deploy, "--json")
	if err != nil {
		t.Fatalf("touchstream restore: %v\n%s\n%s", err, out, stderr)
	}
	var rep backup.RestoreReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("restore --json: %v\n%s", err, out)
	}
	restored, perStream := dst.logMessages(def.Layout)
	if restored != inBackup {
		t.Fatalf("restored log holds %d events, the backup %d", restored, inBackup)
	}
	if rep.Erasures == nil || rep.Erasures.Events != 1 || rep.Erasures.Keys != 1 {
		t.Fatalf("erasures re-applied: %+v, want the one customer.erased event to erase its key again", rep.Erasures)
	}
	if rep.DataKeys != keysBackedUp-1 {
		t.Errorf("restored key store holds %d keys, the backup %d less the one erased again", rep.DataKeys, keysBackedUp)
	}

	// Rebuild every read model from the restored log, then verify.
	dst.start()
	rebuildAt := time.Now()
	appliedPer := dst.waitCaughtUp(restored, readModels, 3*time.Minute)
	rebuildTook := time.Since(rebuildAt)
	out, stderr, err = dst.cli("verify", "--json", "--quiet")
	var vr verify.Report
	if jerr := json.Unmarshal([]byte(out), &vr); err != nil || jerr != nil || !vr.OK {
		t.Fatalf("touchstream verify after the restore: %v (%v)\n%s\n%s", err, jerr, out, stderr)
	}
	if parked := dst.count(`SELECT count(*) FROM projections.dead_letters`); parked != 0 {
		t.Errorf("%d events parked after the rebuild", parked)
	}
	if n := dst.count(`SELECT count(*) FROM dedup.dedup_index`); n != int64(restored) {
		t.Errorf("idempotency index holds %d keys, the restored log %d events", n, restored)
	}

	// Personal fields: every customer's opens through the restored key service, but the
	// erased customer's.
	dkeys := events.NewKeyClient(dst.nc, events.KeyClientConfig{})
	cat, _ := events.DefaultCatalog()
	sealer := events.NewSealer(dkeys)
	var opened, unreadable int
	var erasedOpened bool
	for _, sl := range def.Layout.Streams {
		cons, err := dst.js.OrderedConsumer(ctx, sl.Name, jetstream.OrderedConsumerConfig{FilterSubjects: []string{def.Layout.Prefix + ".*." + events.TypeCustomerRegistered}})
		if err != nil {
			t.Fatal(err)
		}
		info, _ := cons.Info(ctx)
		for left := int(info.NumPending); left > 0; {
			batch, err := cons.Fetch(min(left, 500), jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for msg := range batch.Messages() {
				left--
				var e events.Event
				if err := json.Unmarshal(msg.Data(), &e); err != nil {
					t.Fatal(err)
				}
				schema, ok := cat.Lookup(e.DataSchema)
				if !ok {
					t.Fatalf("no schema %s", e.DataSchema)
				}
				data, err := sealer.Reveal(ctx, schema, &e)
				switch {
				case err == nil && bytes.Contains(data, []byte(`"Customer `)):
					opened++
					erasedOpened = erasedOpened || e.Subject == erased
				case errors.Is(err, events.ErrErased) && e.Subject == erased:
					unreadable++
				default:
					t.Fatalf("customer %s: personal fields: %v", e.Subject, err)
				}
			}
		}
	}
	if opened != customers-1 || unreadable != 1 || erasedOpened {
		t.Errorf("personal fields: %d customers openable, %d unreadable (erased %v): want %d and 1", opened, unreadable, erasedOpened, customers-1)
	}
	for p, n := range appliedPer {
		if n != int64(restored) {
			t.Errorf("%s consumed %d events, the restored log holds %d", p, n, restored)
		}
	}
	t.Logf("restore in %.1fs: log %d events before (backup) / %d after %v; rebuilt in %s, events applied per read model %v; "+
		"verify %s: %d customers, %d events OK; data keys restored %d (%d backed up, %d erased again from the log's %d erasure); "+
		"personal fields openable for %d customers, unreadable for %d (erased); serving versions emit after %v",
		rep.Seconds, inBackup, restored, perStream, rebuildTook.Round(100*time.Millisecond), appliedPer,
		vr.Target, vr.Customers, vr.Events, rep.DataKeys, keysBackedUp, rep.Erasures.Keys, rep.Erasures.Events,
		opened, unreadable, rep.Serving)

	// Stored sizes, for docs/capacity.md: log bytes per event, read-model bytes per row.
	var logBytes uint64
	for _, s := range m.Streams {
		if s.Log {
			logBytes += s.Bytes
		}
	}
	var snapBytes int64
	for _, f := range m.Files {
		if strings.HasPrefix(f.Path, "streams/TOUCHPOINTS") {
			snapBytes += f.Size
		}
	}
	t.Logf("stored: log %.0f bytes/event (%d bytes, %d events, uncompressed file store); its snapshots (S2) %.0f bytes/event, %.0f%%",
		float64(logBytes)/float64(inBackup), logBytes, inBackup, float64(snapBytes)/float64(inBackup), 100*float64(snapBytes)/float64(logBytes))
	rows, err := dst.pool.Query(ctx, `SELECT n.nspname, c.relname, pg_total_relation_size(c.oid)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND n.nspname IN ('timeline_v1', 'customer360_v1', 'loyalty_v1', 'churn_v1', 'servicelevel_v1', 'dedup', 'keystore')
		AND pg_total_relation_size(c.oid) > 65536 ORDER BY pg_total_relation_size(c.oid) DESC`)
	if err != nil {
		t.Fatal(err)
	}
	type table struct {
		schema, name string
		size         int64
	}
	var tables []table
	for rows.Next() {
		var tb table
		if err := rows.Scan(&tb.schema, &tb.name, &tb.size); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, tb)
	}
	rows.Close()
	// As folded (a profile is rewritten at every event: dead versions until vacuumed),
	// then compacted: what a table settles to is in between.
	for _, tb := range tables {
		name := tb.schema + "." + tb.name
		n := dst.count("SELECT count(*) FROM " + name)
		if _, err := dst.pool.Exec(ctx, "VACUUM FULL "+name); err != nil {
			t.Fatal(err)
		}
		compact := dst.count(`SELECT pg_total_relation_size($1::regclass)`, name)
		if n > 0 {
			t.Logf("stored: %-28s %7d rows  %6.0f bytes/row as folded, %6.0f compacted (with indexes)", name, n, float64(tb.size)/float64(n), float64(compact)/float64(n))
		}
	}
}
