package events

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// LayoutMetadataKey is the stream metadata key under which `touchstream streams apply`
// records the layout, so any client can learn the partitioning from the server.
const LayoutMetadataKey = "touchstream.layout"

// ReadLayout reads the layout recorded in a stream's metadata.
func ReadLayout(ctx context.Context, js jetstream.JetStream, stream string) (Layout, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return Layout{}, fmt.Errorf("events: read layout from stream %s: %w", stream, err)
	}
	raw, ok := s.CachedInfo().Config.Metadata[LayoutMetadataKey]
	if !ok {
		return Layout{}, fmt.Errorf("events: stream %s has no %s metadata: provision it with `touchstream streams apply` or pass WithLayout", stream, LayoutMetadataKey)
	}
	var l Layout
	if err := json.Unmarshal([]byte(raw), &l); err != nil {
		return Layout{}, fmt.Errorf("events: stream %s: layout metadata: %w", stream, err)
	}
	if err := l.Validate(); err != nil {
		return Layout{}, fmt.Errorf("events: stream %s: %w", stream, err)
	}
	return l, nil
}
