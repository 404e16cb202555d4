package events

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/touchstream/touchstream/schemas"
)

// Catalog is the compiled event contract: for every type and major version, the input
// form (validated at the door) and the stored form (validated by consumers). It is
// immutable and safe for concurrent use.
type Catalog struct {
	byURI  map[string]*Schema
	latest map[string]*Schema // type -> highest major
	// names are the envelope values every event repeats (spec version, content type,
	// types, schema URIs), and sources those seen so far (at most maxSources): a
	// stored event read from the log takes them from here instead of allocating them.
	names   map[string]string
	sources sync.Map // string -> string
	nsource atomic.Int32
}

// maxSources bounds the sources a catalog keeps for reuse.
const maxSources = 1024

// name returns b as a string, the catalog's copy if it holds one.
func (c *Catalog) name(b []byte) string {
	if s, ok := c.names[string(b)]; ok {
		return s
	}
	return string(b)
}

// source returns b as a string, reusing the copy of a source seen before.
func (c *Catalog) source(b []byte) string {
	if s, ok := c.sources.Load(string(b)); ok {
		return s.(string)
	}
	s := string(b)
	if c.nsource.Load() < maxSources {
		if _, loaded := c.sources.LoadOrStore(s, s); !loaded {
			c.nsource.Add(1)
		}
	}
	return s
}

// Schema is one compiled event type at one major version.
type Schema struct {
	schemas.Schema
	input  *jsonschema.Schema
	stored *jsonschema.Schema
	// The fast path (fastschema.go, goshape.go): the two forms translated for payloads
	// read by parseJSON, and what the Go type holds (nil: no Go type).
	fastInput  *fastSchema
	fastStored *fastSchema
	shape      *goShape
	// personal holds the pointers of Personal split into tokens.
	personal [][]string
}

// HasPersonal reports whether the type carries personal fields.
func (s *Schema) HasPersonal() bool { return len(s.Personal) > 0 }

var defaultCatalog = sync.OnceValues(func() (*Catalog, error) { return LoadCatalog() })

// DefaultCatalog returns the catalog compiled from the embedded schemas. It is built
// once per process.
func DefaultCatalog() (*Catalog, error) { return defaultCatalog() }

// LoadCatalog compiles every schema embedded in the schemas module.
func LoadCatalog() (*Catalog, error) {
	all, err := schemas.All()
	if err != nil {
		return nil, err
	}
	common, err := schemas.Common()
	if err != nil {
		return nil, err
	}
	return CompileCatalog(all, common)
}

// CompileCatalog compiles a given set of schemas and shared definitions, such as the
// embedded ones with a proposed change (schemas.FromJSON): the compatibility test
// checks a changed schema against the events already in the log this way.
func CompileCatalog(all []schemas.Schema, common []schemas.Resource) (*Catalog, error) {
	var err error
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noRemote{})
	add := func(uri string, b []byte) error {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("schema %s: %w", uri, err)
		}
		return c.AddResource(uri, doc)
	}
	for _, r := range common {
		if err := add(r.URI, r.JSON); err != nil {
			return nil, err
		}
	}
	for _, s := range all {
		if err := add(s.URI, s.Input); err != nil {
			return nil, err
		}
		if err := add(s.StoredURI(), s.Stored); err != nil {
			return nil, err
		}
	}
	cat := &Catalog{byURI: map[string]*Schema{}, latest: map[string]*Schema{},
		names: map[string]string{SpecVersion: SpecVersion, ContentType: ContentType}}
	memo := map[*jsonschema.Schema]*fastSchema{}
	for _, s := range all {
		cs := &Schema{Schema: s}
		if cs.input, err = c.Compile(s.URI); err != nil {
			return nil, fmt.Errorf("compile %s: %w", s.URI, err)
		}
		if cs.stored, err = c.Compile(s.StoredURI()); err != nil {
			return nil, fmt.Errorf("compile %s: %w", s.StoredURI(), err)
		}
		cs.fastInput, cs.fastStored = compileFast(cs.input, memo), compileFast(cs.stored, memo)
		if p, ok := NewPayload(s.Type, s.Major); ok {
			cs.shape = shapeOf(reflect.TypeOf(p).Elem())
		}
		for _, p := range s.Personal {
			toks := strings.Split(strings.TrimPrefix(p, "/"), "/")
			for i, t := range toks {
				toks[i] = unescapePointer(t)
			}
			cs.personal = append(cs.personal, toks)
		}
		cat.byURI[s.URI] = cs
		cat.names[s.URI], cat.names[s.Type] = s.URI, s.Type
		if l := cat.latest[s.Type]; l == nil || l.Major < s.Major {
			cat.latest[s.Type] = cs
		}
	}
	return cat, nil
}

type noRemote struct{}

func (noRemote) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema %s is not in the catalog (remote schemas are never fetched)", url)
}

// Lookup returns the schema for a dataschema URI.
func (c *Catalog) Lookup(uri string) (*Schema, bool) {
	s, ok := c.byURI[uri]
	return s, ok
}

// Latest returns the highest major version of a type.
func (c *Catalog) Latest(eventType string) (*Schema, bool) {
	s, ok := c.latest[eventType]
	return s, ok
}

// Types lists every known event type, sorted.
func (c *Catalog) Types() []string {
	out := make([]string, 0, len(c.latest))
	for t := range c.latest {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Schemas lists every schema, sorted by type and major version.
func (c *Catalog) Schemas() []*Schema {
	out := make([]*Schema, 0, len(c.byURI))
	for _, s := range c.byURI {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Schema) int {
		if n := strings.Compare(a.Type, b.Type); n != 0 {
			return n
		}
		return a.Major - b.Major
	})
	return out
}

// parseData decodes a payload for schema validation, keeping number precision.
func parseData(data []byte) (any, error) {
	return jsonschema.UnmarshalJSON(bytes.NewReader(data))
}

var printer = message.NewPrinter(language.English)

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// schemaErrors flattens a validation error into one FieldError per failing leaf, each
// naming the JSON pointer of the offending field under prefix ("/data").
func schemaErrors(prefix string, err error) FieldErrors {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return FieldErrors{{Field: prefix, Reason: err.Error()}}
	}
	var out FieldErrors
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		loc := prefix
		for _, tok := range e.InstanceLocation {
			loc += "/" + pointerEscaper.Replace(tok)
		}
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				out.add(loc+"/"+pointerEscaper.Replace(m), "required")
			}
			return
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				out.add(loc+"/"+pointerEscaper.Replace(p), "not allowed: the schema has no such property")
			}
			return
		}
		out.add(loc, e.ErrorKind.LocalizedString(printer))
	}
	walk(ve)
	slices.SortStableFunc(out, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	return slices.CompactFunc(out, func(a, b FieldError) bool { return a == b })
}
