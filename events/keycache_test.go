package events

import (
	"fmt"
	"testing"
	"time"
)

func cacheKey(customer string, n int) DataKey {
	return DataKey{ID: fmt.Sprintf("k%d-%s", n, customer), Customer: customer, Key: make([]byte, 32)}
}

func TestKeyCache(t *testing.T) {
	now := time.Date(2026, 11, 15, 10, 0, 0, 0, time.UTC)
	later := now.Add(time.Minute)
	tests := []struct {
		name string
		run  func(c *keyCache)
		// what the cache holds afterwards, by customer and by id
		customers, ids []string
		absent         []string // customers not cached
	}{
		{"both indexes", func(c *keyCache) { c.put(cacheKey("a", 1), later) }, []string{"a"}, []string{"k1-a"}, nil},
		{"least recently used evicted", func(c *keyCache) {
			c.put(cacheKey("a", 1), later)
			c.put(cacheKey("b", 1), later)
			c.put(cacheKey("c", 1), later)
			c.get(true, "a", now) // a is now more recent than b
			c.put(cacheKey("d", 1), later)
		}, []string{"a", "c", "d"}, []string{"k1-a", "k1-c", "k1-d"}, []string{"b"}},
		{"lookup by id counts as use", func(c *keyCache) {
			c.put(cacheKey("a", 1), later)
			c.put(cacheKey("b", 1), later)
			c.put(cacheKey("c", 1), later)
			c.get(false, "k1-a", now)
			c.put(cacheKey("d", 1), later)
		}, []string{"a", "c", "d"}, []string{"k1-a", "k1-c", "k1-d"}, []string{"b"}},
		{"new key of a customer", func(c *keyCache) {
			c.put(cacheKey("a", 1), later)
			c.put(cacheKey("a", 2), later) // after an erasure: the old id stays readable until evicted
		}, []string{"a"}, []string{"k1-a", "k2-a"}, nil},
		{"evicting an old key keeps the customer's new one", func(c *keyCache) {
			c.put(cacheKey("a", 1), later)
			c.put(cacheKey("a", 2), later)
			c.put(cacheKey("b", 1), later)
			c.put(cacheKey("c", 1), later) // evicts k1-a
		}, []string{"a", "b", "c"}, []string{"k2-a", "k1-b", "k1-c"}, nil},
		{"expired", func(c *keyCache) {
			c.put(cacheKey("a", 1), now)
			c.put(cacheKey("b", 1), later)
		}, []string{"b"}, []string{"k1-b"}, []string{"a"}},
		{"forget", func(c *keyCache) {
			c.put(cacheKey("a", 1), later)
			c.put(cacheKey("a", 2), later)
			c.put(cacheKey("b", 1), later)
			c.forget("a")
		}, []string{"b"}, []string{"k1-b"}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newKeyCache(3)
			tt.run(&c)
			for _, cust := range tt.customers {
				if k, ok := c.get(true, cust, now); !ok || k.Customer != cust {
					t.Errorf("customer %s: got %v, %v", cust, k, ok)
				}
			}
			for _, id := range tt.ids {
				if k, ok := c.get(false, id, now); !ok || k.ID != id {
					t.Errorf("id %s: got %v, %v", id, k, ok)
				}
			}
			for _, cust := range tt.absent {
				if k, ok := c.get(true, cust, now); ok {
					t.Errorf("customer %s: cached %v, want absent", cust, k)
				}
			}
			if got, want := len(c.byID), len(tt.ids); got != want {
				t.Errorf("%d keys cached, want %d", got, want)
			}
			n := 0
			for e := c.lru.next; e != nil && e != &c.lru; e = e.next {
				n++
			}
			if n != len(c.byID) {
				t.Errorf("use list holds %d entries, the id index %d", n, len(c.byID))
			}
		})
	}
}

// BenchmarkKeyCacheFull stores into a full cache: constant time per key.
func BenchmarkKeyCacheFull(b *testing.B) {
	c := newKeyCache(100_000)
	exp := time.Now().Add(time.Hour)
	keys := make([]DataKey, 200_000)
	for i := range keys {
		keys[i] = cacheKey(fmt.Sprintf("C%09d", i), 1)
	}
	for i := range 100_000 {
		c.put(keys[i], exp)
	}
	i := 0
	for b.Loop() {
		c.put(keys[i%len(keys)], exp)
		i++
	}
}
