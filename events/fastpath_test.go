package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/touchstream/touchstream/schemas"
)

// The door's fast path (jsonscan.go, fastschema.go, goshape.go) may only ever accept
// what the original path accepts: these tests hold it to that on every example of the
// catalog and on many variations of them, and the fuzzers on arbitrary payloads.

var fastNow = time.Date(2026, 11, 15, 10, 30, 0, 0, time.UTC)

func fastValidator(t testing.TB) *Validator {
	t.Helper()
	cat, err := DefaultCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return NewValidator(cat, 64, DefaultLimits(), func() time.Time { return fastNow })
}

func fastEvent(s *Schema, data []byte) *Event {
	e := &Event{ID: "1", Source: "urn:test", Type: s.Type, Time: fastNow, DataSchema: s.URI, Data: data}
	if s.Scope == schemas.ScopePartition {
		e.Partition = 3
	} else {
		e.Subject = "C-1"
	}
	return e
}

// fastInput reports whether the fast path accepts data as the input form of s.
func fastInput(s *Schema, data []byte) bool {
	c := Checked{Event: fastEvent(s, data), Schema: s}
	return c.readFast(true)
}

// checkAgreement fails the test if the fast path accepts data and the original path
// does not, and reports whether the fast path accepted it.
func checkAgreement(t *testing.T, v *Validator, s *Schema, data []byte) bool {
	t.Helper()
	fast := fastInput(s, data)
	_, slowErr := v.checkInputSlow(fastEvent(s, data), s)
	if fast && slowErr != nil {
		t.Errorf("%s: the fast path accepts what the original path refuses (%v):\n%s", s.Type, slowErr, data)
	}
	return fast
}

// variants returns payloads derived from a valid one: each member, at any depth,
// replaced by awkward values, removed, or joined by an unknown member.
func variants(t *testing.T, data []byte) [][]byte {
	t.Helper()
	values := []string{
		`""`, `"x"`, `" "`, `"\u0041BC"`, `"A\"B"`, `"CNY"`, `"cny"`, `"2026-11-15T10:30:00+08:00"`, `"2026-11-15t10:30:00+08:00"`,
		`"2016-12-31T23:59:60Z"`, `"2026-11-15T10:30:00"`, `"2026-11-15"`, `"2026-02-30"`, `"2026-11"`, `"P-1"`, `"a b"`,
		`"` + strings.Repeat("x", 65) + `"`, `"` + strings.Repeat("中", 129) + `"`, `"\ud800"`, "\"\xff\"", `"+8613800138000"`,
		`0`, `-0`, `1`, `-1`, `5`, `6`, `1.0`, `1e2`, `1E+2`, `1.5`, `0.5`, `-0.5`, `100000000000`, `100000000001`, `-100000000000`,
		`-100000000001`, `99999999999999999999`, `9223372036854775807`, `1e400`, `86400`, `86401`, `100000000`, `100000000.5`,
		`true`, `false`, `null`, `{}`, `[]`, `[1]`, `{"fen":1,"currency":"CNY"}`, `{"fen":0,"currency":"CNY"}`,
		`{"fen":1.0,"currency":"CNY"}`, `{"fen":1,"currency":"CNY","x":1}`, `{"source":"s","id":"i"}`,
		`{"alg":"A256GCM","kid":"k","n":"AAAAAAAAAAAAAAAA","ct":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	add := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	var walk func(m map[string]any)
	walk = func(m map[string]any) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			old := m[k]
			for _, raw := range values {
				m[k] = json.RawMessage(raw)
				add(doc)
			}
			delete(m, k)
			add(doc)
			m[k] = old
			if sub, ok := old.(map[string]any); ok {
				walk(sub)
			}
		}
		m["unknown_member"] = 1
		add(doc)
		delete(m, "unknown_member")
	}
	walk(doc)
	// Spacing, escapes and repeated keys, which the reader treats apart.
	out = append(out, bytes.ReplaceAll(data, []byte(`,`), []byte(" ,\n\t")))
	if i := bytes.IndexByte(data, '{'); i >= 0 && len(data) > i+1 {
		dup := slices.Concat(data[:i+1], []byte(`"recharge_id":"R-1",`), data[i+1:])
		out = append(out, dup)
	}
	return out
}

func TestFastPathAgrees(t *testing.T) {
	v := fastValidator(t)
	var fast, total int
	for _, s := range v.cat.Schemas() {
		valid, invalid, err := schemas.Examples(s.Type, s.Major)
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range valid {
			if !checkAgreement(t, v, s, ex.Data) {
				t.Errorf("%s/%s: a valid example takes the original path", s.Type, ex.Name)
			}
			for _, b := range variants(t, ex.Data) {
				total++
				if checkAgreement(t, v, s, b) {
					fast++
				}
			}
		}
		for _, ex := range invalid {
			if fastInput(s, ex.Data) {
				t.Errorf("%s/%s: the fast path accepts an invalid example", s.Type, ex.Name)
			}
		}
	}
	t.Logf("%d of %d variants accepted by the fast path", fast, total)
}

// TestFastStoredAgrees checks the stored form the same way, on sealed examples.
func TestFastStoredAgrees(t *testing.T) {
	v := fastValidator(t)
	door := NewDoor(DefaultLayout(), v, &fastKeys{}, true)
	for _, s := range v.cat.Schemas() {
		valid, _, err := schemas.Examples(s.Type, s.Major)
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range valid {
			msgs, errs := door.Prepare(t.Context(), []*Event{fastEvent(s, ex.Data)})
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
			var stored Event
			if err := json.Unmarshal(msgs[0].Body, &stored); err != nil {
				t.Fatal(err)
			}
			if !storedFast(s, stored.Data) {
				t.Errorf("%s/%s: a valid stored form takes the original path", s.Type, ex.Name)
			}
			for _, b := range append(variants(t, stored.Data), ex.Data) {
				if !storedFast(s, b) {
					continue
				}
				doc, err := parseData(b)
				if err == nil {
					err = s.stored.Validate(doc)
				}
				if err != nil {
					t.Errorf("%s: the fast path accepts a stored form the library refuses (%v):\n%s", s.Type, err, b)
				}
			}
		}
	}
}

// TestFastSealMatchesOriginal seals every valid example both ways and compares the
// stored payloads, sealed values aside.
func TestFastSealMatchesOriginal(t *testing.T) {
	v := fastValidator(t)
	keys := &fastKeys{}
	sealer := NewSealer(keys)
	for _, s := range v.cat.Schemas() {
		if !s.HasPersonal() {
			continue
		}
		valid, _, err := schemas.Examples(s.Type, s.Major)
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range valid {
			for _, data := range [][]byte{ex.Data, compact(t, ex.Data)} {
				e := fastEvent(s, data)
				var fast Checked
				if err := v.checkInput(e, &fast); err != nil || !fast.read {
					t.Fatalf("%s/%s: not on the fast path: %v", s.Type, ex.Name, err)
				}
				doc, err := v.checkInputSlow(e, s)
				if err != nil {
					t.Fatal(err)
				}
				slow := Checked{Event: e, Schema: s, doc: doc}
				got, err := sealer.SealAll(t.Context(), []*Checked{&fast, &slow})
				if err != nil {
					t.Fatal(err)
				}
				if !json.Valid(got[0]) || !bytes.Equal(got[0], compact(t, got[0])) {
					t.Errorf("%s/%s: fast path sealed payload is not compact JSON: %s", s.Type, ex.Name, got[0])
				}
				if diff := sealedShape(t, got[0]); diff != sealedShape(t, got[1]) {
					t.Errorf("%s/%s: stored payloads differ:\nfast %s\norig %s", s.Type, ex.Name, got[0], got[1])
				}
				for _, b := range got {
					stored := *e
					stored.Data = b
					clear, err := sealer.Reveal(t.Context(), s, &stored)
					if err != nil {
						t.Fatal(err)
					}
					var want, have any
					_ = json.Unmarshal(data, &want)
					_ = json.Unmarshal(clear, &have)
					if !reflect.DeepEqual(want, have) {
						t.Errorf("%s/%s: revealed %s, want %s", s.Type, ex.Name, clear, data)
					}
				}
			}
		}
	}
}

func compact(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sealedShape is a payload with its sealed values' nonces and ciphertexts blanked, in
// a canonical encoding.
func sealedShape(t testing.TB, b []byte) string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var blank func(v any)
	blank = func(v any) {
		if m, ok := v.(map[string]any); ok {
			if _, sealed := m["ct"]; sealed {
				m["ct"], m["n"] = "", ""
			}
			for _, c := range m {
				blank(c)
			}
		}
	}
	blank(doc)
	out, _ := json.Marshal(doc)
	return string(out)
}

// fastKeys is a fixed key per customer.
type fastKeys struct{}

func (fastKeys) CustomerKeys(_ context.Context, cs []string) (map[string]DataKey, error) {
	out := map[string]DataKey{}
	for _, c := range cs {
		out[c] = DataKey{ID: "k-" + c, Customer: c, Key: bytes.Repeat([]byte{7}, 32)}
	}
	return out, nil
}

func (fastKeys) KeysByID(_ context.Context, ids []string) (map[string]DataKey, error) {
	out := map[string]DataKey{}
	for _, id := range ids {
		c := strings.TrimPrefix(id, "k-")
		out[id] = DataKey{ID: id, Customer: c, Key: bytes.Repeat([]byte{7}, 32)}
	}
	return out, nil
}

// nodeValue rebuilds what encoding/json decodes (with UseNumber) from the nodes.
func nodeValue(doc *jsonDoc, i int) any {
	n := &doc.nodes[i]
	switch n.kind {
	case jsonNull:
		return nil
	case jsonFalse:
		return false
	case jsonTrue:
		return true
	case jsonNumber:
		return json.Number(doc.bytes(i))
	case jsonString:
		var s string
		if err := json.Unmarshal(doc.raw(i), &s); err != nil {
			panic(err)
		}
		if !n.escaped && s != string(doc.bytes(i)) {
			panic(fmt.Sprintf("string %q is not marked escaped but decodes to %q", doc.bytes(i), s))
		}
		return s
	case jsonArray:
		out := []any{}
		j := i + 1
		for range n.members {
			out = append(out, nodeValue(doc, j))
			j += int(doc.nodes[j].size)
		}
		return out
	}
	out := map[string]any{}
	j := i + 1
	for range n.members {
		out[nodeValue(doc, j).(string)] = nodeValue(doc, j+1)
		j = j + 1 + int(doc.nodes[j+1].size)
	}
	return out
}

func depth(b []byte) int {
	d, m := 0, 0
	for _, c := range b {
		switch c {
		case '[', '{':
			d++
			m = max(m, d)
		case ']', '}':
			d--
		}
	}
	return m
}

// FuzzParseJSON holds the reader to encoding/json: it accepts what json.Valid accepts
// (within its depth), decodes to the same value, and calls compact only what
// json.Compact leaves unchanged.
func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,2.5e-3,"x\u00e9\n",true,false,null]}`, ` { "a" : 1 } `, `{"a":1,"a":2}`,
		`"\ud83d\ude00"`, "\"\xff\"", `-0`, `01`, `1.`, `{"a":}`, `[1,]`, `{"\u0061":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		doc := &jsonDoc{}
		ok := parseJSON(doc, b)
		if depth(b) <= maxScanDepth && ok != json.Valid(b) {
			t.Fatalf("parseJSON = %v, json.Valid = %v: %q", ok, json.Valid(b), b)
		}
		if !ok {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("parseJSON accepts invalid JSON %q", b)
		}
		if doc.compact && !bytes.Equal(b, compact(t, b)) {
			t.Fatalf("%q is not compact", b)
		}
		want, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if got := nodeValue(doc, 0); doc.plain && !reflect.DeepEqual(got, want) {
			t.Fatalf("nodes decode to %#v, encoding/json to %#v", got, want)
		}
		if int(doc.nodes[0].size) != len(doc.nodes) {
			t.Fatalf("root covers %d of %d nodes", doc.nodes[0].size, len(doc.nodes))
		}
	})
}

// FuzzFastPath holds the fast path to the original one on arbitrary payloads of every
// type.
func FuzzFastPath(f *testing.F) {
	v := fastValidator(f)
	all := v.cat.Schemas()
	for i, s := range all {
		valid, invalid, err := schemas.Examples(s.Type, s.Major)
		if err != nil {
			f.Fatal(err)
		}
		for _, ex := range slices.Concat(valid, invalid) {
			f.Add(uint8(i), []byte(ex.Data))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		s := all[int(which)%len(all)]
		checkAgreement(t, v, s, b)
		if storedFast(s, b) {
			doc, err := parseData(b)
			if err == nil {
				err = s.stored.Validate(doc)
			}
			if err != nil {
				t.Errorf("%s: the fast path accepts a stored form the library refuses (%v): %s", s.Type, err, b)
			}
		}
	})
}
