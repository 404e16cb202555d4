package keystore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/keystore"
)

func TestCustomerKeysGetOrCreate(t *testing.T) {
	ctx := t.Context()
	store, _, _ := newStore(t)
	cs := customers("C", 3)

	first, err := store.CustomerKeys(ctx, append(cs, cs[0])) // a duplicate is answered once
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(first), len(cs); got != want {
		t.Fatalf("got %d keys, want %d", got, want)
	}
	ids := map[string]bool{}
	for _, c := range cs {
		k := first[c]
		if k.Customer != c || len(k.Key) != 32 {
			t.Errorf("key of %s: customer %q, %d bytes; want %q, 32 bytes", c, k.Customer, len(k.Key), c)
		}
		if u, err := uuid.Parse(k.ID); err != nil || u.Version() != 4 || u.String() != k.ID {
			t.Errorf("key id %q: want a canonical UUIDv4", k.ID)
		}
		ids[k.ID] = true
	}
	if len(ids) != len(cs) {
		t.Errorf("customers share key ids: %v", ids)
	}

	again, err := store.CustomerKeys(ctx, cs[1:])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs[1:] {
		if diff := cmp.Diff(first[c], again[c]); diff != "" {
			t.Errorf("second call changed the key of %s (-first +second):\n%s", c, diff)
		}
	}

	byID, err := store.KeysByID(ctx, []string{first[cs[0]].ID, first[cs[2]].ID, "no-such-key"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]events.DataKey{first[cs[0]].ID: first[cs[0]], first[cs[2]].ID: first[cs[2]]}
	if diff := cmp.Diff(want, byID); diff != "" {
		t.Errorf("KeysByID (-want +got):\n%s", diff)
	}

	empty, err := store.CustomerKeys(ctx, nil)
	if err != nil || len(empty) != 0 {
		t.Errorf("CustomerKeys(nil) = %v, %v; want an empty map", empty, err)
	}
}

func TestConcurrentCustomerKeysStore(t *testing.T) {
	store, _, _ := newStore(t)
	// Two overlapping batches in opposite orders, many times at once: no deadlock, one
	// key per customer.
	cs := customers("C", 50)
	rev := make([]string, len(cs))
	for i, c := range cs {
		rev[len(cs)-1-i] = c
	}
	const callers = 50
	got := make([]map[string]events.DataKey, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		batch := cs
		if i%2 == 1 {
			batch = rev
		}
		wg.Go(func() { got[i], errs[i] = store.CustomerKeys(t.Context(), batch) })
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if diff := cmp.Diff(got[0], got[i]); diff != "" {
			t.Fatalf("caller %d got other keys than caller 0 (-0 +%d):\n%s", i, i, diff)
		}
	}
}

func TestWrappedColumnNeverHoldsTheKey(t *testing.T) {
	ctx := t.Context()
	store, pool, kek := newStore(t)
	cs := customers("C", 20)
	keys, err := store.CustomerKeys(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT customer_id, key_id, kek_id, wrapped FROM keystore.data_keys`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var cust, id, kekID string
		var wrapped []byte
		if err := rows.Scan(&cust, &id, &kekID, &wrapped); err != nil {
			t.Fatal(err)
		}
		n++
		key := keys[cust].Key
		if bytes.Equal(wrapped, key) || bytes.Contains(wrapped, key) || bytes.Contains(wrapped, key[:16]) || bytes.Contains(wrapped, key[16:]) {
			t.Errorf("customer %s: wrapped column holds the key in clear", cust)
		}
		if got, want := len(wrapped), 60; got != want {
			t.Errorf("customer %s: wrapped is %d bytes, want %d", cust, got, want)
		}
		if kekID != kek.ID() || id != keys[cust].ID {
			t.Errorf("customer %s: row kek_id %s key_id %s, want %s %s", cust, kekID, id, kek.ID(), keys[cust].ID)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(cs) {
		t.Errorf("%d rows, want %d", n, len(cs))
	}
}

func TestWrongMasterKey(t *testing.T) {
	ctx := t.Context()
	store, pool, kekA := newStore(t)
	c := customers("C", 1)[0]
	keys, err := store.CustomerKeys(ctx, []string{c})
	if err != nil {
		t.Fatal(err)
	}
	kekB := newKEK(t)

	// A key service started with another master key refuses to run.
	_, err = keystore.Open(ctx, pool, kekB)
	if !errors.Is(err, keystore.ErrWrongMasterKey) {
		t.Fatalf("Open with another master key: %v, want ErrWrongMasterKey", err)
	}
	for _, want := range []string{kekA.ID(), kekB.ID(), "--master-key-file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// Even if the store is forced onto the other key (a botched rotation: the old KEK
	// retired before its keys were re-wrapped), reads fail clearly, never with garbage.
	if _, err := pool.Exec(ctx, `UPDATE keystore.keks SET state = 'retired'`); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.Open(ctx, pool, kekA); !errors.Is(err, keystore.ErrWrongMasterKey) || !strings.Contains(err.Error(), "retired") {
		t.Errorf("Open with a retired master key: %v, want ErrWrongMasterKey saying it is retired", err)
	}
	storeB, err := keystore.Open(ctx, pool, kekB)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() (map[string]events.DataKey, error)
	}{
		{"CustomerKeys", func() (map[string]events.DataKey, error) { return storeB.CustomerKeys(ctx, []string{c}) }},
		{"KeysByID", func() (map[string]events.DataKey, error) { return storeB.KeysByID(ctx, []string{keys[c].ID}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if !errors.Is(err, keystore.ErrUnwrap) {
				t.Fatalf("got %v, %v; want ErrUnwrap", got, err)
			}
			if got != nil {
				t.Errorf("keys returned with the error: %v", got)
			}
			for _, want := range []string{keys[c].ID, kekA.ID(), kekB.ID()} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}

func TestTamperedRowDoesNotUnwrap(t *testing.T) {
	ctx := t.Context()
	store, pool, _ := newStore(t)
	cs := customers("C", 2)
	keys, err := store.CustomerKeys(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	// Move customer 0's wrapped key onto customer 1's row: authenticated under the same
	// KEK, but bound to another key id and customer.
	if _, err := pool.Exec(ctx, `UPDATE keystore.data_keys SET wrapped = (SELECT wrapped FROM keystore.data_keys WHERE customer_id = $1) WHERE customer_id = $2`, cs[0], cs[1]); err != nil {
		t.Fatal(err)
	}
	got, err := store.KeysByID(ctx, []string{keys[cs[1]].ID})
	if !errors.Is(err, keystore.ErrUnwrap) || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("KeysByID of a tampered row: %v, %v; want ErrUnwrap, authentication failed", got, err)
	}
	if _, err := store.CustomerKeys(ctx, cs[:1]); err != nil {
		t.Errorf("the untouched row: %v", err)
	}
}

func TestEraseStore(t *testing.T) {
	ctx := t.Context()
	store, pool, _ := newStore(t)
	cs := customers("C", 2)
	before, err := store.CustomerKeys(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	gone, kept := before[cs[0]], before[cs[1]]

	start := time.Now()
	r, err := store.Erase(ctx, cs[0])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(keystore.Receipt{Customer: cs[0], KeyIDs: []string{gone.ID}}, r, cmpIgnoreTime); diff != "" {
		t.Errorf("receipt (-want +got):\n%s", diff)
	}
	if r.ErasedAt.Before(start.Add(-time.Minute)) || r.ErasedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("receipt time %s, want about %s", r.ErasedAt, start)
	}

	byID, err := store.KeysByID(ctx, []string{gone.ID, kept.ID})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]events.DataKey{kept.ID: kept}, byID); diff != "" {
		t.Errorf("KeysByID after erasure (-want +got):\n%s", diff)
	}
	erased, err := store.Erased(ctx, []string{kept.ID, gone.ID, "unknown"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{gone.ID}, erased); diff != "" {
		t.Errorf("Erased (-want +got):\n%s", diff)
	}

	// The tombstone keeps ids only.
	var cols []string
	if err := pool.QueryRow(ctx, `SELECT array_agg(column_name::text ORDER BY column_name) FROM information_schema.columns WHERE table_schema = 'keystore' AND table_name = 'erased_keys'`).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"customer_id", "erased_at", "key_id"}, cols); diff != "" {
		t.Errorf("erased_keys columns (-want +got):\n%s", diff)
	}

	// New data may be recorded: a new key with a new id.
	after, err := store.CustomerKeys(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if after[cs[0]].ID == gone.ID || bytes.Equal(after[cs[0]].Key, gone.Key) {
		t.Errorf("after erasure the customer got the erased key back")
	}
	if diff := cmp.Diff(kept, after[cs[1]]); diff != "" {
		t.Errorf("the other customer's key changed (-before +after):\n%s", diff)
	}

	// Erasing again erases the new key; erasing a customer without a key is a no-op.
	r2, err := store.Erase(ctx, cs[0])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{after[cs[0]].ID}, r2.KeyIDs); diff != "" {
		t.Errorf("second erasure ids (-want +got):\n%s", diff)
	}
	r3, err := store.Erase(ctx, cs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(r3.KeyIDs) != 0 {
		t.Errorf("erasing a customer without a key: ids %v, want none", r3.KeyIDs)
	}
}

var cmpIgnoreTime = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".ErasedAt" }, cmp.Ignore())

func TestValidation(t *testing.T) {
	store, _, _ := newStore(t)
	const phone = "+8613800138000" // personal data must never be echoed
	tooMany := customers("C", keystore.MaxNames+1)
	tests := []struct {
		name      string
		call      func(ctx context.Context) error
		wantField string
	}{
		{"too many customers", func(ctx context.Context) error { _, err := store.CustomerKeys(ctx, tooMany); return err }, "customers: 1001 listed, at most 1000"},
		{"phone as customer id", func(ctx context.Context) error {
			_, err := store.CustomerKeys(ctx, []string{"C-1", phone})
			return err
		}, "customers[1]: not a valid customer id"},
		{"empty customer id", func(ctx context.Context) error { _, err := store.CustomerKeys(ctx, []string{""}); return err }, "customers[0]"},
		{"customer id too long", func(ctx context.Context) error {
			_, err := store.CustomerKeys(ctx, []string{strings.Repeat("a", 65)})
			return err
		}, "customers[0]"},
		{"many bad ids, summarised", func(ctx context.Context) error {
			_, err := store.CustomerKeys(ctx, []string{"a b", "c d", "e!", "f?", "g.", "h/", "i:"})
			return err
		}, "customers[0], customers[1], customers[2], customers[3], customers[4] and 2 more: not a valid customer id"},
		{"too many ids", func(ctx context.Context) error { _, err := store.KeysByID(ctx, tooMany); return err }, "ids: 1001 listed"},
		{"empty key id", func(ctx context.Context) error { _, err := store.KeysByID(ctx, []string{"k", ""}); return err }, "ids[1]: must be 1 to 64 characters"},
		{"key id too long", func(ctx context.Context) error {
			_, err := store.KeysByID(ctx, []string{strings.Repeat("k", 65)})
			return err
		}, "ids[0]: must be 1 to 64 characters"},
		{"NUL in key id", func(ctx context.Context) error { _, err := store.KeysByID(ctx, []string{"k\x00"}); return err }, "ids[0]: contains a NUL"},
		{"bad UTF-8 in key id", func(ctx context.Context) error { _, err := store.KeysByID(ctx, []string{"k\xff"}); return err }, "ids[0]: not valid UTF-8"},
		{"erased: bad id", func(ctx context.Context) error { _, err := store.Erased(ctx, []string{""}); return err }, "ids[0]"},
		{"erase: phone as customer", func(ctx context.Context) error { _, err := store.Erase(ctx, phone); return err }, "customer: not a valid customer id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			if !errors.Is(err, keystore.ErrInvalidRequest) {
				t.Fatalf("got %v, want ErrInvalidRequest", err)
			}
			if !strings.Contains(err.Error(), tt.wantField) {
				t.Errorf("error %q does not say %q", err, tt.wantField)
			}
			if strings.Contains(err.Error(), phone) || strings.Contains(err.Error(), "13800138000") {
				t.Errorf("error %q echoes personal data", err)
			}
		})
	}
	// A non-UUID key id within bounds is simply unknown.
	got, err := store.KeysByID(t.Context(), []string{"k-1", "钥匙"})
	if err != nil || len(got) != 0 {
		t.Errorf("unknown ids: %v, %v; want none, no error", got, err)
	}
}

// BenchmarkCustomerKeys measures one call of 500 customers: all new (keys created), and
// all existing (keys read and unwrapped).
func BenchmarkCustomerKeys(b *testing.B) {
	store, _, _ := newStore(b)
	ctx := context.Background()
	const batch = 500
	batchOf := func(prefix string, n int) []string {
		cs := make([]string, batch)
		for i := range cs {
			cs[i] = fmt.Sprintf("%s-%d-%d", prefix, n, i)
		}
		return cs
	}
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			if _, err := store.CustomerKeys(ctx, batchOf("N", n)); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64(n*batch)/b.Elapsed().Seconds(), "keys/s")
	})
	b.Run("existing", func(b *testing.B) {
		existing := batchOf("E", 0)
		if _, err := store.CustomerKeys(ctx, existing); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			if _, err := store.CustomerKeys(ctx, existing); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64(n*batch)/b.Elapsed().Seconds(), "keys/s")
	})
}
