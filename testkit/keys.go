package testkit

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/touchstream/touchstream/events"
)

// Keys is an in-memory data key source with the key service's semantics: one key per
// customer, created on first use, looked up by id, and erasable. For tests of code
// that seals or opens personal fields without the key service running; the key
// service itself is tested against PostgreSQL and NATS.
type Keys struct {
	mu     sync.Mutex
	byCust map[string]events.DataKey
	byID   map[string]events.DataKey
	erased map[string]bool
}

// NewKeys returns an empty key source.
func NewKeys() *Keys {
	return &Keys{byCust: map[string]events.DataKey{}, byID: map[string]events.DataKey{}, erased: map[string]bool{}}
}

// CustomerKeys implements events.KeySource.
func (k *Keys) CustomerKeys(_ context.Context, customers []string) (map[string]events.DataKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]events.DataKey, len(customers))
	for _, c := range customers {
		dk, ok := k.byCust[c]
		if !ok {
			dk = events.DataKey{ID: uuid.NewString(), Customer: c, Key: make([]byte, 32)}
			_, _ = rand.Read(dk.Key)
			k.byCust[c], k.byID[dk.ID] = dk, dk
		}
		out[c] = dk
	}
	return out, nil
}

// KeysByID implements events.KeySource.
func (k *Keys) KeysByID(_ context.Context, ids []string) (map[string]events.DataKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]events.DataKey, len(ids))
	for _, id := range ids {
		dk, ok := k.byID[id]
		switch {
		case ok:
			out[id] = dk
		case !k.erased[id]:
			return nil, fmt.Errorf("unknown key id %q", id)
		}
	}
	return out, nil
}

// Erase deletes a customer's key.
func (k *Keys) Erase(customer string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if dk, ok := k.byCust[customer]; ok {
		delete(k.byID, dk.ID)
		delete(k.byCust, customer)
		k.erased[dk.ID] = true
	}
}
