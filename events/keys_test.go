package events_test

import (
	"context"
	"crypto/rand"
	"sync"

	"github.com/touchstream/touchstream/events"
)

// memKeys is an in-memory key source with the key service's semantics: one key per
// customer, created on first use, looked up by id.
type memKeys struct {
	mu     sync.Mutex
	byCust map[string]events.DataKey
	byID   map[string]events.DataKey
}

func newMemKeys() *memKeys {
	return &memKeys{byCust: map[string]events.DataKey{}, byID: map[string]events.DataKey{}}
}

func (m *memKeys) CustomerKeys(_ context.Context, cs []string) (map[string]events.DataKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]events.DataKey{}
	for _, c := range cs {
		k, ok := m.byCust[c]
		if !ok {
			k = events.DataKey{ID: "k-" + c, Customer: c, Key: make([]byte, 32)}
			_, _ = rand.Read(k.Key)
			m.byCust[c], m.byID[k.ID] = k, k
		}
		out[c] = k
	}
	return out, nil
}

func (m *memKeys) KeysByID(_ context.Context, ids []string) (map[string]events.DataKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]events.DataKey{}
	for _, id := range ids {
		if k, ok := m.byID[id]; ok {
			out[id] = k
		}
	}
	return out, nil
}
