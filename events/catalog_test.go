package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/schemas"
)

// testPartitions is the partition count of the validators in these tests; partition-wide
// examples are addressed to testPartition.
const (
	testPartitions = 64
	testPartition  = 3
	testCustomer   = "C-1001"
)

// testNow is the clock of every validator in these tests.
var testNow = time.Date(2026, 11, 15, 10, 30, 0, 0, time.FixedZone("CST", 8*3600))

func testCatalog(t testing.TB) *events.Catalog {
	t.Helper()
	cat, err := events.DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func testValidator(t testing.TB, limits events.Limits) *events.Validator {
	t.Helper()
	return events.NewValidator(testCatalog(t), testPartitions, limits, func() time.Time { return testNow })
}

// wrap puts an example payload in an envelope: the customer testCustomer, or for a
// partition-wide type the partition testPartition.
func wrap(s *events.Schema, name string, data json.RawMessage) *events.Event {
	e := &events.Event{
		ID:         "ex-" + name,
		Source:     "urn:touchstream:test",
		Type:       s.Type,
		Time:       testNow,
		DataSchema: s.URI,
		Data:       data,
	}
	if s.Scope == schemas.ScopePartition {
		e.Partition = testPartition
	} else {
		e.Subject = testCustomer
	}
	return e
}

type example struct {
	schema *events.Schema
	schemas.Example
}

func (ex example) name() string { return ex.schema.Type + "/" + ex.Name }

func examples(t testing.TB) (valid, invalid []example) {
	t.Helper()
	for _, s := range testCatalog(t).Schemas() {
		v, inv, err := schemas.Examples(s.Type, s.Major)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range v {
			valid = append(valid, example{s, e})
		}
		for _, e := range inv {
			invalid = append(invalid, example{s, e})
		}
	}
	if len(valid) == 0 || len(invalid) == 0 {
		t.Fatal("no examples in the catalog")
	}
	return valid, invalid
}

func fieldsOf(t testing.TB, err error) []string {
	t.Helper()
	var fe events.FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a FieldErrors", err, err)
	}
	var out []string
	for _, f := range fe {
		if !slices.Contains(out, f.Field) {
			out = append(out, f.Field)
		}
	}
	slices.Sort(out)
	return out
}

// jsonValue decodes JSON for comparison: equal values are equal whatever their spacing
// and key order.
func jsonValue(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

func TestValidExamplesPass(t *testing.T) {
	v := testValidator(t, events.DefaultLimits())
	valid, _ := examples(t)
	for _, ex := range valid {
		t.Run(ex.name(), func(t *testing.T) {
			c, err := v.CheckInput(wrap(ex.schema, ex.Name, ex.Data))
			if err != nil {
				t.Fatal(err)
			}
			if c.Schema != ex.schema {
				t.Errorf("checked against %s, want %s", c.Schema.URI, ex.schema.URI)
			}
		})
	}
}

func TestInvalidExamplesRefused(t *testing.T) {
	v := testValidator(t, events.DefaultLimits())
	_, invalid := examples(t)
	for _, ex := range invalid {
		t.Run(ex.name(), func(t *testing.T) {
			_, err := v.CheckInput(wrap(ex.schema, ex.Name, ex.Data))
			if err == nil {
				t.Fatalf("accepted, want %s refused", "/data"+ex.Field)
			}
			if !errors.Is(err, events.ErrInvalid) || errors.Is(err, events.ErrUnknownType) {
				t.Errorf("error %v: want ErrInvalid only", err)
			}
			if diff := cmp.Diff([]string{"/data" + ex.Field}, fieldsOf(t, err)); diff != "" {
				t.Errorf("refused fields (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

// TestGoTypesRoundTrip decodes every valid example into its Go type strictly (an unknown
// field fails), encodes it again and checks the result is the same JSON and still valid:
// the Go types and the schemas agree field for field.
func TestGoTypesRoundTrip(t *testing.T) {
	v := testValidator(t, events.DefaultLimits())
	valid, _ := examples(t)
	for _, ex := range valid {
		t.Run(ex.name(), func(t *testing.T) {
			p, ok := events.NewPayload(ex.schema.Type, ex.schema.Major)
			if !ok {
				t.Fatalf("no Go type for %s v%d", ex.schema.Type, ex.schema.Major)
			}
			e := wrap(ex.schema, ex.Name, ex.Data)
			if err := events.DecodeData(e, p); err != nil {
				t.Fatal(err)
			}
			again, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(jsonValue(t, ex.Data), jsonValue(t, again)); diff != "" {
				t.Errorf("re-encoded payload differs (-example +go):\n%s", diff)
			}
			if _, err := v.CheckInput(wrap(ex.schema, ex.Name, again)); err != nil {
				t.Errorf("re-encoded payload refused: %v", err)
			}
			// The same through Decode and NewEvent, the SDK's path. Decode reads an older
			// version as the current one: compare with the upcast payload.
			want := p
			if cur := events.CurrentMajor(ex.schema.Type, ex.schema.Major); cur != ex.schema.Major {
				up, major, err := events.Upcast(ex.schema.Type, ex.schema.Major, ex.Data)
				if err != nil || major != cur {
					t.Fatalf("Upcast to v%d: v%d, %v", cur, major, err)
				}
				want, _ = events.NewPayload(ex.schema.Type, cur)
				if err := events.DecodeData(&events.Event{Type: ex.schema.Type, Data: up}, want); err != nil {
					t.Fatal(err)
				}
			}
			d, err := events.Decode(e)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, d, cmp.Exporter(func(reflect.Type) bool { return true })); diff != "" {
				t.Errorf("Decode differs from NewPayload+DecodeData (-want +got):\n%s", diff)
			}
			if ex.schema.Scope == schemas.ScopePartition {
				evs, err := events.NewPartitionEvents(testPartitions, testNow, d)
				if err != nil {
					t.Fatal(err)
				}
				e = evs[testPartition]
			} else if e, err = events.NewEvent(testCustomer, testNow, d); err != nil {
				t.Fatal(err)
			}
			e.Source = "urn:touchstream:test"
			if _, err := v.CheckInput(e); err != nil {
				t.Errorf("NewEvent: %v", err)
			}
		})
	}
}

func TestNewPayloadCoversCatalog(t *testing.T) {
	for _, s := range testCatalog(t).Schemas() {
		t.Run(s.Type, func(t *testing.T) {
			p, ok := events.NewPayload(s.Type, s.Major)
			if !ok {
				t.Fatalf("NewPayload(%q, %d): no Go type", s.Type, s.Major)
			}
			if p.EventType() != s.Type || p.SchemaMajor() != s.Major {
				t.Errorf("Go type says %s v%d, schema is %s v%d", p.EventType(), p.SchemaMajor(), s.Type, s.Major)
			}
			if reflect.TypeOf(p).Kind() != reflect.Pointer {
				t.Errorf("NewPayload returned %T, want a pointer to decode into", p)
			}
		})
	}
	for _, tt := range []struct {
		eventType string
		major     int
	}{{"recharge.completed", 3}, {"customer.registered", 2}, {"recharge.completed", 0}, {"loyalty.boosted", 1}, {"", 1}} {
		if p, ok := events.NewPayload(tt.eventType, tt.major); ok {
			t.Errorf("NewPayload(%q, %d) = %T, want none", tt.eventType, tt.major, p)
		}
	}
}

// TestGoFieldsMatchSchema checks each Go type's top-level JSON names against the
// schema's properties, and that a field is omitted when empty exactly when the schema
// does not require it (nested objects are the shared Money, Plan and EventRef, covered
// by the round trip).
func TestGoFieldsMatchSchema(t *testing.T) {
	for _, s := range testCatalog(t).Schemas() {
		t.Run(s.Type, func(t *testing.T) {
			var doc struct {
				Required   []string                   `json:"required"`
				Properties map[string]json.RawMessage `json:"properties"`
			}
			if err := json.Unmarshal(s.Input, &doc); err != nil {
				t.Fatal(err)
			}
			p, _ := events.NewPayload(s.Type, s.Major)
			typ := reflect.TypeOf(p).Elem()
			var goRequired, goOptional []string
			for f := range typ.Fields() {
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				if name == "" || name == "-" {
					t.Errorf("field %s has no JSON name", f.Name)
					continue
				}
				if strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
					goOptional = append(goOptional, name)
				} else {
					goRequired = append(goRequired, name)
				}
			}
			var schemaOptional []string
			for name := range doc.Properties {
				if !slices.Contains(doc.Required, name) {
					schemaOptional = append(schemaOptional, name)
				}
			}
			sorted := cmp.Transformer("sort", func(in []string) []string { return slices.Sorted(slices.Values(in)) })
			if diff := cmp.Diff(doc.Required, goRequired, sorted); diff != "" {
				t.Errorf("required fields (-schema +go):\n%s", diff)
			}
			if diff := cmp.Diff(schemaOptional, goOptional, sorted); diff != "" {
				t.Errorf("optional fields (-schema +go):\n%s", diff)
			}
		})
	}
}

var personalType = reflect.TypeFor[events.Personal]()

// personalPointers lists the JSON pointers of the events.Personal fields of a struct.
func personalPointers(typ reflect.Type, prefix string) []string {
	var out []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == personalType:
			out = append(out, prefix+"/"+name)
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]():
			out = append(out, personalPointers(ft, prefix+"/"+name)...)
		}
	}
	return out
}

func TestPersonalFieldsMatchSchema(t *testing.T) {
	for _, s := range testCatalog(t).Schemas() {
		t.Run(s.Type, func(t *testing.T) {
			p, _ := events.NewPayload(s.Type, s.Major)
			got := personalPointers(reflect.TypeOf(p).Elem(), "")
			slices.Sort(got)
			if diff := cmp.Diff(s.Personal, got, cmp.Comparer(func(a, b []string) bool { return slices.Equal(a, b) })); diff != "" {
				t.Errorf("personal fields (-schema +go):\n%s", diff)
			}
		})
	}
}

// pointerValue resolves a JSON pointer in a decoded document.
func pointerValue(doc any, pointer string) (any, bool) {
	cur := doc
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// TestSealedExamples seals every valid example of a type with personal fields through
// the Door, as the gateway and the SDK do, and checks the stored message: it passes
// CheckStored, holds no clear personal value, decodes into the Go type with sealed
// values, and Reveal restores the clear payload.
func TestSealedExamples(t *testing.T) {
	v := testValidator(t, events.DefaultLimits())
	keys := newMemKeys()
	layout := events.DefaultLayout()
	door := events.NewDoor(layout, v, keys, true)
	sealer := events.NewSealer(keys)
	valid, _ := examples(t)
	var sealed int
	for _, ex := range valid {
		if !ex.schema.HasPersonal() {
			continue
		}
		t.Run(ex.name(), func(t *testing.T) {
			ctx := t.Context()
			in := wrap(ex.schema, ex.Name, ex.Data)
			msgs, errs := door.Prepare(ctx, []*events.Event{in})
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
			m := msgs[0]
			if want := layout.Subject(layout.PartitionOf(testCustomer), ex.schema.Type); m.Subject != want {
				t.Errorf("subject %s, want %s", m.Subject, want)
			}
			clear := jsonValue(t, ex.Data)
			var present []string
			for _, p := range ex.schema.Personal {
				v, ok := pointerValue(clear, p)
				if !ok {
					continue
				}
				present = append(present, p)
				if s := v.(string); bytes.Contains(m.Body, []byte(s)) {
					t.Errorf("stored message holds %s in clear: %s", p, m.Body)
				}
			}
			var stored events.Event
			if err := json.Unmarshal(m.Body, &stored); err != nil {
				t.Fatal(err)
			}
			if _, err := v.CheckStored(&stored); err != nil {
				t.Fatalf("stored form refused: %v\n%s", err, m.Body)
			}
			if _, err := v.CheckStored(in); err == nil && len(present) > 0 {
				t.Errorf("CheckStored accepted the clear input form")
			}
			p, err := events.Decode(&stored)
			if err != nil {
				t.Fatal(err)
			}
			pv := reflect.ValueOf(p).Elem()
			for f := range pv.Type().Fields() {
				if f.Type != personalType {
					continue
				}
				pers := pv.FieldByIndex(f.Index).Interface().(events.Personal)
				if !pers.IsZero() && (pers.Sealed() == nil || pers.Reveal() != "") {
					t.Errorf("decoded %s is not sealed", f.Name)
				}
			}
			opened, err := sealer.Reveal(ctx, ex.schema, &stored)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(clear, jsonValue(t, opened)); diff != "" {
				t.Errorf("revealed payload differs (-example +revealed):\n%s", diff)
			}
		})
		sealed++
	}
	if sealed == 0 {
		t.Fatal("no example with personal fields")
	}
}

// TestSealLongestPersonal fills every free-text personal field with its longest value of
// 4-byte characters: what the input form accepts must seal into a valid stored form.
func TestSealLongestPersonal(t *testing.T) {
	v := testValidator(t, events.DefaultLimits())
	door := events.NewDoor(events.DefaultLayout(), v, newMemKeys(), true)
	valid, _ := examples(t)
	seen := map[string]bool{}
	for _, ex := range valid {
		if !ex.schema.HasPersonal() || seen[ex.schema.Type] {
			continue
		}
		seen[ex.schema.Type] = true
		t.Run(ex.schema.Type, func(t *testing.T) {
			var doc struct {
				Properties map[string]struct {
					MaxLength int    `json:"maxLength"`
					Pattern   string `json:"pattern"`
				} `json:"properties"`
			}
			if err := json.Unmarshal(ex.schema.Input, &doc); err != nil {
				t.Fatal(err)
			}
			data := jsonValue(t, ex.Data).(map[string]any)
			var filled int
			for _, p := range ex.schema.Personal {
				prop := doc.Properties[strings.TrimPrefix(p, "/")]
				if prop.Pattern != "" {
					continue // digits only: the length bound is the pattern's
				}
				data[strings.TrimPrefix(p, "/")] = strings.Repeat("𠀀", prop.MaxLength)
				filled++
			}
			if filled == 0 {
				return // only digit-pattern personal fields (an IMEI): nothing longer to try
			}
			b, err := json.Marshal(data)
			if err != nil {
				t.Fatal(err)
			}
			msgs, errs := door.Prepare(t.Context(), []*events.Event{wrap(ex.schema, ex.Name, b)})
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
			var stored events.Event
			if err := json.Unmarshal(msgs[0].Body, &stored); err != nil {
				t.Fatal(err)
			}
			if _, err := v.CheckStored(&stored); err != nil {
				t.Errorf("sealed longest value refused by the stored form: %v", err)
			}
		})
	}
}
