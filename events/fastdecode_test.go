package events_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/touchstream/touchstream/events"
)

// fastSeeds are events in both forms: every valid example, and its stored form with
// sealed personal fields.
func fastSeeds(t testing.TB) [][]byte {
	t.Helper()
	v := testValidator(t, events.DefaultLimits())
	door := events.NewDoor(events.DefaultLayout(), v, newMemKeys(), true)
	valid, _ := examples(t)
	var out [][]byte
	for _, ex := range valid {
		e := wrap(ex.schema, ex.Name, ex.Data)
		out = append(out, e.AppendJSON(nil))
		msgs, errs := door.Prepare(t.Context(), []*events.Event{e})
		if errs[0] != nil {
			t.Fatalf("%s: %v", ex.name(), errs[0])
		}
		out = append(out, msgs[0].Body)
	}
	return out
}

// TestFastDecodeTakesTheLog checks that the fast paths decode what the log holds (the
// stored form of every example) and agree with the reference decoders on it.
func TestFastDecodeTakesTheLog(t *testing.T) {
	seeds := fastSeeds(t)
	var payloads, stored int
	for i, b := range seeds {
		fast, err := events.CompareFastDecode(b)
		if err != nil {
			t.Errorf("seed %d: %v\n%s", i, err, b)
		}
		if !slices.Contains(fast, "envelope") {
			t.Errorf("seed %d: the fast envelope decoder gave up on a canonical event:\n%s", i, b)
		}
		if slices.Contains(fast, "payload") {
			payloads++
		}
		if slices.Contains(fast, "stored") {
			stored++
		}
	}
	// Every example decodes with ReadStored except the clear forms of personal types
	// (refused as stored events): most must be decoded in its one pass.
	t.Logf("ReadStored decoded %d of %d examples in one pass", stored, len(seeds))
	if stored < len(seeds)*3/4 {
		t.Errorf("ReadStored decoded %d of %d examples in one pass", stored, len(seeds))
	}
	t.Logf("fast payload decoding took %d of %d examples", payloads, len(seeds))
	// Payloads may legitimately fall back (an escaped string, a null), but not most.
	if payloads < len(seeds)*3/4 {
		t.Errorf("the fast payload decoder took %d of %d examples", payloads, len(seeds))
	}
	// Inputs the fast paths must leave to the reference decoders.
	for _, c := range []struct{ name, in, gives string }{
		{"key in another case", `{"specversion":"1.0","ID":"x","id":"y","data":{}}`, ""},
		{"escaped string", `{"specversion":"1.0","id":"a\u0062","data":{}}`, ""},
		{"repeated key", `{"specversion":"1.0","id":"a","id":"b","data":{}}`, ""},
		{"partition not an integer", `{"specversion":"1.0","id":"a","partition":1.0,"data":{}}`, ""},
		{"null data", `{"specversion":"1.0","id":"a","data":null}`, ""},
		{"trailing bytes", `{"specversion":"1.0","id":"a","data":{}} x`, ""},
		{"field in another case", `{"dataschema":"https://touchstream.dev/schemas/store.visited/v1","data":{"Store_ID":"S1"}}`, "envelope"},
		{"null field", `{"dataschema":"https://touchstream.dev/schemas/store.visited/v1","data":{"store_id":null}}`, "envelope"},
		{"fraction in an integer", `{"dataschema":"https://touchstream.dev/schemas/store.visited/v1","data":{"duration_seconds":1.5}}`, "envelope"},
		{"unknown sealed member", `{"dataschema":"https://touchstream.dev/schemas/customer.registered/v1","data":{"name":{"alg":"A","x":"y"}}}`, "envelope"},
	} {
		fast, err := events.CompareFastDecode([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if got := strings.Join(fast, ","); got != c.gives {
			t.Errorf("%s: fast paths %q, want %q", c.name, got, c.gives)
		}
	}
}

// FuzzFastDecode holds the fast decoders to the reference decoders: whatever they
// accept must decode to exactly what encoding/json decodes.
func FuzzFastDecode(f *testing.F) {
	for _, b := range fastSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := events.CompareFastDecode(b); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkReadStored reads the examples' stored forms as the projections do: one
// pass (ReadStored), beside the three calls it stands for.
func BenchmarkReadStored(b *testing.B) {
	v := testValidator(b, events.DefaultLimits())
	var stored [][]byte
	for _, m := range fastSeeds(b) {
		var e events.Event
		if _, _, err := v.ReadStored(m, &e, nil); err == nil {
			stored = append(stored, m)
		}
	}
	b.Run("one-pass", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			var e events.Event
			if _, p, err := v.ReadStored(stored[i%len(stored)], &e, nil); err != nil {
				b.Fatal(err)
			} else if p == nil {
				if _, err := events.Decode(&e); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("three-calls", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			var e events.Event
			if err := e.UnmarshalJSON(stored[i%len(stored)]); err != nil {
				b.Fatal(err)
			}
			if _, err := v.CheckStored(&e); err != nil {
				b.Fatal(err)
			}
			if _, err := events.Decode(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
