package schemas

import (
	"encoding/json"
	"io/fs"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The schemas module has no dependencies, not even for its tests: comparisons use the
// standard library (the events module's tests use go-cmp).

// catalogTypes is the event catalog. A type added without being listed here, or
// listed without its directory, fails TestCatalogComplete.
var catalogTypes = []string{
	"alert.acknowledged",
	"alert.closed",
	"bill.adjusted",
	"bill.issued",
	"bill.paid",
	"call.completed",
	"churn.model_activated",
	"clock.ticked",
	"complaint.opened",
	"complaint.resolved",
	"customer.erased",
	"customer.registered",
	"customer.updated",
	"deadletter.discarded",
	"device.changed",
	"event.retracted",
	"loyalty.rules_activated",
	"network.incident",
	"number.port_out_requested",
	"offer.accepted",
	"offer.presented",
	"plan.changed",
	"points.adjusted",
	"points.redeemed",
	"recharge.completed",
	"recharge.reversed",
	"store.visited",
	"subscription.terminated",
	"survey.answered",
	"usage.summarized",
}

func TestCatalogComplete(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	majors := map[string]int{}
	for _, s := range all {
		if !slices.Contains(got, s.Type) {
			got = append(got, s.Type)
		}
		// Versions are v1, v2, ... without gaps: an upcaster goes from each to the next.
		if majors[s.Type]++; s.Major != majors[s.Type] {
			t.Errorf("%s: found v%d where v%d was expected: versions start at 1 and leave no gap", s.Type, s.Major, majors[s.Type])
		}
	}
	if !slices.Equal(got, catalogTypes) {
		t.Fatalf("types in the catalog:\n got %v\nwant %v", got, catalogTypes)
	}
	dirs, err := fs.ReadDir(files, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if d.IsDir() && d.Name() != "common" && !slices.Contains(catalogTypes, d.Name()) {
			t.Errorf("directory %s is not in the catalog list", d.Name())
		}
	}
}

func TestSchemaFiles(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		version := "v" + strconv.Itoa(s.Major)
		t.Run(s.Type+"/"+version, func(t *testing.T) {
			if toks := strings.Split(s.Type, "."); len(toks) != 2 {
				t.Errorf("type %q has %d tokens, want noun.verb", s.Type, len(toks))
			}
			var head struct {
				Schema      string          `json:"$schema"`
				ID          string          `json:"$id"`
				Title       string          `json:"title"`
				Description string          `json:"description"`
				Type        string          `json:"type"`
				Additional  *bool           `json:"additionalProperties"`
				Properties  json.RawMessage `json:"properties"`
			}
			if err := json.Unmarshal(s.Input, &head); err != nil {
				t.Fatal(err)
			}
			if want := "https://json-schema.org/draft/2020-12/schema"; head.Schema != want {
				t.Errorf("$schema %q, want %q", head.Schema, want)
			}
			if want := "https://touchstream.dev/schemas/" + s.Type + "/" + version; head.ID != want || s.URI != want {
				t.Errorf("$id %q, URI %q, want %q", head.ID, s.URI, want)
			}
			if want := s.Type + " " + version; head.Title != want {
				t.Errorf("title %q, want %q", head.Title, want)
			}
			if !strings.Contains(head.Description, "Published") {
				t.Errorf("description does not say who publishes it: %q", head.Description)
			}
			if head.Type != "object" || head.Additional == nil || *head.Additional || len(head.Properties) == 0 {
				t.Errorf("want a closed object schema (type object, additionalProperties false, properties)")
			}
			for _, obj := range objectSchemas(t, s.Input) {
				if obj.additional == nil || *obj.additional {
					t.Errorf("object at %s: additionalProperties must be false", obj.at)
				}
			}
			valid, invalid, err := Examples(s.Type, s.Major)
			if err != nil {
				t.Fatal(err)
			}
			if len(valid) < 2 {
				t.Errorf("%d valid examples, want at least 2", len(valid))
			}
			if len(invalid) < 3 {
				t.Errorf("%d invalid examples, want at least 3", len(invalid))
			}
			for _, ex := range slices.Concat(valid, invalid) {
				var m map[string]any
				if err := json.Unmarshal(ex.Data, &m); err != nil || m == nil {
					t.Errorf("example %s: data is not a JSON object", ex.Name)
				}
			}
		})
	}
}

type objectSchema struct {
	at         string
	additional *bool
}

// objectSchemas lists the inline object schemas that declare properties, anywhere in
// the document (nested properties, items, composition), so that none is left open.
func objectSchemas(t *testing.T, doc []byte) []objectSchema {
	t.Helper()
	var root any
	if err := json.Unmarshal(doc, &root); err != nil {
		t.Fatal(err)
	}
	var out []objectSchema
	var walk func(v any, at string, inBranch bool)
	walk = func(v any, at string, inBranch bool) {
		switch n := v.(type) {
		case map[string]any:
			// Branches of if/then/allOf refine properties declared by their parent.
			if _, ok := n["properties"]; ok && !inBranch {
				o := objectSchema{at: "#" + at}
				if b, ok := n["additionalProperties"].(bool); ok {
					o.additional = &b
				}
				out = append(out, o)
			}
			for k, c := range n {
				branch := inBranch || k == "if" || k == "then" || k == "else" || k == "allOf" || k == "dependentSchemas" || k == "not"
				if k == "properties" {
					for name, p := range c.(map[string]any) {
						walk(p, at+"/properties/"+name, false)
					}
					continue
				}
				walk(c, at+"/"+k, branch)
			}
		case []any:
			for _, c := range n {
				walk(c, at, inBranch)
			}
		}
	}
	walk(root, "", false)
	return out
}

func TestStoredForm(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	var sealed any
	if err := json.Unmarshal([]byte(SealedSchema), &sealed); err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		t.Run(s.Type+"/v"+strconv.Itoa(s.Major), func(t *testing.T) {
			input := decode(t, s.Input)
			stored := decode(t, s.Stored)

			// Build the expected stored form by hand: every x-personal property replaced by
			// the sealed-value schema, a new $id and title; nothing else changes.
			want := decode(t, s.Input)
			var personal []string
			var replace func(node map[string]any, pointer string)
			replace = func(node map[string]any, pointer string) {
				props, _ := node["properties"].(map[string]any)
				for name, raw := range props {
					child := raw.(map[string]any)
					if child[PersonalKeyword] == true {
						props[name] = sealed
						personal = append(personal, pointer+"/"+name)
						continue
					}
					replace(child, pointer+"/"+name)
				}
			}
			replace(want, "")
			want["$id"] = s.URI + "/stored"
			want["title"] = input["title"].(string) + " (stored form)"
			slices.Sort(personal)

			if !reflect.DeepEqual(stored, want) {
				t.Errorf("stored form:\n got %s\nwant %s", s.Stored, mustJSON(t, want))
			}
			if !slices.Equal(s.Personal, personal) {
				t.Errorf("Personal = %v, want %v", s.Personal, personal)
			}
			if at, found := findKeyword(stored, PersonalKeyword, ""); found {
				t.Errorf("stored form still has %s at %s", PersonalKeyword, at)
			}
			if got := s.StoredURI(); got != s.URI+"/stored" {
				t.Errorf("StoredURI() = %q", got)
			}
			wantScope := ScopeCustomer
			if s.Type == "clock.ticked" || s.Type == "loyalty.rules_activated" || s.Type == "churn.model_activated" {
				wantScope = ScopePartition
			}
			if s.Scope != wantScope {
				t.Errorf("scope %q, want %q", s.Scope, wantScope)
			}
		})
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStoredFormRefuses checks that a personal marker the sealer could not honour is a
// catalog error, not a silent leak of clear text into the log.
func TestStoredFormRefuses(t *testing.T) {
	const head = `{"$id": "https://touchstream.dev/schemas/x.y/v1", "type": "object", "additionalProperties": false, `
	tests := []struct {
		name   string
		schema string
		want   string // in the error
	}{
		{"in array", head + `"properties": {"notes": {"type": "array", "items": {"type": "object", "properties": {"text": {"x-personal": true, "type": "string", "maxLength": 64}}}}}}`, "inside arrays"},
		{"ref", head + `"properties": {"name": {"x-personal": true, "type": "string", "maxLength": 64, "$ref": "https://touchstream.dev/schemas/common/v1#/$defs/personal_text"}}}`, "$ref is not allowed"},
		{"not a string", head + `"properties": {"age": {"x-personal": true, "type": "integer"}}}`, `"type": "string"`},
		{"unbounded", head + `"properties": {"name": {"x-personal": true, "type": "string"}}}`, "need a maxLength"},
		{"too long to seal", head + `"properties": {"text": {"x-personal": true, "type": "string", "maxLength": 1024}}}`, "between 1 and 512"},
		{"false marker", head + `"properties": {"name": {"x-personal": false, "type": "string", "maxLength": 64}}}`, "must be true"},
		{"inside then", head + `"properties": {"kind": {"enum": ["a", "b"]}, "text": {"type": "string"}}, "if": {"properties": {"kind": {"const": "a"}}}, "then": {"properties": {"text": {"x-personal": true, "type": "string", "maxLength": 64}}}}`, "#/then/properties/text"},
		{"inside $defs", head + `"properties": {"a": {"$ref": "#/$defs/p"}}, "$defs": {"p": {"x-personal": true, "type": "string", "maxLength": 64}}}`, "#/$defs/p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := storedForm([]byte(tt.schema), "https://touchstream.dev/schemas/x.y/v1/stored")
			if err == nil {
				t.Fatalf("accepted, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestStoredFormNested(t *testing.T) {
	schema := `{"$id": "https://touchstream.dev/schemas/x.y/v1", "title": "x.y v1", "type": "object", "additionalProperties": false, "properties": {
		"contact": {"type": "object", "additionalProperties": false, "properties": {"a/b": {"x-personal": true, "type": "string", "maxLength": 64}, "kind": {"enum": ["home"]}}},
		"name": {"x-personal": true, "type": "string", "maxLength": 64}}}`
	stored, personal, err := storedForm([]byte(schema), "https://touchstream.dev/schemas/x.y/v1/stored")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/contact/a~1b", "/name"}; !slices.Equal(personal, want) {
		t.Errorf("personal %v, want %v", personal, want)
	}
	m := decode(t, stored)
	contact := m["properties"].(map[string]any)["contact"].(map[string]any)["properties"].(map[string]any)
	if _, ok := contact["a/b"].(map[string]any)["required"]; !ok {
		t.Errorf("nested personal property not sealed: %v", contact["a/b"])
	}
	if m["title"] != "x.y v1 (stored form)" || m["$id"] != "https://touchstream.dev/schemas/x.y/v1/stored" {
		t.Errorf("title %v, $id %v", m["title"], m["$id"])
	}
}

func TestURIRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		eventType string
		major     int
	}{
		{"recharge.completed", 1},
		{"number.port_out_requested", 1},
		{"clock.ticked", 2},
		{"a.b", 12},
	} {
		t.Run(tt.eventType, func(t *testing.T) {
			uri := URI(tt.eventType, tt.major)
			typ, major, ok := ParseURI(uri)
			if !ok || typ != tt.eventType || major != tt.major {
				t.Errorf("ParseURI(%q) = %q, %d, %v; want %q, %d, true", uri, typ, major, ok, tt.eventType, tt.major)
			}
			if back := URI(typ, major); back != uri {
				t.Errorf("URI(ParseURI(%q)) = %q", uri, back)
			}
		})
	}
}

func TestParseURIRefuses(t *testing.T) {
	for _, uri := range []string{
		"",
		"recharge.completed/v1",
		"http://touchstream.dev/schemas/recharge.completed/v1",
		"https://touchstream.dev/schemas/recharge.completed",
		"https://touchstream.dev/schemas/recharge.completed/v",
		"https://touchstream.dev/schemas/recharge.completed/v0",
		"https://touchstream.dev/schemas/recharge.completed/v01",
		"https://touchstream.dev/schemas/recharge.completed/v+1",
		"https://touchstream.dev/schemas/recharge.completed/v-1",
		"https://touchstream.dev/schemas/recharge.completed/v1/stored",
		"https://touchstream.dev/schemas/recharge.completed/v1x",
		"https://touchstream.dev/schemas/Recharge.Completed/v1",
		"https://touchstream.dev/schemas/recharge/v1",
		"https://touchstream.dev/schemas/a.b.c/v1",
		"https://touchstream.dev/schemas/recharge-completed.x/v1",
		"https://touchstream.dev/schemas/common/v1",
	} {
		t.Run(uri, func(t *testing.T) {
			if typ, major, ok := ParseURI(uri); ok {
				t.Errorf("ParseURI(%q) = %q, %d, true; want refused", uri, typ, major)
			}
		})
	}
}

func TestCommon(t *testing.T) {
	common, err := Common()
	if err != nil {
		t.Fatal(err)
	}
	if len(common) != 1 || common[0].URI != "https://touchstream.dev/schemas/common/v1" {
		t.Fatalf("common resources: %+v", common)
	}
}
