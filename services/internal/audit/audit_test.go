package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/services/internal/audit"
	"github.com/touchstream/touchstream/testkit"
)

func newLog(t *testing.T, cfg audit.Config) (*audit.Log, *pgxpool.Pool, *prometheus.Registry) {
	t.Helper()
	pool, _ := testkit.Pool(t)
	if err := audit.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	l, err := audit.New(cfg, pool, reg, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return l, pool, reg
}

func run(t *testing.T, l *audit.Log) (stop func()) {
	t.Helper()
	return testkit.Go(t, "audit log", 5*time.Second, l.Run)
}

func rec(staff, customer string, clear bool, fields ...string) audit.Record {
	return audit.Record{StaffID: staff, Roles: []string{"agent"}, Customer: customer, Fields: fields, Clear: clear,
		Route: "customer", RequestID: "req-" + customer}
}

func TestRecordAndList(t *testing.T) {
	l, pool, _ := newLog(t, audit.Config{})
	run(t, l)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	for i := range 5 {
		r := rec("agent-1", fmt.Sprintf("C-%d", i%2), i%2 == 0, audit.FieldName, audit.FieldPhone)
		r.At = base.Add(time.Duration(i) * time.Minute)
		if err := l.Record(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	sup := rec("sup-1", "C-0", true, audit.FieldIDNumber)
	sup.Roles = []string{"supervisor", "operator"}
	sup.At = base.Add(10 * time.Minute)
	if err := l.Record(t.Context(), sup); err != nil {
		t.Fatal(err)
	}
	all, next, err := audit.List(t.Context(), pool, audit.Filter{})
	if err != nil || next != "" || len(all) != 6 {
		t.Fatalf("all: %d entries, next %q, %v", len(all), next, err)
	}
	want := audit.Entry{At: sup.At, StaffID: "sup-1", Roles: []string{"supervisor", "operator"}, Customer: "C-0",
		Fields: []string{"id_number"}, Access: "full", Route: "customer", RequestID: "req-C-0"}
	if diff := cmp.Diff(want, all[0], cmpopts.IgnoreFields(audit.Entry{}, "ID")); diff != "" {
		t.Errorf("newest entry (-want +got):\n%s", diff)
	}
	if all[1].Access != "full" || all[1].Customer != "C-0" || !all[1].At.Equal(base.Add(4*time.Minute)) {
		t.Errorf("second entry %+v", all[1])
	}
	for _, tc := range []struct {
		name string
		f    audit.Filter
		want int
	}{
		{"by customer", audit.Filter{Customer: "C-1"}, 2},
		{"by staff", audit.Filter{Staff: "sup-1"}, 1},
		{"by customer and staff", audit.Filter{Customer: "C-0", Staff: "agent-1"}, 3},
		{"from", audit.Filter{From: base.Add(3 * time.Minute)}, 3},
		{"to (excluded)", audit.Filter{To: base.Add(2 * time.Minute)}, 2},
		{"nobody", audit.Filter{Customer: "C-9"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := audit.List(t.Context(), pool, tc.f)
			if err != nil || len(got) != tc.want {
				t.Errorf("%d entries, %v; want %d", len(got), err, tc.want)
			}
		})
	}
	t.Run("paging", func(t *testing.T) {
		var ids []int64
		cursor := ""
		for range 4 {
			page, next, err := audit.List(t.Context(), pool, audit.Filter{Limit: 2, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				ids = append(ids, e.ID)
			}
			if cursor = next; cursor == "" {
				break
			}
		}
		var wantIDs []int64
		for _, e := range all {
			wantIDs = append(wantIDs, e.ID)
		}
		if diff := cmp.Diff(wantIDs, ids); diff != "" {
			t.Errorf("pages (-want +got):\n%s", diff)
		}
		if _, _, err := audit.List(t.Context(), pool, audit.Filter{Cursor: "garbage!"}); !errors.Is(err, audit.ErrBadCursor) {
			t.Errorf("bad cursor: %v", err)
		}
	})
	t.Run("bad records are refused, naming the field", func(t *testing.T) {
		for _, tc := range []struct {
			r    audit.Record
			want string
		}{
			{rec("li@example.test", "C-1", false, "name"), "staff id"},
			{rec("a", "C-1", false), "fields"},
			{rec("a", "C-1", false, "salary"), `field "salary"`},
			{audit.Record{StaffID: "a", Customer: "C-1", Fields: []string{"name"}, Route: "customer"}, "request id"},
		} {
			if err := l.Record(t.Context(), tc.r); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%+v: %v, want %q", tc.r, err, tc.want)
			}
		}
	})
}

// TestGroupCommit: while one batch is being written, the reads arriving wait and go
// into the next batch together.
func TestGroupCommit(t *testing.T) {
	l, pool, reg := newLog(t, audit.Config{WriteTimeout: 30 * time.Second})
	run(t, l)
	// Hold the table so the first batch waits in the database.
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(t.Context(), `LOCK TABLE access_audit.reads IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 21)
	record := func(i int) {
		defer wg.Done()
		errs <- l.Record(t.Context(), rec("agent-1", fmt.Sprintf("C-%d", i), false, audit.FieldPhone))
	}
	wg.Add(1)
	go record(0)
	eventually(t, "the first batch writing", func() bool { return audit.Pending(l) == 0 && waitingOnLock(t, pool) })
	for i := 1; i <= 20; i++ {
		wg.Add(1)
		go record(i)
	}
	eventually(t, "20 reads waiting", func() bool { return audit.Pending(l) == 20 })
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := counter(t, reg, "touchstream_access_audit_batches_total"); got != 2 {
		t.Errorf("%v batches, want 2 (the first read alone, then the 20 that waited)", got)
	}
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM access_audit.reads`).Scan(&n); err != nil || n != 21 {
		t.Errorf("%d rows, %v; want 21", n, err)
	}
}

// TestFailClosed: a record that cannot be written is an error for its read, and the
// log recovers when the database does.
func TestFailClosed(t *testing.T) {
	l, pool, _ := newLog(t, audit.Config{WriteTimeout: 300 * time.Millisecond})
	stop := run(t, l)
	if _, err := pool.Exec(t.Context(), `ALTER SCHEMA access_audit RENAME TO access_audit_away`); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(t.Context(), rec("agent-1", "C-1", false, audit.FieldName)); !errors.Is(err, audit.ErrUnavailable) {
		t.Errorf("the table gone: %v, want ErrUnavailable", err)
	}
	if _, err := pool.Exec(t.Context(), `ALTER SCHEMA access_audit_away RENAME TO access_audit`); err != nil {
		t.Fatal(err)
	}
	// Locked beyond the write timeout.
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(t.Context(), `LOCK TABLE access_audit.reads IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(t.Context(), rec("agent-1", "C-2", false, audit.FieldName)); !errors.Is(err, audit.ErrUnavailable) {
		t.Errorf("the table locked: %v, want ErrUnavailable", err)
	}
	_ = tx.Rollback(t.Context())
	if err := l.Record(t.Context(), rec("agent-1", "C-3", false, audit.FieldName)); err != nil {
		t.Errorf("after recovery: %v", err)
	}
	stop()
	if err := l.Record(t.Context(), rec("agent-1", "C-4", false, audit.FieldName)); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("after Run returned: %v, want ErrClosed", err)
	}
	got, _, _ := audit.List(t.Context(), pool, audit.Filter{})
	if len(got) != 1 || got[0].Customer != "C-3" {
		t.Errorf("rows %+v, want C-3's only", got)
	}
}

// TestRetention: records older than the retention are deleted, younger ones kept.
func TestRetention(t *testing.T) {
	l, pool, _ := newLog(t, audit.Config{Retention: 30 * 24 * time.Hour})
	run(t, l)
	now := time.Now()
	for _, age := range []time.Duration{40 * 24 * time.Hour, 31 * 24 * time.Hour, 29 * 24 * time.Hour, time.Hour} {
		r := rec("agent-1", fmt.Sprintf("C-%dh", int(age.Hours())), false, audit.FieldPhone)
		r.At = now.Add(-age)
		if err := l.Record(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	// Run prunes at start and every PruneInterval; Prune does the same now.
	if _, err := l.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, _, _ := audit.List(t.Context(), pool, audit.Filter{})
	var kept []string
	for _, e := range got {
		kept = append(kept, e.Customer)
	}
	if diff := cmp.Diff([]string{"C-1h", "C-696h"}, kept); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	if err := (audit.Config{Retention: time.Hour}).Validate(); err == nil || !strings.Contains(err.Error(), "Retention") {
		t.Errorf("a retention of an hour: %v", err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitingOnLock reports whether an insert of the log waits for a lock.
func waitingOnLock(t *testing.T, pool *pgxpool.Pool) bool {
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO access_audit.reads%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}
