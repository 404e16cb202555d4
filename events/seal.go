package events

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Algorithm is the only sealing algorithm: AES-256-GCM.
const Algorithm = "A256GCM"

// Sealed is the stored form of a personal field: the value encrypted with the
// customer's data key. The additional data binds it to its key, customer and field, so
// a sealed value cannot be moved to another customer or field.
type Sealed struct {
	Alg        string `json:"alg"`
	KeyID      string `json:"kid"`
	Nonce      string `json:"n"`
	Ciphertext string `json:"ct"`
}

// DataKey is a customer's data key.
type DataKey struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Key      []byte `json:"key"` // 32 bytes
}

func (k DataKey) String() string       { return "events.DataKey{id:" + k.ID + ", key:[redacted]}" }
func (k DataKey) GoString() string     { return k.String() }
func (k DataKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// KeySource supplies data keys. KeyClient implements it over NATS; the key service
// implements it over its store.
type KeySource interface {
	// CustomerKeys returns the data key of every customer listed, creating one for a
	// customer that has none. An erased customer gets a new key (new data may be
	// recorded after an erasure); old values stay unreadable.
	CustomerKeys(ctx context.Context, customers []string) (map[string]DataKey, error)
	// KeysByID returns the keys with the given ids. An erased key is absent; an id the
	// source does not know is an error.
	KeysByID(ctx context.Context, ids []string) (map[string]DataKey, error)
}

// Sealer encrypts personal fields before an event enters the log and opens them for
// callers allowed to read them.
type Sealer struct {
	keys  KeySource
	aeads aeadCache
}

// NewSealer returns a sealer that takes data keys from keys.
func NewSealer(keys KeySource) *Sealer { return &Sealer{keys: keys} }

func aad(kid, customer, pointer string) []byte {
	return appendAAD(nil, kid, customer, pointer)
}

func appendAAD(b []byte, kid, customer, pointer string) []byte {
	b = append(b, kid...)
	b = append(b, 0)
	b = append(b, customer...)
	b = append(b, 0)
	return append(b, pointer...)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts value for the customer's field at pointer.
func Seal(key DataKey, pointer, value string) (Sealed, error) {
	gcm, err := newAEAD(key.Key)
	if err != nil {
		return Sealed{}, fmt.Errorf("seal %s: %w", pointer, err)
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("seal %s: %w", pointer, err)
	}
	ct := gcm.Seal(nil, nonce, []byte(value), aad(key.ID, key.Customer, pointer))
	return Sealed{Alg: Algorithm, KeyID: key.ID, Nonce: base64.StdEncoding.EncodeToString(nonce), Ciphertext: base64.StdEncoding.EncodeToString(ct)}, nil
}

// Open decrypts a sealed value of the customer's field at pointer.
func Open(key DataKey, pointer string, s Sealed) (string, error) {
	return openWith(newAEAD, key, pointer, s)
}

// open is Open with the sealer's cache of AES-GCM instances.
func (s *Sealer) open(key DataKey, pointer string, sealed Sealed) (string, error) {
	return openWith(func([]byte) (cipher.AEAD, error) { return s.aead(key) }, key, pointer, sealed)
}

func openWith(aead func(key []byte) (cipher.AEAD, error), key DataKey, pointer string, s Sealed) (string, error) {
	if s.Alg != Algorithm {
		return "", fmt.Errorf("open %s: unsupported algorithm %q", pointer, s.Alg)
	}
	nonce, err := base64.StdEncoding.DecodeString(s.Nonce)
	if err != nil {
		return "", fmt.Errorf("open %s: nonce: %w", pointer, err)
	}
	ct, err := base64.StdEncoding.DecodeString(s.Ciphertext)
	if err != nil {
		return "", fmt.Errorf("open %s: ciphertext: %w", pointer, err)
	}
	gcm, err := aead(key.Key)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", pointer, err)
	}
	if len(nonce) != gcm.NonceSize() {
		return "", fmt.Errorf("open %s: nonce is %d bytes", pointer, len(nonce))
	}
	pt, err := gcm.Open(nil, nonce, ct, aad(key.ID, key.Customer, pointer))
	if err != nil {
		return "", fmt.Errorf("open %s: %w", pointer, err)
	}
	return string(pt), nil
}

// SealAll seals the personal fields of checked events in place, fetching the data keys
// of all their customers in one request, and returns the stored-form payloads in the
// same order. Events of types without personal fields are returned unchanged (compacted).
func (s *Sealer) SealAll(ctx context.Context, checked []*Checked) ([]json.RawMessage, error) {
	var customers []string
	seen := map[string]bool{}
	for _, c := range checked {
		if c.Schema.HasPersonal() && !seen[c.Event.Subject] {
			seen[c.Event.Subject] = true
			customers = append(customers, c.Event.Subject)
		}
	}
	keys, err := s.customerKeys(ctx, customers)
	if err != nil {
		return nil, err
	}
	var sc sealScratch
	out := make([]json.RawMessage, len(checked))
	for i, c := range checked {
		var key *DataKey
		if c.Schema.HasPersonal() {
			k, ok := keys[c.Event.Subject]
			if !ok {
				return nil, fmt.Errorf("%w: no key returned for customer", ErrKeyUnavailable)
			}
			key = &k
		}
		b, err := s.appendData(nil, c, key, &sc)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// customerKeys fetches the keys of customers, none if there are none.
func (s *Sealer) customerKeys(ctx context.Context, customers []string) (map[string]DataKey, error) {
	if len(customers) == 0 {
		return nil, nil
	}
	if s == nil || s.keys == nil {
		return nil, fmt.Errorf("%w: events carry personal fields and no key source is configured", ErrKeyUnavailable)
	}
	keys, err := s.keys.CustomerKeys(ctx, customers)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}
	return keys, nil
}

// sealScratch is reused across the fields of a batch.
type sealScratch struct {
	aad, ct []byte
	nonces  []byte // random, 12 bytes used per field
}

func (sc *sealScratch) nonce() ([]byte, error) {
	const n = 12 // the GCM standard nonce size
	if len(sc.nonces) < n {
		if cap(sc.nonces) == 0 {
			sc.nonces = make([]byte, 64*n)
		}
		sc.nonces = sc.nonces[:cap(sc.nonces)]
		if _, err := rand.Read(sc.nonces); err != nil {
			return nil, err
		}
	}
	nonce := sc.nonces[:n:n]
	sc.nonces = sc.nonces[n:]
	return nonce, nil
}

// appendData appends the stored form of a checked event's payload to b: compacted,
// its personal fields sealed with key (nil for types without personal fields).
func (s *Sealer) appendData(b []byte, c *Checked, key *DataKey, sc *sealScratch) ([]byte, error) {
	data := c.Event.Data
	if key == nil {
		if c.read && c.compact {
			return append(b, data...), nil
		}
		return appendCompact(b, data)
	}
	aead, err := s.aead(*key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if !c.read {
		return sealDoc(b, c, aead, key, sc)
	}
	out := b
	if !c.compact {
		out = nil // splice apart, then compact into b
	}
	prev := int32(0)
	for _, f := range c.fields {
		if !f.str {
			return nil, fmt.Errorf("seal %s: personal field is not a string", f.pointer)
		}
		value := data[f.start+1 : f.end-1]
		if f.escaped {
			var v string
			if err := json.Unmarshal(data[f.start:f.end], &v); err != nil {
				return nil, fmt.Errorf("seal %s: %w", f.pointer, err)
			}
			value = []byte(v)
		}
		out = append(out, data[prev:f.start]...)
		if out, err = appendSealed(out, aead, key, f.pointer, value, sc); err != nil {
			return nil, err
		}
		prev = f.end
	}
	out = append(out, data[prev:]...)
	if !c.compact {
		return appendCompact(b, out)
	}
	return out, nil
}

// appendSealed appends the stored form of value, the customer's field at pointer:
// {"alg":"A256GCM","kid":...,"n":...,"ct":...}, as json.Marshal(Sealed) writes it.
func appendSealed(b []byte, aead cipher.AEAD, key *DataKey, pointer string, value []byte, sc *sealScratch) ([]byte, error) {
	nonce, err := sc.nonce()
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", pointer, err)
	}
	sc.aad = appendAAD(sc.aad[:0], key.ID, key.Customer, pointer)
	sc.ct = aead.Seal(sc.ct[:0], nonce, value, sc.aad)
	b = append(b, `{"alg":"`+Algorithm+`","kid":`...)
	b = appendString(b, key.ID)
	b = append(b, `,"n":"`...)
	b = base64.StdEncoding.AppendEncode(b, nonce)
	b = append(b, `","ct":"`...)
	b = base64.StdEncoding.AppendEncode(b, sc.ct)
	return append(b, `"}`...), nil
}

// sealDoc seals a payload read by encoding/json (the original path): the personal
// values are replaced in the parsed document, which is then encoded again.
func sealDoc(b []byte, c *Checked, aead cipher.AEAD, key *DataKey, sc *sealScratch) ([]byte, error) {
	doc := c.doc.(map[string]any)
	for _, p := range c.Schema.Personal {
		parent, name, ok := resolveParent(doc, p)
		if !ok {
			continue
		}
		v, present := parent[name]
		if !present {
			continue
		}
		str, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("seal %s: personal field is not a string", p)
		}
		sealed, err := appendSealed(nil, aead, key, p, []byte(str), sc)
		if err != nil {
			return nil, err
		}
		parent[name] = json.RawMessage(sealed)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return append(b, out...), nil
}

// appendCompact appends data without insignificant whitespace.
func appendCompact(b, data []byte) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// aead returns the AES-GCM of a data key, from the cache when it holds that key.
func (s *Sealer) aead(k DataKey) (cipher.AEAD, error) {
	if a := s.aeads.get(k); a != nil {
		return a, nil
	}
	a, err := newAEAD(k.Key)
	if err != nil {
		return nil, err
	}
	s.aeads.put(k, a)
	return a, nil
}

// Bounds of the AES-GCM cache. An entry is used only for the key material the key
// source has just returned under that id; the bounds limit how long expanded keys stay
// in memory after their last use (an erased key is never returned again, so its entry
// ages out).
const (
	aeadCacheSize = 4096
	aeadCacheTTL  = time.Minute
)

// aeadCache keeps the AES-GCM instances of recently used data keys, least recently
// used first out, so that a key is expanded once rather than for every field.
type aeadCache struct {
	mu      sync.Mutex
	entries map[string]*aeadEntry // by key id
	lru     aeadEntry             // sentinel: lru.next is the most recently used
}

type aeadEntry struct {
	id         string
	key        [32]byte
	aead       cipher.AEAD
	used       time.Time
	prev, next *aeadEntry
}

func (c *aeadCache) get(k DataKey) cipher.AEAD {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	e := c.entries[k.ID]
	if e == nil || !bytes.Equal(e.key[:], k.Key) {
		return nil
	}
	e.used = now
	c.unlink(e)
	c.pushFront(e)
	return e.aead
}

func (c *aeadCache) put(k DataKey, a cipher.AEAD) {
	if len(k.Key) != 32 {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]*aeadEntry)
		c.lru.next, c.lru.prev = &c.lru, &c.lru
	}
	if old := c.entries[k.ID]; old != nil {
		c.unlink(old)
	}
	e := &aeadEntry{id: k.ID, aead: a, used: now}
	copy(e.key[:], k.Key)
	c.entries[k.ID] = e
	c.pushFront(e)
	for len(c.entries) > aeadCacheSize {
		c.remove(c.lru.prev)
	}
	c.expire(now)
}

// expire drops the entries unused for longer than the TTL: the oldest, at the back.
func (c *aeadCache) expire(now time.Time) {
	for c.entries != nil && c.lru.prev != &c.lru && now.Sub(c.lru.prev.used) >= aeadCacheTTL {
		c.remove(c.lru.prev)
	}
}

func (c *aeadCache) remove(e *aeadEntry) {
	c.unlink(e)
	if c.entries[e.id] == e {
		delete(c.entries, e.id)
	}
}

func (c *aeadCache) unlink(e *aeadEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *aeadCache) pushFront(e *aeadEntry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

// resolveParent walks a JSON pointer to the object holding its last token.
func resolveParent(doc map[string]any, pointer string) (map[string]any, string, bool) {
	toks := strings.Split(strings.TrimPrefix(pointer, "/"), "/")
	cur := doc
	for _, t := range toks[:len(toks)-1] {
		next, ok := cur[unescapePointer(t)].(map[string]any)
		if !ok {
			return nil, "", false
		}
		cur = next
	}
	return cur, unescapePointer(toks[len(toks)-1]), true
}

func unescapePointer(s string) string {
	if !strings.Contains(s, "~") {
		return s
	}
	return strings.NewReplacer("~1", "/", "~0", "~").Replace(s)
}

// Reveal returns the payload of a stored event with its personal fields opened. Fields
// whose key was erased are replaced by null and the error matches ErrErased; other
// fields are still returned.
func (s *Sealer) Reveal(ctx context.Context, schema *Schema, e *Event) (json.RawMessage, error) {
	if !schema.HasPersonal() {
		return e.Data, nil
	}
	var doc map[string]any
	if err := json.Unmarshal(e.Data, &doc); err != nil {
		return nil, fmt.Errorf("reveal %s: %w", e.ID, err)
	}
	type field struct {
		parent  map[string]any
		name    string
		pointer string
		sealed  Sealed
	}
	var fields []field
	var kids []string
	for _, p := range schema.Personal {
		parent, name, ok := resolveParent(doc, p)
		if !ok {
			continue
		}
		raw, ok := parent[name].(map[string]any)
		if !ok {
			continue
		}
		sv := Sealed{}
		sv.Alg, _ = raw["alg"].(string)
		sv.KeyID, _ = raw["kid"].(string)
		sv.Nonce, _ = raw["n"].(string)
		sv.Ciphertext, _ = raw["ct"].(string)
		fields = append(fields, field{parent, name, p, sv})
		kids = append(kids, sv.KeyID)
	}
	if len(fields) == 0 {
		return e.Data, nil
	}
	if s == nil || s.keys == nil {
		return nil, fmt.Errorf("%w: no key source configured", ErrKeyUnavailable)
	}
	keys, err := s.keys.KeysByID(ctx, kids)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}
	var erased bool
	for _, f := range fields {
		key, ok := keys[f.sealed.KeyID]
		if !ok {
			f.parent[f.name] = nil
			erased = true
			continue
		}
		value, err := s.open(key, f.pointer, f.sealed)
		if err != nil {
			return nil, fmt.Errorf("reveal %s: %w", e.ID, err)
		}
		f.parent[f.name] = value
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if erased {
		return out, ErrErased
	}
	return out, nil
}
