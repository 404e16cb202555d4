package schemas

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestFromJSON checks that FromJSON builds what the catalog builds from its files, and
// refuses what the catalog would refuse.
func TestFromJSON(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		got, err := FromJSON(s.Type, s.Major, s.Input)
		if err != nil {
			t.Fatalf("%s v%d: %v", s.Type, s.Major, err)
		}
		if got.URI != s.URI || got.Scope != s.Scope || !bytes.Equal(got.Stored, s.Stored) || !slices.Equal(got.Personal, s.Personal) {
			t.Errorf("%s v%d: FromJSON differs from the catalog", s.Type, s.Major)
		}
	}
	v2 := []byte(`{"$id": "https://touchstream.dev/schemas/recharge.completed/v2", "type": "object", "properties": {}}`)
	for _, tt := range []struct {
		name      string
		eventType string
		major     int
		input     []byte
		want      string
	}{
		{"id of another version", "recharge.completed", 3, v2, `want "https://touchstream.dev/schemas/recharge.completed/v3"`},
		{"major 0", "recharge.completed", 0, v2, "not an event type and major version"},
		{"bad type", "Recharge", 2, v2, "not an event type and major version"},
		{"not JSON", "recharge.completed", 2, []byte("{"), "recharge.completed v2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromJSON(tt.eventType, tt.major, tt.input)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestEvolvedTypeKeepsEveryVersion checks the first evolved type: both versions are in
// the catalog, each with its own examples.
func TestEvolvedTypeKeepsEveryVersion(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	var majors []int
	for _, s := range all {
		if s.Type == "recharge.completed" {
			majors = append(majors, s.Major)
			valid, invalid, err := Examples(s.Type, s.Major)
			if err != nil || len(valid) == 0 || len(invalid) == 0 {
				t.Errorf("v%d: %d valid and %d invalid examples (%v)", s.Major, len(valid), len(invalid), err)
			}
		}
	}
	if !slices.Equal(majors, []int{1, 2}) {
		t.Errorf("recharge.completed versions %v, want [1 2]", majors)
	}
}
