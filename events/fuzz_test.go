package events_test

import (
	"encoding/json"
	"testing"

	"github.com/touchstream/touchstream/events"
)

// FuzzDecodeEvent feeds arbitrary bytes through what a consumer and the gateway do with
// a structured-mode event: decode the envelope, validate it in both forms, decode the
// payload. None of it may panic, whatever the input.
func FuzzDecodeEvent(f *testing.F) {
	v := testValidator(f, events.DefaultLimits())
	door := events.NewDoor(events.DefaultLayout(), v, newMemKeys(), true)
	valid, _ := examples(f)
	for _, ex := range valid {
		e := wrap(ex.schema, ex.Name, ex.Data)
		f.Add(e.AppendJSON(nil))
		msgs, errs := door.Prepare(f.Context(), []*events.Event{e})
		if errs[0] != nil {
			f.Fatalf("%s: %v", ex.name(), errs[0])
		}
		f.Add(msgs[0].Body) // the stored form
	}
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"x.y","partition":-1,"time":"2026-11-15T10:30:00Z","dataschema":"https://touchstream.dev/schemas/x.y/v1","data":null}`))
	f.Add([]byte(`{"data":{"name":{"alg":"A256GCM","kid":"k","n":"AAAAAAAAAAAAAAAA","ct":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e events.Event
		_ = json.Unmarshal(b, &e) // checks run on whatever could be read
		_, _ = v.CheckInput(&e)
		if _, err := v.CheckStored(&e); err == nil {
			_, _ = events.Decode(&e)
		}
		_, _ = events.Decode(&e)
		_ = e.AppendJSON(nil)
		_ = e.DedupKey()
	})
}
