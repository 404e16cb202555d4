// Package streams defines touchstream's JetStream streams and provisions them
// idempotently from a definition file (deploy/streams.json).
//
// TOUCHPOINTS (or the streams a layout spreads the partitions over) is the source of
// truth and is kept forever: file storage, no age or count limit, new writes refused
// when the byte budget is full (DiscardNew) rather than history dropped, message delete
// and purge denied. Apply creates a missing stream and updates the settings that may
// change (replicas, byte budget, duplicate window); it refuses to change what would
// rewrite history's addressing (subjects, partitions).
//
// SIGNALS holds the derived signals (tier changes, overdrafts, alerts, breaches) that
// projections write through their transactional outbox and a forwarder publishes on
// signals.<type>. It is not the truth (signals can be derived again from the log) and is
// kept for a bounded time (MaxAge); its duplicate window drops the forwarder's
// at-least-once redeliveries (Nats-Msg-Id = signal id). Apply provisions it beside the
// log streams; a definition file without a "signals" part gets the defaults.
package streams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
)

// Definition is the content of deploy/streams.json.
type Definition struct {
	Layout      events.Layout `json:"layout"`
	Touchpoints Settings      `json:"touchpoints"`
	// Ingest enables the subject transform from <prefix>in.<customer>.<type> to the
	// partitioned subject (single-stream layouts only).
	Ingest bool `json:"ingest_transform"`
	// Signals is the derived-signals stream; zero fields take DefaultSignals' values.
	Signals SignalSettings `json:"signals"`
}

// SignalSettings are the settings of the SIGNALS stream.
type SignalSettings struct {
	Name            string   `json:"name"`
	Replicas        int      `json:"replicas"`
	MaxAge          Duration `json:"max_age"`
	MaxBytes        int64    `json:"max_bytes"` // -1: bounded only by the server's store
	DuplicateWindow Duration `json:"duplicate_window"`
	MaxMsgSize      int32    `json:"max_msg_size"`
}

// SignalsSubjects are the subjects of the SIGNALS stream: signals.<type>.
const SignalsSubjects = "signals.>"

// DefaultSignals: SIGNALS, one replica, kept 30 days within 1 GiB, a ten-minute
// duplicate window (longer than a forwarder restart), messages up to 64 KiB.
func DefaultSignals() SignalSettings {
	return SignalSettings{Name: "SIGNALS", Replicas: 1, MaxAge: Duration(30 * 24 * time.Hour), MaxBytes: 1 << 30,
		DuplicateWindow: Duration(10 * time.Minute), MaxMsgSize: 64 << 10}
}

// withDefaults fills the zero fields from DefaultSignals.
func (s SignalSettings) withDefaults() SignalSettings {
	d := DefaultSignals()
	if s.Name == "" {
		s.Name = d.Name
	}
	if s.Replicas == 0 {
		s.Replicas = d.Replicas
	}
	if s.MaxAge == 0 {
		s.MaxAge = d.MaxAge
	}
	if s.MaxBytes == 0 {
		s.MaxBytes = d.MaxBytes
	}
	if s.DuplicateWindow == 0 {
		s.DuplicateWindow = d.DuplicateWindow
	}
	if s.MaxMsgSize == 0 {
		s.MaxMsgSize = d.MaxMsgSize
	}
	return s
}

// Settings are the tunable settings of a log stream.
type Settings struct {
	Replicas        int      `json:"replicas"`
	MaxBytes        int64    `json:"max_bytes"` // -1: bounded only by the server's store
	DuplicateWindow Duration `json:"duplicate_window"`
	MaxMsgSize      int32    `json:"max_msg_size"`
	Compression     bool     `json:"compression"`
	PlacementTags   []string `json:"placement_tags,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("2m").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"2m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Default is one stream of 64 partitions, one replica, a two-minute duplicate window.
func Default() Definition {
	return Definition{
		Layout: events.DefaultLayout(),
		// The message limit leaves 1 KiB above the doors' event limit (events.DefaultLimits)
		// for headers, so the stream never refuses what a door accepted.
		Touchpoints: Settings{Replicas: 1, MaxBytes: -1, DuplicateWindow: Duration(2 * time.Minute), MaxMsgSize: 65 << 10},
		Ingest:      true,
		Signals:     DefaultSignals(),
	}
}

// Load reads and validates a definition file.
func Load(path string) (Definition, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Definition{}, fmt.Errorf("streams: %w", err)
	}
	var d Definition
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return Definition{}, fmt.Errorf("streams: %s: %w", path, err)
	}
	if err := d.Validate(); err != nil {
		return Definition{}, fmt.Errorf("streams: %s: %w", path, err)
	}
	return d, nil
}

// Validate checks the definition.
func (d Definition) Validate() error {
	var errs []error
	if err := d.Layout.Validate(); err != nil {
		errs = append(errs, err)
	}
	s := d.Touchpoints
	if s.Replicas != 1 && s.Replicas != 3 && s.Replicas != 5 {
		errs = append(errs, fmt.Errorf("touchpoints.replicas %d: must be 1, 3 or 5", s.Replicas))
	}
	if s.MaxBytes == 0 || s.MaxBytes < -1 {
		errs = append(errs, fmt.Errorf("touchpoints.max_bytes %d: must be -1 (server limit) or positive", s.MaxBytes))
	}
	if s.DuplicateWindow < Duration(time.Second) {
		errs = append(errs, fmt.Errorf("touchpoints.duplicate_window %s: must be at least 1s", time.Duration(s.DuplicateWindow)))
	}
	if s.MaxMsgSize < 1024 {
		errs = append(errs, fmt.Errorf("touchpoints.max_msg_size %d: must be at least 1024", s.MaxMsgSize))
	}
	if d.Ingest && len(d.Layout.Streams) != 1 {
		errs = append(errs, errors.New("ingest_transform: only possible when one stream holds every partition"))
	}
	sg := d.Signals.withDefaults()
	for _, sl := range d.Layout.Streams {
		if sl.Name == sg.Name {
			errs = append(errs, fmt.Errorf("signals.name %q: already names a log stream", sg.Name))
		}
	}
	if sg.Replicas != 1 && sg.Replicas != 3 && sg.Replicas != 5 {
		errs = append(errs, fmt.Errorf("signals.replicas %d: must be 1, 3 or 5", sg.Replicas))
	}
	if sg.MaxBytes < -1 {
		errs = append(errs, fmt.Errorf("signals.max_bytes %d: must be -1 (server limit) or positive", sg.MaxBytes))
	}
	if sg.DuplicateWindow < Duration(time.Second) {
		errs = append(errs, fmt.Errorf("signals.duplicate_window %s: must be at least 1s", time.Duration(sg.DuplicateWindow)))
	}
	if sg.MaxAge < sg.DuplicateWindow {
		errs = append(errs, fmt.Errorf("signals.max_age %s: must be at least the duplicate window (%s)", time.Duration(sg.MaxAge), time.Duration(sg.DuplicateWindow)))
	}
	if sg.MaxMsgSize < 1024 {
		errs = append(errs, fmt.Errorf("signals.max_msg_size %d: must be at least 1024", sg.MaxMsgSize))
	}
	return errors.Join(errs...)
}

// Config returns the JetStream configuration of each log stream.
func (d Definition) Config() []jetstream.StreamConfig {
	layout, _ := json.Marshal(d.Layout)
	var out []jetstream.StreamConfig
	for _, sl := range d.Layout.Streams {
		c := jetstream.StreamConfig{
			Name:              sl.Name,
			Description:       fmt.Sprintf("touchpoint log, partitions %d-%d of %d; kept forever", sl.First, sl.Last, d.Layout.Partitions),
			Subjects:          d.Layout.StreamSubjects(sl),
			Retention:         jetstream.LimitsPolicy,
			MaxMsgs:           -1,
			MaxBytes:          d.Touchpoints.MaxBytes,
			Discard:           jetstream.DiscardNew,
			MaxAge:            0,
			MaxMsgsPerSubject: -1,
			MaxMsgSize:        d.Touchpoints.MaxMsgSize,
			Storage:           jetstream.FileStorage,
			Replicas:          d.Touchpoints.Replicas,
			Duplicates:        time.Duration(d.Touchpoints.DuplicateWindow),
			DenyDelete:        true,
			DenyPurge:         true,
			AllowDirect:       true,
			MaxConsumers:      -1,
			Metadata:          map[string]string{events.LayoutMetadataKey: string(layout)},
		}
		if d.Touchpoints.Compression {
			c.Compression = jetstream.S2Compression
		}
		if len(d.Touchpoints.PlacementTags) > 0 {
			c.Placement = &jetstream.Placement{Tags: d.Touchpoints.PlacementTags}
		}
		if d.Ingest {
			in := d.Layout.Prefix + "in.*.*.*"
			c.Subjects = append(c.Subjects, in)
			c.SubjectTransform = &jetstream.SubjectTransformConfig{
				Source:      in,
				Destination: d.Layout.Prefix + ".{{partition(" + strconv.Itoa(d.Layout.Partitions) + ",1)}}.{{wildcard(2)}}.{{wildcard(3)}}",
			}
		}
		out = append(out, c)
	}
	return out
}

// SignalsConfig returns the JetStream configuration of the SIGNALS stream.
func (d Definition) SignalsConfig() jetstream.StreamConfig {
	sg := d.Signals.withDefaults()
	return jetstream.StreamConfig{
		Name:              sg.Name,
		Description:       "derived signals (signals.<type>), forwarded from the projections' outbox; deduplicated by signal id",
		Subjects:          []string{SignalsSubjects},
		Retention:         jetstream.LimitsPolicy,
		MaxMsgs:           -1,
		MaxBytes:          sg.MaxBytes,
		Discard:           jetstream.DiscardOld,
		MaxAge:            time.Duration(sg.MaxAge),
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        sg.MaxMsgSize,
		Storage:           jetstream.FileStorage,
		Replicas:          sg.Replicas,
		Duplicates:        time.Duration(sg.DuplicateWindow),
		AllowDirect:       true,
		MaxConsumers:      -1,
	}
}

// Change is what Apply did to one stream.
type Change struct {
	Stream string
	Action string // "created", "updated", "unchanged"
}

// ErrIncompatible: the stream exists with an addressing that the definition would
// change. Repartitioning is a migration, never an in-place update.
var ErrIncompatible = errors.New("stream exists with incompatible subjects or layout")

// Apply creates or updates the log streams and the SIGNALS stream. It is idempotent.
func Apply(ctx context.Context, js jetstream.JetStream, d Definition) ([]Change, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	var out []Change
	for _, want := range d.Config() {
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			if _, err := js.CreateStream(ctx, want); err != nil {
				return out, fmt.Errorf("create stream %s: %w", want.Name, err)
			}
			out = append(out, Change{want.Name, "created"})
			continue
		}
		if err != nil {
			return out, fmt.Errorf("stream %s: %w", want.Name, err)
		}
		have := s.CachedInfo().Config
		if !slices.Equal(have.Subjects, want.Subjects) || have.Metadata[events.LayoutMetadataKey] != want.Metadata[events.LayoutMetadataKey] {
			return out, fmt.Errorf("stream %s: %w: has subjects %v, definition wants %v", want.Name, ErrIncompatible, have.Subjects, want.Subjects)
		}
		merged := have
		merged.Replicas = want.Replicas
		merged.MaxBytes = want.MaxBytes
		merged.Duplicates = want.Duplicates
		merged.MaxMsgSize = want.MaxMsgSize
		merged.Discard = want.Discard
		merged.DenyDelete = want.DenyDelete
		merged.DenyPurge = want.DenyPurge
		merged.AllowDirect = want.AllowDirect
		merged.Description = want.Description
		merged.Placement = want.Placement
		merged.SubjectTransform = want.SubjectTransform
		merged.Metadata = mergeMetadata(have.Metadata, want.Metadata)
		if reflect.DeepEqual(comparable(merged), comparable(have)) {
			out = append(out, Change{want.Name, "unchanged"})
			continue
		}
		if _, err := js.UpdateStream(ctx, merged); err != nil {
			return out, fmt.Errorf("update stream %s: %w", want.Name, err)
		}
		out = append(out, Change{want.Name, "updated"})
	}
	ch, err := applySignals(ctx, js, d.SignalsConfig())
	if err != nil {
		return out, err
	}
	return append(out, ch), nil
}

// applySignals creates the SIGNALS stream or updates its limits; it refuses to change
// its subjects.
func applySignals(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (Change, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, want); err != nil {
			return Change{}, fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		return Change{want.Name, "created"}, nil
	}
	if err != nil {
		return Change{}, fmt.Errorf("stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if !slices.Equal(have.Subjects, want.Subjects) {
		return Change{}, fmt.Errorf("stream %s: %w: has subjects %v, definition wants %v", want.Name, ErrIncompatible, have.Subjects, want.Subjects)
	}
	merged := have
	merged.Replicas = want.Replicas
	merged.MaxBytes = want.MaxBytes
	merged.MaxAge = want.MaxAge
	merged.Duplicates = want.Duplicates
	merged.MaxMsgSize = want.MaxMsgSize
	merged.Discard = want.Discard
	merged.AllowDirect = want.AllowDirect
	merged.Description = want.Description
	if reflect.DeepEqual(comparable(merged), comparable(have)) {
		return Change{want.Name, "unchanged"}, nil
	}
	if _, err := js.UpdateStream(ctx, merged); err != nil {
		return Change{}, fmt.Errorf("update stream %s: %w", want.Name, err)
	}
	return Change{want.Name, "updated"}, nil
}

// comparable drops what the server adds to a config so that two configs compare equal
// when the definition asks for nothing new.
func comparable(c jetstream.StreamConfig) jetstream.StreamConfig {
	md := map[string]string{}
	for k, v := range c.Metadata {
		if len(k) > 9 && k[:9] == "_nats.req" || len(k) > 6 && k[:6] == "_nats." {
			continue
		}
		md[k] = v
	}
	c.Metadata = md
	return c
}

func mergeMetadata(have, want map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range have {
		out[k] = v
	}
	for k, v := range want {
		out[k] = v
	}
	return out
}
