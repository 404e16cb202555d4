// Package schemas holds touchstream's event contract: one JSON Schema (draft 2020-12)
// per event type and major version, the shared definitions they reference, and the
// valid and invalid example payloads that the tests run.
//
// Layout of the embedded tree:
//
//	common/v1.json                         shared $defs (money, timestamps, refs)
//	<type>/v<major>.json                   the schema of <type>'s data, input form
//	<type>/examples/v<major>/valid/*.json  payloads that must validate
//	<type>/examples/v<major>/invalid/*.json {"field": "/json/pointer", "data": {...}}
//	                                       ("field": "" names the payload as a whole)
//
// A property marked "x-personal": true holds personal data (name, phone number, id
// number, address, free text). Producers send it in clear; before the event enters the
// log it is replaced by an encrypted value. Every schema therefore has two forms: the
// input form, validated at the door, and the stored form (derived here, never written by
// hand), in which every personal property is a sealed value. Consumers validate the
// stored form.
//
// Schemas evolve without breaking the log (docs/adr/0014): a published version only
// ever widens (a new optional property, a new enum value, a looser bound); anything
// else (a new required property, a removed or renamed one, a narrower value) is a new
// major version, a new file beside the old one, which stays forever because the log
// keeps its events. The events module upcasts each older version to the newest on
// decode, and its compatibility test holds every version to these rules.
//
// The package has no dependencies beyond the standard library so that every module,
// including the publisher SDK, can import it.
package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

//go:embed common */v*.json */examples
var files embed.FS

// BaseURI prefixes every schema $id. A schema's dataschema URI is
// BaseURI + type + "/v" + major.
const BaseURI = "https://touchstream.dev/schemas/"

// PersonalKeyword marks a property as personal data.
const PersonalKeyword = "x-personal"

// MaxPersonalLength is the largest maxLength a personal property may declare, in
// characters. Sealed, a value of n characters (at most 4n bytes of UTF-8) becomes
// 4n+16 bytes of ciphertext and tag, base64-encoded within SealedSchema's 4096 limit
// with room to spare, so that whatever the input form accepts the stored form accepts
// too.
const MaxPersonalLength = 512

// ScopeKeyword, at the top of a schema, says whom the event concerns: "customer" (the
// default: the envelope's subject is a customer id) or "partition" (a partition-wide
// event such as a clock tick, published once to every partition).
const ScopeKeyword = "x-scope"

// Scopes of an event type.
const (
	ScopeCustomer  = "customer"
	ScopePartition = "partition"
)

// SealedSchema is the stored form of every personal property: the encrypted value
// written by events.Sealer. kid names the customer's data key, n is the AES-GCM nonce
// and ct the ciphertext with its tag, both base64 (standard, padded).
const SealedSchema = `{"type":"object","required":["alg","kid","n","ct"],"additionalProperties":false,` +
	`"properties":{"alg":{"const":"A256GCM"},"kid":{"type":"string","minLength":1,"maxLength":64},` +
	`"n":{"type":"string","minLength":16,"maxLength":16},"ct":{"type":"string","minLength":24,"maxLength":4096}}}`

// Schema is one event type at one major version.
type Schema struct {
	Type     string   // stable CloudEvents type, e.g. "recharge.completed"
	Major    int      // major version, carried in the event's dataschema
	URI      string   // the dataschema URI and $id of the input form
	Input    []byte   // the schema as written, input form
	Stored   []byte   // derived stored form ($id = URI + "/stored")
	Personal []string // JSON pointers of the personal properties, sorted
	Scope    string   // ScopeCustomer or ScopePartition
}

// StoredURI is the $id of the stored form.
func (s Schema) StoredURI() string { return s.URI + "/stored" }

// Example is a payload from the examples tree.
type Example struct {
	Name  string          // file name without extension
	Field string          // for invalid examples: the JSON pointer that must be named ("" = the payload)
	Data  json.RawMessage // the payload
}

// Resource is a schema document that other schemas reference (common definitions).
type Resource struct {
	URI  string
	JSON []byte
}

var typeName = regexp.MustCompile(`^[a-z][a-z_]*\.[a-z][a-z_]*$`)

// URI returns the dataschema URI of a type at a major version.
func URI(eventType string, major int) string {
	return BaseURI + eventType + "/v" + strconv.Itoa(major)
}

// ParseURI splits a dataschema URI into type and major version.
func ParseURI(uri string) (eventType string, major int, ok bool) {
	rest, found := strings.CutPrefix(uri, BaseURI)
	if !found {
		return "", 0, false
	}
	t, v, found := strings.Cut(rest, "/v")
	if !found || !typeName.MatchString(t) {
		return "", 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || strconv.Itoa(n) != v {
		return "", 0, false
	}
	return t, n, true
}

// Common returns the shared definition documents.
func Common() ([]Resource, error) {
	entries, err := fs.ReadDir(files, "common")
	if err != nil {
		return nil, err
	}
	var out []Resource
	for _, e := range entries {
		b, err := files.ReadFile(path.Join("common", e.Name()))
		if err != nil {
			return nil, err
		}
		id, err := schemaID(b)
		if err != nil {
			return nil, fmt.Errorf("common/%s: %w", e.Name(), err)
		}
		out = append(out, Resource{URI: id, JSON: b})
	}
	return out, nil
}

// All returns every schema in the catalog, sorted by type and major version.
func All() ([]Schema, error) {
	dirs, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, err
	}
	var out []Schema
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == "common" {
			continue
		}
		t := d.Name()
		if !typeName.MatchString(t) {
			return nil, fmt.Errorf("schemas: directory %q is not an event type name", t)
		}
		versions, err := fs.Glob(files, t+"/v*.json")
		if err != nil {
			return nil, err
		}
		for _, f := range versions {
			s, err := load(t, f)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Schema) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return a.Major - b.Major
	})
	return out, nil
}

func load(eventType, file string) (Schema, error) {
	major, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(path.Base(file), "v"), ".json"))
	if err != nil || major < 1 {
		return Schema{}, fmt.Errorf("schemas: %s: file name must be v<major>.json", file)
	}
	b, err := files.ReadFile(file)
	if err != nil {
		return Schema{}, err
	}
	s, err := parse(eventType, major, b)
	if err != nil {
		return Schema{}, fmt.Errorf("schemas: %s: %w", file, err)
	}
	return s, nil
}

// FromJSON builds a Schema from the input form of a type at a major version, as the
// catalog does for its embedded files: it checks the $id and the scope and derives the
// stored form. Tools and tests use it to check a proposed schema before it is embedded
// (the compatibility test of the events module compiles changed schemas with it).
func FromJSON(eventType string, major int, input []byte) (Schema, error) {
	if !typeName.MatchString(eventType) || major < 1 {
		return Schema{}, fmt.Errorf("schemas: %q v%d: not an event type and major version", eventType, major)
	}
	s, err := parse(eventType, major, input)
	if err != nil {
		return Schema{}, fmt.Errorf("schemas: %s v%d: %w", eventType, major, err)
	}
	return s, nil
}

func parse(eventType string, major int, b []byte) (Schema, error) {
	s := Schema{Type: eventType, Major: major, URI: URI(eventType, major), Input: b}
	id, scope, err := schemaHead(b)
	if err != nil {
		return Schema{}, err
	}
	s.Scope = scope
	if id != s.URI {
		return Schema{}, fmt.Errorf("$id is %q, want %q", id, s.URI)
	}
	s.Stored, s.Personal, err = storedForm(b, s.StoredURI())
	if err != nil {
		return Schema{}, err
	}
	return s, nil
}

func schemaID(b []byte) (string, error) {
	id, _, err := schemaHead(b)
	return id, err
}

func schemaHead(b []byte) (id, scope string, err error) {
	var head struct {
		ID    string `json:"$id"`
		Scope string `json:"x-scope"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return "", "", err
	}
	if head.ID == "" {
		return "", "", fmt.Errorf("missing $id")
	}
	switch head.Scope {
	case "":
		head.Scope = ScopeCustomer
	case ScopeCustomer, ScopePartition:
	default:
		return "", "", fmt.Errorf("%s %q: must be %q or %q", ScopeKeyword, head.Scope, ScopeCustomer, ScopePartition)
	}
	return head.ID, head.Scope, nil
}

// storedForm rewrites a schema so that every personal property is a sealed value, and
// lists the JSON pointers of those properties. Personal properties may sit in nested
// objects but not in arrays: an encrypted value is addressed by a fixed pointer. A
// personal property is a plain string schema (no $ref, no composition) with a
// maxLength of at most MaxPersonalLength, and it is declared under "properties" where
// the walk finds it: a marker anywhere else (inside allOf, if/then, $defs...) would be
// left unsealed, so it is refused.
func storedForm(input []byte, id string) ([]byte, []string, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, err
	}
	var sealed map[string]any
	if err := json.Unmarshal([]byte(SealedSchema), &sealed); err != nil {
		return nil, nil, err
	}
	var personal []string
	var walk func(node map[string]any, pointer string, inArray bool) error
	walk = func(node map[string]any, pointer string, inArray bool) error {
		props, _ := node["properties"].(map[string]any)
		for name, raw := range props {
			child, ok := raw.(map[string]any)
			if !ok {
				continue
			}
			p := pointer + "/" + escapePointer(name)
			if v, ok := child[PersonalKeyword]; ok {
				if v != true {
					return fmt.Errorf("%s: %s must be true when present", p, PersonalKeyword)
				}
				if inArray {
					return fmt.Errorf("%s: personal properties cannot sit inside arrays", p)
				}
				if err := checkPersonal(child); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				props[name] = clone(sealed)
				personal = append(personal, p)
				continue
			}
			if err := walk(child, p, inArray); err != nil {
				return err
			}
		}
		if items, ok := node["items"].(map[string]any); ok {
			if err := walk(items, pointer+"/*", true); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(doc, "", false); err != nil {
		return nil, nil, err
	}
	if at, found := findKeyword(doc, PersonalKeyword, ""); found {
		return nil, nil, fmt.Errorf("%s at %s: personal properties must be declared under properties (or nested properties), where they can be sealed", PersonalKeyword, at)
	}
	doc["$id"] = id
	if t, ok := doc["title"].(string); ok {
		doc["title"] = t + " (stored form)"
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(personal)
	return out, personal, nil
}

// checkPersonal refuses a personal property whose clear value could not be sealed into
// a valid stored form: it must be a bounded plain string.
func checkPersonal(prop map[string]any) error {
	if prop["type"] != "string" {
		return fmt.Errorf(`personal properties must have "type": "string"`)
	}
	for _, k := range []string{"$ref", "$dynamicRef", "allOf", "anyOf", "oneOf", "not", "if", "then", "else"} {
		if _, ok := prop[k]; ok {
			return fmt.Errorf("personal properties must be plain strings: %s is not allowed", k)
		}
	}
	n, ok := prop["maxLength"].(json.Number)
	if !ok {
		return fmt.Errorf("personal properties need a maxLength (at most %d)", MaxPersonalLength)
	}
	if v, err := n.Int64(); err != nil || v < 1 || v > MaxPersonalLength {
		return fmt.Errorf("maxLength %s: must be between 1 and %d", n, MaxPersonalLength)
	}
	return nil
}

// findKeyword reports the schema location of the first object key named kw.
func findKeyword(node any, kw, at string) (string, bool) {
	switch n := node.(type) {
	case map[string]any:
		if _, ok := n[kw]; ok {
			return "#" + at, true
		}
		keys := slices.Sorted(maps.Keys(n))
		for _, k := range keys {
			if loc, ok := findKeyword(n[k], kw, at+"/"+escapePointer(k)); ok {
				return loc, true
			}
		}
	case []any:
		for i, v := range n {
			if loc, ok := findKeyword(v, kw, at+"/"+strconv.Itoa(i)); ok {
				return loc, true
			}
		}
	}
	return "", false
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if mm, ok := v.(map[string]any); ok {
			v = clone(mm)
		}
		out[k] = v
	}
	return out
}

func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// Examples returns the example payloads of a type at a major version.
func Examples(eventType string, major int) (valid, invalid []Example, err error) {
	base := fmt.Sprintf("%s/examples/v%d", eventType, major)
	read := func(kind string) ([]Example, error) {
		names, err := fs.Glob(files, base+"/"+kind+"/*.json")
		if err != nil {
			return nil, err
		}
		var out []Example
		for _, n := range names {
			b, err := files.ReadFile(n)
			if err != nil {
				return nil, err
			}
			ex := Example{Name: strings.TrimSuffix(path.Base(n), ".json")}
			if kind == "valid" {
				ex.Data = b
			} else {
				var w struct {
					Field *string         `json:"field"` // "" names the payload itself
					Data  json.RawMessage `json:"data"`
				}
				if err := json.Unmarshal(b, &w); err != nil {
					return nil, fmt.Errorf("%s: %w", n, err)
				}
				if w.Field == nil || len(w.Data) == 0 {
					return nil, fmt.Errorf("%s: invalid examples need \"field\" and \"data\"", n)
				}
				if *w.Field != "" && !strings.HasPrefix(*w.Field, "/") {
					return nil, fmt.Errorf("%s: field %q is not a JSON pointer", n, *w.Field)
				}
				ex.Field, ex.Data = *w.Field, w.Data
			}
			out = append(out, ex)
		}
		return out, nil
	}
	if valid, err = read("valid"); err != nil {
		return nil, nil, err
	}
	if invalid, err = read("invalid"); err != nil {
		return nil, nil, err
	}
	return valid, invalid, nil
}
