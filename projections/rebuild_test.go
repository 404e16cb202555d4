package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/migrate"
	"github.com/touchstream/touchstream/testkit"
)

func tallySpec(e *env) projections.RebuildSpec {
	return projections.RebuildSpec{
		Projection: "tally",
		New:        func(target string) (projections.Projection, error) { return &tally{target: target}, nil },
		Config:     projections.Config{BatchSize: 200},
	}
}

func (e *env) deps(t *testing.T) projections.Deps {
	return projections.Deps{Pool: e.pool, JS: e.js, Layout: e.layout, Catalog: e.cat, Log: testkit.Logger(t)}
}

func schemaExists(t *testing.T, e *env, name string) bool {
	t.Helper()
	var ok bool
	if err := e.pool.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestRebuildUnderLiveTraffic builds tally_v2 while tally_v1 serves and events keep
// arriving, switches readers, and shows that the new version, continued by the live
// side from its checkpoints, holds every event exactly once; the old one is kept until
// dropped, and the serving version cannot be dropped.
func TestRebuildUnderLiveTraffic(t *testing.T) {
	e := setup(t, 4)
	ctx := t.Context()
	want := e.publish(t, 3000, 40)
	if _, err := projections.EnsureServing(ctx, e.pool, map[string]string{"tally": "tally_v1"}); err != nil {
		t.Fatal(err)
	}
	live := e.runner(t, projections.Config{Group: "live"}, &tally{target: "tally_v1"})
	liveCtx, stopLive := context.WithCancel(ctx)
	liveDone := make(chan struct{})
	go func() { defer close(liveDone); _ = live.Run(liveCtx) }()
	var wg sync.WaitGroup
	wg.Add(1)
	// Traffic during the rebuild.
	var extra sync.Map
	var published atomic.Int64
	var pubErr atomic.Value
	go func() {
		defer wg.Done()
		for i := 0; liveCtx.Err() == nil && i < 20; i++ {
			got, err := e.tryPublish(liveCtx, 100, 40)
			if err != nil {
				pubErr.Store(err)
				return
			}
			for c, n := range got {
				v, _ := extra.LoadOrStore(c, new(atomic.Int64))
				v.(*atomic.Int64).Add(n)
			}
			published.Add(100)
			time.Sleep(20 * time.Millisecond)
		}
	}()

	cache := &projections.ServingCache{DB: e.pool, TTL: time.Nanosecond}
	if got, _ := cache.Target(ctx, "tally", ""); got != "tally_v1" {
		t.Fatalf("serving before the rebuild: %q", got)
	}
	var reports []projections.RebuildProgress
	spec := tallySpec(e)
	spec.Switch, spec.ProgressEvery = true, 10*time.Millisecond
	spec.Progress = func(p projections.RebuildProgress) { reports = append(reports, p) }
	res, err := projections.Rebuild(ctx, e.deps(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	if res.Target != "tally_v2" || res.Replaced != "tally_v1" || !res.Switched || res.Resumed {
		t.Fatalf("result %+v, want tally_v2 replacing tally_v1, switched", res)
	}
	if last := reports[len(reports)-1]; !last.Done || last.Seq < 3000 || last.Read < 3000 {
		t.Fatalf("last progress %+v, want done past seq 3000", last)
	}
	if got, _ := cache.Target(ctx, "tally", ""); got != "tally_v2" {
		t.Fatalf("serving after the rebuild: %q, want tally_v2", got)
	}
	wg.Wait() // traffic over
	stopLive()
	<-liveDone
	if err, _ := pubErr.Load().(error); err != nil {
		t.Fatal(err)
	}

	// The live side follows the pointer: it continues the new version.
	follow := e.runner(t, projections.Config{Group: "live"}, &tally{target: "tally_v2"})
	if err := follow.CatchUp(ctx, nil); err != nil {
		t.Fatal(err)
	}
	extra.Range(func(k, v any) bool { want[k.(string)] += v.(*atomic.Int64).Load(); return true })
	total := 3000 + int(published.Load())
	if diff := cmp.Diff(want, tallies(t, e.pool, "tally_v2")); diff != "" {
		t.Fatalf("tally_v2 (-want +got):\n%s", diff)
	}
	exactlyOnce(t, e.pool, "tally_v2", total)

	rbs, err := projections.Rebuilds(ctx, e.pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(rbs) != 1 || rbs[0].Status != "switched" || rbs[0].Replaces != "tally_v1" || rbs[0].Applied < 3000 {
		t.Fatalf("rebuilds: %+v", rbs)
	}
	if err := projections.DropTarget(ctx, e.pool, "tally_v2"); err == nil {
		t.Fatal("dropped the serving version")
	}
	if !schemaExists(t, e, "tally_v1") {
		t.Fatal("the replaced version was not kept")
	}
	if err := projections.DropTarget(ctx, e.pool, "tally_v1"); err != nil {
		t.Fatal(err)
	}
	if schemaExists(t, e, "tally_v1") {
		t.Fatal("tally_v1 still there after drop")
	}
	cps, err := projections.LoadCheckpoints(ctx, e.pool, "tally_v1", nil)
	if err != nil || len(cps) != 0 {
		t.Fatalf("checkpoints of a dropped version: %v %v", cps, err)
	}
	// The next rebuild takes the next number, even though v1 is gone.
	spec = tallySpec(e)
	res, err = projections.Rebuild(ctx, e.deps(t), spec)
	if err != nil || res.Target != "tally_v3" || res.Switched {
		t.Fatalf("second rebuild: %+v %v, want tally_v3 built, not switched", res, err)
	}
	if err := projections.SwitchBuilt(ctx, e.pool, "tally_v3", 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := cache.Target(ctx, "tally", ""); got != "tally_v3" {
		t.Fatalf("serving after SwitchBuilt: %q", got)
	}
}

// TestRebuildResumesAfterInterruption stops a rebuild part way (as a kill would: its
// context ends) and runs it again: it resumes the same version from its checkpoints
// and ends with every event applied exactly once.
func TestRebuildResumesAfterInterruption(t *testing.T) {
	e := setup(t, 4)
	want := e.publish(t, 20_000, 100)
	spec := tallySpec(e)
	spec.Config.BatchSize = 100
	spec.Config.Workers = 1
	ctx, cancel := context.WithCancel(t.Context())
	spec.ProgressEvery = time.Millisecond
	spec.Progress = func(p projections.RebuildProgress) {
		if p.Read >= 2000 {
			cancel()
		}
	}
	_, err := projections.Rebuild(ctx, e.deps(t), spec)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild: %v, want context.Canceled", err)
	}
	var applied int64
	if err := e.pool.QueryRow(t.Context(), "SELECT count(*) FROM tally_v1.applied").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied == 0 || applied >= 20_000 {
		t.Fatalf("%d events applied before the interruption, want part of 20000", applied)
	}
	rbs, _ := projections.Rebuilds(t.Context(), e.pool)
	if len(rbs) != 1 || rbs[0].Status != "running" {
		t.Fatalf("after the interruption: %+v, want one running rebuild", rbs)
	}

	spec.Progress = nil
	res, err := projections.Rebuild(t.Context(), e.deps(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Target != "tally_v1" || res.Read > uint64(20_000-applied)+200 {
		t.Fatalf("resumed rebuild: %+v (applied %d before), want tally_v1 resumed reading only the rest", res, applied)
	}
	if diff := cmp.Diff(want, tallies(t, e.pool, "tally_v1")); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	exactlyOnce(t, e.pool, "tally_v1", 20_000)
}

// TestReplayRange builds a version from a range of the log only, which never serves.
func TestReplayRange(t *testing.T) {
	e := setup(t, 4)
	e.publish(t, 1000, 10)
	spec := tallySpec(e)
	spec.FromSeq, spec.ToSeq = 201, 700
	spec.Switch = true
	if _, err := projections.Rebuild(t.Context(), e.deps(t), spec); err == nil {
		t.Fatal("a range replay switched readers")
	}
	spec.Switch = false
	res, err := projections.Rebuild(t.Context(), e.deps(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	var n, lo, hi int64
	if err := e.pool.QueryRow(t.Context(), "SELECT count(*), min(seq), max(seq) FROM "+pgx.Identifier{res.Target}.Sanitize()+".applied").
		Scan(&n, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if n != 500 || lo != 201 || hi != 700 {
		t.Fatalf("replay of 201-700 applied %d events from %d to %d", n, lo, hi)
	}
	if err := projections.SwitchBuilt(t.Context(), e.pool, res.Target, 0); err == nil {
		t.Fatal("a range replay was allowed to serve")
	}
	// The replay's time bound: the first event stored at or after a time.
	first, err := projections.SeqAtTime(t.Context(), e.js, e.layout.Stream(0), time.Now().Add(-time.Hour))
	if err != nil || first != 1 {
		t.Fatalf("SeqAtTime an hour ago: %d %v, want 1", first, err)
	}
	end, err := projections.SeqAtTime(t.Context(), e.js, e.layout.Stream(0), time.Now().Add(time.Hour))
	if err != nil || end != 1001 {
		t.Fatalf("SeqAtTime in an hour: %d %v, want 1001", end, err)
	}
}

// tryPublish is publish for goroutines: it reports failure instead of failing the test.
func (e *env) tryPublish(ctx context.Context, n, customers int) (map[string]int64, error) {
	got := map[string]int64{}
	evs := make([]*events.Event, 0, n)
	for i := 0; i < n; i++ {
		c := fmt.Sprintf("C%05d", i%customers)
		ev, err := events.NewEvent(c, time.Now(), events.StoreVisited{StoreID: "S1", Purpose: "inquiry", DurationSeconds: 60 + i})
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
		got[c]++
	}
	for i, r := range e.pub.PublishBatch(ctx, evs) {
		if r.Err != nil {
			return nil, fmt.Errorf("publish %d: %w", i, r.Err)
		}
	}
	return got, nil
}

// TestRebuildPin records the rule version a rebuild is pinned to, for whoever
// continues the version, and does not let a resume change it.
func TestRebuildPin(t *testing.T) {
	e := setup(t, 2)
	e.publish(t, 300, 5)
	spec := tallySpec(e)
	spec.Pin = "rules-2026-10"
	ctx, cancel := context.WithCancel(t.Context())
	newTally := spec.New
	spec.New = func(target string) (projections.Projection, error) {
		cancel() // interrupted once recorded as running
		return newTally(target)
	}
	if _, err := projections.Rebuild(ctx, e.deps(t), spec); err == nil {
		t.Fatal("a cancelled rebuild succeeded")
	}
	spec.New = newTally
	spec.Target, spec.Pin = "tally_v1", "rules-2027-01"
	if _, err := projections.Rebuild(t.Context(), e.deps(t), spec); err == nil {
		t.Fatal("resumed a rebuild under another pin")
	}
	spec.Pin = "rules-2026-10"
	if _, err := projections.Rebuild(t.Context(), e.deps(t), spec); err != nil {
		t.Fatal(err)
	}
	if pin, err := projections.TargetPin(t.Context(), e.pool, "tally_v1"); err != nil || pin != "rules-2026-10" {
		t.Fatalf("pin %q %v", pin, err)
	}
	if pin, err := projections.TargetPin(t.Context(), e.pool, "tally_v9"); err != nil || pin != "" {
		t.Fatalf("pin of an unknown target %q %v", pin, err)
	}
}

// signaler is a projection that emits a signal for every event it may emit for
// (Batch.Emitting), recording it in its own table as an outbox would.
type signaler struct{ target string }

func (s *signaler) Name() string   { return "signaler" }
func (s *signaler) Target() string { return s.target }
func (s *signaler) Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "signaler", s.target, fstest.MapFS{
		"m/0001_signals.sql": {Data: []byte(`CREATE TABLE emitted (seq bigint NOT NULL); CREATE TABLE folded (seq bigint PRIMARY KEY);`)},
	}, "m")
}

func (s *signaler) Apply(ctx context.Context, tx pgx.Tx, b *projections.Batch) error {
	var folded, emitted []int64
	for _, e := range b.Events {
		folded = append(folded, int64(e.Seq))
		ok, err := b.Emitting(ctx, e)
		if err != nil {
			return err
		}
		if ok {
			emitted = append(emitted, int64(e.Seq))
		}
	}
	q := pgx.Identifier{s.target}.Sanitize()
	if _, err := tx.Exec(ctx, `INSERT INTO `+q+`.folded SELECT unnest($1::bigint[])`, folded); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+q+`.emitted SELECT unnest($1::bigint[])`, emitted)
	return err
}

// TestSignalsPassAtTheSwitch: the serving version emits; a rebuild emits nothing; the
// switch waits for the live projector to bring the serving version as far as the new
// one, then emission passes to the new version, and the old one, still folding for a
// while (its projector has not noticed yet), stops emitting. Every event's signal is
// emitted exactly once over both versions.
func TestSignalsPassAtTheSwitch(t *testing.T) {
	e := setup(t, 4)
	ctx := t.Context()
	e.publish(t, 2000, 30)
	if _, err := projections.EnsureServing(ctx, e.pool, map[string]string{"signaler": "signaler_v1"}); err != nil {
		t.Fatal(err)
	}
	count := func(target, table string) int64 {
		t.Helper()
		var n int64
		if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{target, table}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The live projector of v1, which will not notice the switch.
	liveCtx, stopLive := context.WithCancel(ctx)
	liveDone := make(chan struct{})
	live := e.runner(t, projections.Config{Group: "live", Linger: time.Millisecond}, &signaler{target: "signaler_v1"})
	go func() { defer close(liveDone); _ = live.Run(liveCtx) }()
	defer func() { stopLive(); <-liveDone }()

	e.publish(t, 500, 30)
	res, err := projections.Rebuild(ctx, e.deps(t), projections.RebuildSpec{Projection: "signaler", Switch: true, SwitchWait: 30 * time.Second,
		New: func(target string) (projections.Projection, error) { return &signaler{target: target}, nil }})
	if err != nil || res.Target != "signaler_v2" {
		t.Fatalf("rebuild: %+v %v", res, err)
	}
	if n := count("signaler_v2", "emitted"); n != 0 {
		t.Fatalf("the rebuild emitted %d signals", n)
	}
	if n := count("signaler_v2", "folded"); n != 2500 {
		t.Fatalf("the rebuild folded %d events, want 2500", n)
	}
	// More traffic, folded by the old version's projector before it notices the switch.
	e.publish(t, 300, 30)
	for deadline := time.Now().Add(20 * time.Second); count("signaler_v1", "folded") < 2800; {
		if time.Now().After(deadline) {
			t.Fatalf("the live projector folded %d of 2800 events", count("signaler_v1", "folded"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopLive()
	<-liveDone
	// The projector follows the switch and continues the new version.
	e.publish(t, 200, 30)
	if err := e.runner(t, projections.Config{Group: "live"}, &signaler{target: "signaler_v2"}).CatchUp(ctx, nil); err != nil {
		t.Fatal(err)
	}
	n1, n2 := count("signaler_v1", "emitted"), count("signaler_v2", "emitted")
	var all, distinct int64
	if err := e.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq) FROM (SELECT seq FROM signaler_v1.emitted UNION ALL SELECT seq FROM signaler_v2.emitted) s`).
		Scan(&all, &distinct); err != nil {
		t.Fatal(err)
	}
	t.Logf("signals: %d by v1 before the switch, %d by v2 after it; switch at %v", n1, n2, res.SwitchSeqs)
	if all != 3000 || distinct != 3000 || n1 != 2500 {
		t.Fatalf("signals: %d emitted (%d distinct; v1 %d, v2 %d), want each of 3000 events once, v1 for the 2500 before the switch",
			all, distinct, n1, n2)
	}
}

// indexedTally is tally with a reader's index that a rebuild may defer.
type indexedTally struct{ tally }

var indexedTallyMigrations = fstest.MapFS{
	"m/0001_tally.sql": tallyMigrations["m/0001_tally.sql"],
	"m/0002_index.sql": {Data: []byte(`CREATE INDEX tally_by_n ON tally (n DESC, customer_id) WHERE n > 0;`)},
}

func (t *indexedTally) Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "tally", t.target, indexedTallyMigrations, "m")
}
func (t *indexedTally) DeferredIndexes() []string { return []string{"tally_by_n", "no_such_index"} }

func indexDef(t *testing.T, pool *pgxpool.Pool, schema, name string) string {
	t.Helper()
	var def string
	err := pool.QueryRow(t.Context(), `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2`, schema, name).Scan(&def)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return def
}

// TestRebuildDefersReaderIndexes: a rebuild folds without the indexes the projection
// names, keeps their definitions through an interruption, and creates them, as the
// migration defined them, before the version is built; the version then verifies
// exactly once like any other.
func TestRebuildDefersReaderIndexes(t *testing.T) {
	e := setup(t, 4)
	want := e.publish(t, 10_000, 100)
	ref := &indexedTally{tally{target: "tally_v9"}}
	if err := ref.Migrate(t.Context(), e.pool); err != nil {
		t.Fatal(err)
	}
	wantDef := strings.ReplaceAll(indexDef(t, e.pool, "tally_v9", "tally_by_n"), "tally_v9.", "tally_v1.")
	if wantDef == "" {
		t.Fatal("the reference migration made no index")
	}
	spec := tallySpec(e)
	spec.New = func(target string) (projections.Projection, error) { return &indexedTally{tally{target: target}}, nil }
	spec.Target = "tally_v1"
	spec.Config.BatchSize, spec.Config.Workers = 100, 1
	ctx, cancel := context.WithCancel(t.Context())
	spec.ProgressEvery = time.Millisecond
	var during atomic.Value
	spec.Progress = func(p projections.RebuildProgress) {
		if p.Read >= 2000 {
			during.Store(indexDef(t, e.pool, "tally_v1", "tally_by_n"))
			cancel()
		}
	}
	if _, err := projections.Rebuild(ctx, e.deps(t), spec); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild: %v, want context.Canceled", err)
	}
	if d, _ := during.Load().(string); d != "" {
		t.Fatalf("the index existed during the rebuild: %s", d)
	}
	var kept []string
	if err := e.pool.QueryRow(t.Context(), `SELECT deferred_indexes FROM projections.rebuilds WHERE target = 'tally_v1'`).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0] != wantDef {
		t.Fatalf("deferred definitions after the interruption %q, want [%q]", kept, wantDef)
	}

	spec.Progress = nil
	res, err := projections.Rebuild(t.Context(), e.deps(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Deferred != 1 {
		t.Fatalf("resumed rebuild %+v: want resumed with 1 deferred index created", res)
	}
	if got := indexDef(t, e.pool, "tally_v1", "tally_by_n"); got != wantDef {
		t.Fatalf("index after the rebuild %q, want %q", got, wantDef)
	}
	if err := e.pool.QueryRow(t.Context(), `SELECT deferred_indexes FROM projections.rebuilds WHERE target = 'tally_v1'`).Scan(&kept); err != nil || len(kept) != 0 {
		t.Fatalf("deferred definitions after the rebuild %q (%v), want none", kept, err)
	}
	if diff := cmp.Diff(want, tallies(t, e.pool, "tally_v1")); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	exactlyOnce(t, e.pool, "tally_v1", 10_000)
}
