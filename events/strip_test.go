package events_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
)

// TestAppendWithoutPersonal removes the personal fields of every example, in both
// forms, and compares with removing them from the decoded document.
func TestAppendWithoutPersonal(t *testing.T) {
	v := testValidator(t, events.DefaultLimits())
	door := events.NewDoor(events.DefaultLayout(), v, newMemKeys(), true)
	valid, _ := examples(t)
	var stripped int
	for _, ex := range valid {
		e := wrap(ex.schema, ex.Name, ex.Data)
		msgs, errs := door.Prepare(t.Context(), []*events.Event{e})
		if errs[0] != nil {
			t.Fatalf("%s: %v", ex.name(), errs[0])
		}
		var stored events.Event
		if err := json.Unmarshal(msgs[0].Body, &stored); err != nil {
			t.Fatal(err)
		}
		for form, data := range map[string][]byte{"stored": stored.Data, "clear": compact(t, ex.Data)} {
			got, ok := ex.schema.AppendWithoutPersonal([]byte("prefix"), data)
			if !ok {
				t.Errorf("%s (%s): not taken", ex.name(), form)
				continue
			}
			if !strings.HasPrefix(string(got), "prefix") {
				t.Fatalf("%s: did not append", ex.name())
			}
			got = got[len("prefix"):]
			var gotDoc, want map[string]any
			if err := json.Unmarshal(got, &gotDoc); err != nil {
				t.Fatalf("%s (%s): %v: %s", ex.name(), form, err, got)
			}
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			for _, ptr := range ex.schema.Personal {
				deletePointer(want, ptr)
			}
			if diff := cmp.Diff(want, gotDoc); diff != "" {
				t.Errorf("%s (%s): (-want +got)\n%s", ex.name(), form, diff)
			}
			if len(ex.schema.Personal) > 0 && len(got) < len(data) {
				stripped++
			}
		}
	}
	if stripped == 0 {
		t.Fatal("no example had a personal field to remove")
	}
	s, _ := testCatalog(t).Latest(events.TypeCustomerRegistered)
	for _, bad := range []string{`{"a": 1}`, `{"a":1,"a":2}`, `not json`} {
		if _, ok := s.AppendWithoutPersonal(nil, []byte(bad)); ok {
			t.Errorf("%q: taken, want the caller's fallback", bad)
		}
	}
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out strings.Builder
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return []byte(strings.TrimSpace(out.String()))
}

func deletePointer(doc map[string]any, ptr string) {
	toks := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	cur := doc
	for _, tok := range toks[:len(toks)-1] {
		next, ok := cur[tok].(map[string]any)
		if !ok {
			return
		}
		cur = next
	}
	delete(cur, toks[len(toks)-1])
}
