package dedup_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/projections/dedup"
	"github.com/touchstream/touchstream/testkit"
)

func TestRecordLookupPrune(t *testing.T) {
	pool, _ := testkit.Pool(t)
	ctx := t.Context()
	if err := dedup.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var entries []dedup.Entry
	for i := range 25_000 {
		entries = append(entries, dedup.Entry{Key: fmt.Sprintf("k%05d", i), Stream: "TOUCHPOINTS", Seq: uint64(i + 1),
			StoredAt: now.Add(-time.Duration(i%10) * 24 * time.Hour)})
	}
	if err := dedup.Record(ctx, pool, entries); err != nil {
		t.Fatal(err)
	}
	// A second copy of a key keeps the first position.
	if err := dedup.Record(ctx, pool, []dedup.Entry{{Key: "k00001", Stream: "TOUCHPOINTS", Seq: 99999, StoredAt: now}}); err != nil {
		t.Fatal(err)
	}
	got, err := dedup.Lookup(ctx, pool, []string{"k00001", "k00009", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]dedup.Hit{"k00001": {Stream: "TOUCHPOINTS", Seq: 2}, "k00009": {Stream: "TOUCHPOINTS", Seq: 10}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("lookup (-want +got):\n%s", diff)
	}
	removed, err := dedup.Prune(ctx, pool, now.Add(-7*24*time.Hour+time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if removed != 7_500 { // ages 7, 8 and 9 days: 3 of every 10
		t.Fatalf("pruned %d entries, want 7500", removed)
	}
	got, _ = dedup.Lookup(ctx, pool, []string{"k00009", "k00006"})
	if _, ok := got["k00009"]; ok || len(got) != 1 {
		t.Fatalf("after pruning: %v", got)
	}
}
