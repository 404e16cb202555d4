package streams_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/testkit"
)

// TestLoadDeployFile: the shipped definition loads and names the SIGNALS stream.
func TestLoadDeployFile(t *testing.T) {
	d, err := streams.Load(filepath.Join("..", "..", "deploy", "streams.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.SignalsConfig().Name, "SIGNALS"; got != want {
		t.Errorf("signals stream = %q, want %q", got, want)
	}
}

// TestLoadWithoutSignals: a definition file written before SIGNALS existed still
// loads, and gets the default SIGNALS settings.
func TestLoadWithoutSignals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "streams.json")
	old := `{"layout": {"subject_prefix": "tp", "partitions": 8, "streams": [{"name": "TOUCHPOINTS", "first_partition": 0, "last_partition": 7}]},
		"touchpoints": {"replicas": 1, "max_bytes": -1, "duplicate_window": "2m", "max_msg_size": 66560}, "ingest_transform": true}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := streams.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := d.SignalsConfig()
	want := streams.Definition{Signals: streams.DefaultSignals()}.SignalsConfig()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("signals config (-want +got):\n%s", diff)
	}
}

// TestValidateSignals: a wrong SIGNALS setting is refused with the field named.
func TestValidateSignals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*streams.SignalSettings)
		field string
	}{
		{"replicas", func(s *streams.SignalSettings) { s.Replicas = 2 }, "signals.replicas"},
		{"duplicate window", func(s *streams.SignalSettings) { s.DuplicateWindow = streams.Duration(time.Millisecond) }, "signals.duplicate_window"},
		{"max age below window", func(s *streams.SignalSettings) { s.MaxAge = streams.Duration(time.Minute) }, "signals.max_age"},
		{"name taken by the log", func(s *streams.SignalSettings) { s.Name = "TOUCHPOINTS" }, "signals.name"},
		{"message size", func(s *streams.SignalSettings) { s.MaxMsgSize = 10 }, "signals.max_msg_size"},
		{"bytes", func(s *streams.SignalSettings) { s.MaxBytes = -5 }, "signals.max_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := streams.Default()
			tc.edit(&d.Signals)
			err := d.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

// TestApplySignals: Apply creates SIGNALS beside the log, is idempotent, and updates
// its limits in place.
func TestApplySignals(t *testing.T) {
	_, js := testkit.StartNATS(t).JetStream(t)
	d := streams.Default()
	actions := func() map[string]string {
		t.Helper()
		ch, err := streams.Apply(t.Context(), js, d)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, c := range ch {
			out[c.Stream] = c.Action
		}
		return out
	}
	if diff := cmp.Diff(map[string]string{"TOUCHPOINTS": "created", "SIGNALS": "created"}, actions()); diff != "" {
		t.Errorf("first apply (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"TOUCHPOINTS": "unchanged", "SIGNALS": "unchanged"}, actions()); diff != "" {
		t.Errorf("second apply (-want +got):\n%s", diff)
	}
	d.Signals.DuplicateWindow = streams.Duration(20 * time.Minute)
	if diff := cmp.Diff(map[string]string{"TOUCHPOINTS": "unchanged", "SIGNALS": "updated"}, actions()); diff != "" {
		t.Errorf("apply after a change (-want +got):\n%s", diff)
	}
	s, err := js.Stream(t.Context(), "SIGNALS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if got, want := cfg.Duplicates, 20*time.Minute; got != want {
		t.Errorf("duplicate window = %s, want %s", got, want)
	}
	if diff := cmp.Diff([]string{"signals.>"}, cfg.Subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}
}
