package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Subjects of the key service's request-reply API.
const (
	KeySubjectCustomers = "touchstream.keys.v1.customers"
	KeySubjectIDs       = "touchstream.keys.v1.ids"
)

// MaxKeyRequestNames is the most customers or key ids one request may name; the
// client splits larger lookups.
const MaxKeyRequestNames = 1000

// KeyRequest asks the key service for data keys, by customer (creating missing keys)
// or by key id.
type KeyRequest struct {
	Customers []string `json:"customers,omitempty"`
	IDs       []string `json:"ids,omitempty"`
}

// KeyReply answers a KeyRequest. Erased lists requested key ids that were erased.
type KeyReply struct {
	Keys   []DataKey `json:"keys,omitempty"`
	Erased []string  `json:"erased,omitempty"`
	Error  string    `json:"error,omitempty"`
}

// KeyClient fetches data keys from the key service over NATS request-reply and caches
// them for a bounded time. An erasure is complete once every client's cache lifetime has
// passed since the key was deleted, so keep CacheTTL short.
type KeyClient struct {
	nc      *nats.Conn
	timeout time.Duration
	ttl     time.Duration

	mu       sync.Mutex
	cache    keyCache
	requests uint64 // round trips made, for benchmarks and metrics
}

// KeyClientConfig configures a KeyClient.
type KeyClientConfig struct {
	Timeout    time.Duration // per request; default 2s
	CacheTTL   time.Duration // default 1m; 0 keeps the default, negative disables the cache (a rebuild: each key is asked for once)
	MaxEntries int           // default 100,000 keys
}

// NewKeyClient returns a client of the key service reachable over nc.
func NewKeyClient(nc *nats.Conn, cfg KeyClientConfig) *KeyClient {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = time.Minute
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	return &KeyClient{nc: nc, timeout: cfg.Timeout, ttl: cfg.CacheTTL, cache: newKeyCache(cfg.MaxEntries)}
}

// CacheTTL is how long a fetched key may be used without asking the key service again.
func (c *KeyClient) CacheTTL() time.Duration { return max(c.ttl, 0) }

// Requests is the number of round trips made to the key service.
func (c *KeyClient) Requests() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests
}

// keyRequestsInFlight bounds the requests one lookup has in flight: a lookup of a
// gathered batch names tens of thousands of keys, and one request after the other it
// waited out every round trip while the key service's workers sat idle.
const keyRequestsInFlight = 4

// CustomerKeys implements KeySource.
func (c *KeyClient) CustomerKeys(ctx context.Context, customers []string) (map[string]DataKey, error) {
	return c.lookup(ctx, true, customers)
}

// KeysByID implements KeySource.
func (c *KeyClient) KeysByID(ctx context.Context, ids []string) (map[string]DataKey, error) {
	return c.lookup(ctx, false, ids)
}

// lookup returns the keys of names, customers (byCustomer) or key ids, from the cache
// and the key service. Every customer gets a key (the service creates missing ones);
// an id is either found or reported erased, and then left out.
func (c *KeyClient) lookup(ctx context.Context, byCustomer bool, names []string) (map[string]DataKey, error) {
	out, missing := c.cached(byCustomer, names)
	subject, name := KeySubjectIDs, func(k DataKey) string { return k.ID }
	if byCustomer {
		subject, name = KeySubjectCustomers, func(k DataKey) string { return k.Customer }
	}
	err := c.fetch(ctx, subject, missing, func(chunk []string) KeyRequest {
		if byCustomer {
			return KeyRequest{Customers: chunk}
		}
		return KeyRequest{IDs: chunk}
	}, func(chunk []string, reply *KeyReply) error {
		keys, err := checkReply(reply.Keys, chunk, name)
		if err != nil {
			return err
		}
		found := make(map[string]bool, len(keys))
		for _, k := range keys {
			out[name(k)], found[name(k)] = k, true
		}
		var erased map[string]bool
		for _, n := range chunk {
			if found[n] {
				continue
			}
			if byCustomer {
				return fmt.Errorf("key service returned no key for a requested customer")
			}
			// An id neither returned nor reported erased is unknown to the key service:
			// an error, never mistaken for a lawful erasure.
			if erased == nil {
				erased = make(map[string]bool, len(reply.Erased))
				for _, e := range reply.Erased {
					erased[e] = true
				}
			}
			if !erased[n] {
				return fmt.Errorf("key service does not know key id %q (wrong key store?)", n)
			}
		}
		c.store(keys)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// fetch asks the key service for names in requests of at most MaxKeyRequestNames,
// keyRequestsInFlight at a time, and hands each reply to accept, one at a time. The
// first error stops it.
func (c *KeyClient) fetch(ctx context.Context, subject string, names []string, req func([]string) KeyRequest,
	accept func(chunk []string, reply *KeyReply) error) error {
	if len(names) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex // serialises accept, and guards first
		first    error
		inFlight = make(chan struct{}, keyRequestsInFlight)
	)
	fail := func(err error) {
		if first == nil {
			first = err
			cancel()
		}
	}
	for chunk := range slices.Chunk(names, MaxKeyRequestNames) {
		select {
		case inFlight <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-inFlight }()
			reply, err := c.request(ctx, subject, req(chunk))
			mu.Lock()
			defer mu.Unlock()
			if err == nil && first == nil {
				err = accept(chunk, reply)
			}
			if err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err() // cancelled by the caller before every chunk was asked
	}
	return first
}

// Forget drops a customer's keys from the cache (after an erasure on this process).
func (c *KeyClient) Forget(customer string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cache.forget(customer)
}

// cached returns the cached keys of names (customers, or key ids) and the names
// missing from the cache, each once.
func (c *KeyClient) cached(byCustomer bool, names []string) (map[string]DataKey, []string) {
	out := make(map[string]DataKey, len(names))
	var missing []string
	var asked map[string]struct{}
	if c.ttl < 0 { // no cache: every name is missing, once
		asked = make(map[string]struct{}, len(names))
	} else {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	now := time.Now()
	for _, n := range names {
		if _, dup := out[n]; dup {
			continue
		}
		if c.ttl >= 0 {
			if k, ok := c.cache.get(byCustomer, n, now); ok {
				out[n] = k
				continue
			}
		}
		if asked == nil {
			asked = make(map[string]struct{})
		}
		if _, dup := asked[n]; !dup {
			asked[n] = struct{}{}
			missing = append(missing, n)
		}
	}
	return out, missing
}

// checkReply keeps the keys that were asked for and are well formed.
func checkReply(keys []DataKey, asked []string, name func(DataKey) string) ([]DataKey, error) {
	want := make(map[string]struct{}, len(asked))
	for _, a := range asked {
		want[a] = struct{}{}
	}
	out := keys[:0:0]
	for _, k := range keys {
		if _, ok := want[name(k)]; !ok {
			continue // not asked for: never cached
		}
		if len(k.Key) != 32 || k.ID == "" || k.Customer == "" {
			return nil, fmt.Errorf("key service returned a malformed key (%d bytes)", len(k.Key))
		}
		out = append(out, k)
	}
	return out, nil
}

func (c *KeyClient) store(keys []DataKey) {
	if c.ttl < 0 {
		return
	}
	exp := time.Now().Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		c.cache.put(k, exp)
	}
}

// keyCache holds fetched keys by customer and by id, at most max of them: a key is one
// entry, in both indexes, and the least recently used is evicted first, in constant
// time. An expired entry is dropped when found.
type keyCache struct {
	max    int
	byCust map[string]*keyEntry
	byID   map[string]*keyEntry
	lru    keyEntry // sentinel of the use order: lru.next is the most recent
}

type keyEntry struct {
	key        DataKey
	expires    time.Time
	prev, next *keyEntry
}

func newKeyCache(max int) keyCache {
	return keyCache{max: max, byCust: map[string]*keyEntry{}, byID: map[string]*keyEntry{}}
}

// get returns the key of a customer (byCustomer) or with an id.
func (c *keyCache) get(byCustomer bool, name string, now time.Time) (DataKey, bool) {
	idx := c.byID
	if byCustomer {
		idx = c.byCust
	}
	e := idx[name]
	if e == nil {
		return DataKey{}, false
	}
	if !now.Before(e.expires) {
		c.remove(e)
		return DataKey{}, false
	}
	c.unlink(e)
	c.pushFront(e)
	return e.key, true
}

// put caches k until exp, evicting the least recently used key if the cache is full.
func (c *keyCache) put(k DataKey, exp time.Time) {
	if c.lru.next == nil {
		c.lru.next, c.lru.prev = &c.lru, &c.lru
	}
	e := c.byID[k.ID]
	if e != nil {
		if e.key.Customer != k.Customer && c.byCust[e.key.Customer] == e {
			delete(c.byCust, e.key.Customer)
		}
		c.unlink(e)
	} else {
		e = &keyEntry{}
		c.byID[k.ID] = e
	}
	e.key, e.expires = k, exp
	c.byCust[k.Customer] = e // the latest key of a customer; older ones stay by id
	c.pushFront(e)
	for len(c.byID) > c.max {
		c.remove(c.lru.prev)
	}
}

// forget drops every key of a customer. It walks the cache: erasures are rare.
func (c *keyCache) forget(customer string) {
	if e := c.byCust[customer]; e != nil {
		c.remove(e)
	}
	for _, e := range c.byID {
		if e.key.Customer == customer {
			c.remove(e)
		}
	}
}

func (c *keyCache) remove(e *keyEntry) {
	c.unlink(e)
	if c.byID[e.key.ID] == e {
		delete(c.byID, e.key.ID)
	}
	if c.byCust[e.key.Customer] == e {
		delete(c.byCust, e.key.Customer)
	}
}

func (c *keyCache) unlink(e *keyEntry) {
	if e.prev != nil {
		e.prev.next, e.next.prev = e.next, e.prev
	}
	e.prev, e.next = nil, nil
}

func (c *keyCache) pushFront(e *keyEntry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

func (c *KeyClient) request(ctx context.Context, subject string, req KeyRequest) (*KeyReply, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.mu.Lock()
	c.requests++
	c.mu.Unlock()
	msg, err := c.nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("key service: no responders on %s", subject)
		}
		return nil, fmt.Errorf("key service %s: %w", subject, err)
	}
	var reply KeyReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return nil, fmt.Errorf("key service %s: bad reply: %w", subject, err)
	}
	if reply.Error != "" {
		return nil, fmt.Errorf("key service %s: %s", subject, reply.Error)
	}
	return &reply, nil
}
