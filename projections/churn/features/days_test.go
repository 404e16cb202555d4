package features

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func randomDays(rng *rand.Rand) Days {
	var ds Days
	day := int32(rng.IntN(30000))
	for range rng.IntN(130) {
		day += 1 + int32(rng.IntN(3))
		d := Day{Day: day}
		maybe := func(n int64) int64 {
			if rng.IntN(3) == 0 {
				return 0
			}
			return rng.Int64N(n) - n/10
		}
		d.SpendFen, d.VoiceMinutes, d.Dropped = maybe(1e7), maybe(5000), maybe(40)
		if rng.IntN(2) == 0 {
			d.DataMB = rng.Float64() * 1e5
		}
		d.Complaints, d.Care, d.Retention = int32(maybe(5)), int32(maybe(5)), int32(maybe(3))
		d.Incidents, d.Downgrades = int32(maybe(4)), int32(maybe(2))
		ds = append(ds, d)
	}
	return ds
}

// TestDaysPackedRoundTrip: the packed form reads back exactly, and is smaller.
func TestDaysPackedRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for i := range 500 {
		want := randomDays(rng)
		b, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var got Days
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("case %d (-want +got):\n%s", i, diff)
		}
		if len(want) > 10 {
			plain, _ := json.Marshal([]Day(want))
			if len(b)*3 > len(plain) {
				t.Errorf("case %d: packed %d bytes, object form %d: want under a third", i, len(b), len(plain))
			}
		}
	}
}

// TestDaysObjectForm: the object form (states stored before packing) still reads.
func TestDaysObjectForm(t *testing.T) {
	var got Days
	if err := json.Unmarshal([]byte(`[{"day":20521,"spend_fen":23000,"voice_minutes":20,"data_mb":1205.5},{"day":20522,"care":1}]`), &got); err != nil {
		t.Fatal(err)
	}
	want := Days{{Day: 20521, SpendFen: 23000, VoiceMinutes: 20, DataMB: 1205.5}, {Day: 20522, Care: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

// TestDaysCorrupt: a damaged packed form is an error, never a wrong state.
func TestDaysCorrupt(t *testing.T) {
	good, _ := json.Marshal(Days{{Day: 5, SpendFen: 100, DataMB: 2}, {Day: 9, Care: 1}})
	for name, in := range map[string]string{
		"not base64":      `"***"`,
		"wrong version":   `"Ag"`,
		"truncated":       string(good[:len(good)-4]) + `"`,
		"unknown fields":  `"AQX/Aw"`,
		"not a string":    `12`,
		"days descending": mustPack(t, []byte{1, 5, 0, 0, 0}),
	} {
		var ds Days
		if err := json.Unmarshal([]byte(in), &ds); err == nil {
			t.Errorf("%s: %s read as %v, want an error", name, in, ds)
		}
	}
	if _, err := json.Marshal(Days{{Day: 9}, {Day: 5}}); err == nil {
		t.Error("descending days packed without an error")
	}
}

func mustPack(t *testing.T, raw []byte) string {
	t.Helper()
	b, _ := json.Marshal(raw) // []byte marshals as std base64 with padding
	var s string
	_ = json.Unmarshal(b, &s)
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	return `"` + s + `"`
}

func FuzzDaysUnmarshal(f *testing.F) {
	good, _ := json.Marshal(Days{{Day: 5, SpendFen: 100, DataMB: 2}, {Day: 9, Care: 1}})
	f.Add(good)
	f.Add([]byte(`"AQ"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ds Days
		if err := json.Unmarshal(data, &ds); err != nil {
			return
		}
		again, err := json.Marshal(ds)
		if err != nil {
			return // an object form out of order reads but does not pack
		}
		var back Days
		if err := json.Unmarshal(again, &back); err != nil {
			t.Fatalf("repacked %v does not read: %v", ds, err)
		}
		if diff := cmp.Diff(ds, back, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b float64) bool { return a == b || (a != a && b != b) })); diff != "" {
			t.Fatalf("(-first +again):\n%s", diff)
		}
	})
}
