package events

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// goShape is what a payload's Go type can hold, derived once per type: the fast path's
// replacement for decoding every payload a second time (strictly, into the Go type) to
// find the values that pass the schema but not the decoder. holds answers true only
// when the strict decode would succeed; when it answers false the decode itself runs
// and produces the refusal.
type goShape struct {
	kind   shapeKind
	bits   int                 // shapeInt, shapeUint, shapeFloat
	fields map[string]*goShape // shapeStruct, by JSON name
	index  map[string][]int    // shapeStruct: each field's index, by JSON name
	elem   *goShape            // shapePointer, shapeSlice
}

type shapeKind uint8

const (
	shapeOther    shapeKind = iota // anything else: never decided here
	shapeString                    // string
	shapeInt                       // int, int8... int64
	shapeUint                      // uint, uint8... uint64
	shapeFloat                     // float32, float64
	shapeBool                      // bool
	shapeTime                      // time.Time
	shapePersonal                  // Personal
	shapeStruct                    // a struct without embedded fields or custom decoding
	shapePointer                   // *T
	shapeSlice                     // []T
)

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()
)

// shapeOf derives the shape of t.
func shapeOf(t reflect.Type) *goShape {
	switch t {
	case reflect.TypeFor[time.Time]():
		return &goShape{kind: shapeTime}
	case reflect.TypeFor[Personal]():
		return &goShape{kind: shapePersonal}
	}
	if t.Kind() != reflect.Pointer && (reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType)) {
		return &goShape{}
	}
	switch t.Kind() {
	case reflect.String:
		return &goShape{kind: shapeString}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &goShape{kind: shapeInt, bits: t.Bits()}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &goShape{kind: shapeUint, bits: t.Bits()}
	case reflect.Float32, reflect.Float64:
		return &goShape{kind: shapeFloat, bits: t.Bits()}
	case reflect.Bool:
		return &goShape{kind: shapeBool}
	case reflect.Pointer:
		if t.Implements(unmarshalerType) || t.Implements(textUnmarshalerType) {
			return &goShape{}
		}
		return &goShape{kind: shapePointer, elem: shapeOf(t.Elem())}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return &goShape{} // []byte: base64
		}
		return &goShape{kind: shapeSlice, elem: shapeOf(t.Elem())}
	case reflect.Struct:
		s := &goShape{kind: shapeStruct, fields: map[string]*goShape{}, index: map[string][]int{}}
		for f := range t.Fields() {
			if f.Anonymous {
				return &goShape{} // embedded fields: encoding/json's promotion rules
			}
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if name == "" {
				name = f.Name
			}
			for _, o := range strings.Split(opts, ",") {
				if o == "string" {
					return &goShape{}
				}
			}
			if _, dup := s.fields[name]; dup {
				return &goShape{}
			}
			s.fields[name] = shapeOf(f.Type)
			s.index[name] = f.Index
		}
		return s
	}
	return &goShape{}
}

// holds reports whether node i of doc (plain) certainly decodes into the shape.
func (s *goShape) holds(doc *jsonDoc, i int) bool {
	n := &doc.nodes[i]
	if n.kind == jsonNull {
		return false // no-op or not, the decoder decides
	}
	switch s.kind {
	case shapeString:
		return n.kind == jsonString
	case shapePersonal:
		return n.kind == jsonString // clear form; the sealed form is decoded strictly
	case shapeBool:
		return n.kind == jsonTrue || n.kind == jsonFalse
	case shapeInt:
		if n.kind != jsonNumber || !n.integer {
			return false
		}
		x, ok := parseInt(doc.bytes(i))
		return ok && x>>(s.bits-1) == x>>63 // fits in bits
	case shapeUint:
		if n.kind != jsonNumber || !n.integer {
			return false
		}
		b := doc.bytes(i)
		if b[0] == '-' {
			return false // strconv.ParseUint takes no sign, not even for -0
		}
		x, ok := parseInt(b)
		return ok && (s.bits == 64 || x>>s.bits == 0)
	case shapeFloat:
		if n.kind != jsonNumber {
			return false
		}
		_, err := strconv.ParseFloat(string(doc.bytes(i)), s.bits)
		return err == nil
	case shapeTime:
		if n.kind != jsonString || n.escaped {
			return false // Time.UnmarshalJSON reads the bytes without unescaping
		}
		var t time.Time
		return t.UnmarshalText(doc.bytes(i)) == nil // what Time.UnmarshalJSON runs
	case shapePointer:
		return s.elem.holds(doc, i)
	case shapeSlice:
		if n.kind != jsonArray {
			return false
		}
		j := i + 1
		for range n.members {
			if !s.elem.holds(doc, j) {
				return false
			}
			j += int(doc.nodes[j].size)
		}
		return true
	case shapeStruct:
		if n.kind != jsonObject {
			return false
		}
		j := i + 1
		for range n.members {
			v := j + 1
			f, ok := s.fields[string(doc.bytes(j))]
			if !ok || !f.holds(doc, v) {
				return false // an unknown field, or one matched case-insensitively
			}
			j = v + int(doc.nodes[v].size)
		}
		return true
	}
	return false
}
