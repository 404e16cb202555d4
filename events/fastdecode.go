package events

import (
	"reflect"
	"strconv"
	"sync"
	"time"
)

// This file is the fast path of decoding stored events: the envelope and the payload
// filled straight from the nodes of jsonscan.go, without encoding/json. It is taken
// only where its result is certainly the one of the reference path (encoding/json,
// strictly for payloads); wherever it is not sure (an escaped string, a null, a key
// matched only case-insensitively, a type it does not know) it gives up and the
// reference path decodes, so it changes speed, never results. FuzzFastDecode holds
// the two paths to the same answers.

// shapeCache holds the shape of each payload type, derived once.
var shapeCache sync.Map // reflect.Type → *goShape

func shapeFor(t reflect.Type) *goShape {
	if s, ok := shapeCache.Load(t); ok {
		return s.(*goShape)
	}
	s, _ := shapeCache.LoadOrStore(t, shapeOf(t))
	return s.(*goShape)
}

// fastUnmarshal decodes data into *v as strictUnmarshal would (unknown fields
// refused), reporting false when it cannot be sure; *v is then left partly filled and
// must be discarded.
func fastUnmarshal(data []byte, v any) bool {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return false
	}
	doc := docPool.Get().(*jsonDoc)
	defer docPool.Put(doc)
	if !parseJSON(doc, data) || !doc.plain {
		return false
	}
	return shapeFor(rv.Type().Elem()).fill(doc, 0, rv.Elem())
}

// fill stores node i of doc into v, which holds its type's zero value.
func (s *goShape) fill(doc *jsonDoc, i int, v reflect.Value) bool {
	n := &doc.nodes[i]
	if n.kind == jsonNull {
		return false // a no-op, an Unmarshaler call or a nil: the decoder decides
	}
	switch s.kind {
	case shapeString:
		if n.kind != jsonString || n.escaped {
			return false
		}
		v.SetString(string(doc.bytes(i)))
		return true
	case shapePersonal:
		return fillPersonal(doc, i, v.Addr().Interface().(*Personal))
	case shapeBool:
		switch n.kind {
		case jsonTrue:
			v.SetBool(true)
			return true
		case jsonFalse:
			return true
		}
		return false
	case shapeInt:
		if n.kind != jsonNumber || !n.integer {
			return false
		}
		x, ok := parseInt(doc.bytes(i))
		if !ok || x>>(s.bits-1) != x>>63 {
			return false
		}
		v.SetInt(x)
		return true
	case shapeUint:
		if n.kind != jsonNumber || !n.integer {
			return false
		}
		b := doc.bytes(i)
		x, ok := parseInt(b)
		if b[0] == '-' || !ok || (s.bits < 64 && x>>s.bits != 0) {
			return false
		}
		v.SetUint(uint64(x))
		return true
	case shapeFloat:
		if n.kind != jsonNumber {
			return false
		}
		f, err := strconv.ParseFloat(string(doc.bytes(i)), s.bits)
		if err != nil {
			return false
		}
		v.SetFloat(f)
		return true
	case shapeTime:
		if n.kind != jsonString || n.escaped {
			return false
		}
		return v.Addr().Interface().(*time.Time).UnmarshalText(doc.bytes(i)) == nil
	case shapePointer:
		p := reflect.New(v.Type().Elem())
		if !s.elem.fill(doc, i, p.Elem()) {
			return false
		}
		v.Set(p)
		return true
	case shapeSlice:
		if n.kind != jsonArray {
			return false
		}
		sl := reflect.MakeSlice(v.Type(), int(n.members), int(n.members))
		j := i + 1
		for k := range int(n.members) {
			if !s.elem.fill(doc, j, sl.Index(k)) {
				return false
			}
			j += int(doc.nodes[j].size)
		}
		v.Set(sl)
		return true
	case shapeStruct:
		if n.kind != jsonObject {
			return false
		}
		j := i + 1
		for range n.members {
			val := j + 1
			name := doc.bytes(j)
			f, ok := s.fields[string(name)]
			if !ok || !f.fill(doc, val, v.FieldByIndex(s.index[string(name)])) {
				return false // an unknown field, or one matched case-insensitively
			}
			j = val + int(doc.nodes[val].size)
		}
		return true
	}
	return false
}

// fillPersonal reads a personal field: a clear string, or the sealed object with no
// other members than Sealed's.
func fillPersonal(doc *jsonDoc, i int, p *Personal) bool {
	n := &doc.nodes[i]
	switch n.kind {
	case jsonString:
		if n.escaped {
			return false
		}
		*p = Personal{clear: string(doc.bytes(i))}
		return true
	case jsonObject:
		var s Sealed
		j := i + 1
		for range n.members {
			val := j + 1
			vn := &doc.nodes[val]
			if vn.kind != jsonString || vn.escaped {
				return false
			}
			str := string(doc.bytes(val))
			switch string(doc.bytes(j)) {
			case "alg":
				s.Alg = str
			case "kid":
				s.KeyID = str
			case "n":
				s.Nonce = str
			case "ct":
				s.Ciphertext = str
			default:
				return false
			}
			j = val + 1
		}
		*p = Personal{sealed: &s}
		return true
	}
	return false
}

// fastEnvelope decodes the structured-mode JSON of an event as json.Unmarshal into
// wire would, reporting false when it cannot be sure.
func fastEnvelope(b []byte, w *wire) bool {
	doc := docPool.Get().(*jsonDoc)
	defer releaseDoc(doc)
	_, ok := envelopeFromDoc(doc, b, w, nil)
	return ok
}

// envelopeFromDoc parses b into doc and fills w from it as fastEnvelope does,
// returning the node of the data member (0 if absent). With a catalog, w.Data aliases
// b instead of copying it, and the values every event repeats are the catalog's
// strings.
func envelopeFromDoc(doc *jsonDoc, b []byte, w *wire, cat *Catalog) (data int, ok bool) {
	if !parseJSON(doc, b) || !doc.plain || doc.nodes[0].kind != jsonObject {
		return 0, false
	}
	j := 1
	for range doc.nodes[0].members {
		val := j + 1
		vn := &doc.nodes[val]
		key := string(doc.bytes(j))
		var dst *string
		repeated := false // a value many events share
		switch key {
		case "specversion":
			dst, repeated = &w.SpecVersion, true
		case "id":
			dst = &w.ID
		case "source":
			dst = &w.Source
			if cat != nil && vn.kind == jsonString && !vn.escaped {
				w.Source, dst = cat.source(doc.bytes(val)), nil
			}
		case "type":
			dst, repeated = &w.Type, true
		case "subject":
			dst = &w.Subject
		case "time":
			dst = &w.Time
		case "datacontenttype":
			dst, repeated = &w.DataContentType, true
		case "dataschema":
			dst, repeated = &w.DataSchema, true
		case "partition":
			if vn.kind != jsonNumber || !vn.integer {
				return 0, false
			}
			x, ok := parseInt(doc.bytes(val))
			if !ok || int64(int(x)) != x {
				return 0, false
			}
			p := int(x)
			w.Partition = &p
		case "data":
			if vn.kind == jsonNull {
				return 0, false
			}
			if raw := doc.raw(val); cat != nil {
				w.Data = raw[:len(raw):len(raw)]
			} else {
				w.Data = append([]byte(nil), raw...) // a copy, as json.RawMessage makes
			}
			data = val
		default:
			if envelopeFold(key) {
				return 0, false // encoding/json would match it case-insensitively
			}
		}
		if dst != nil {
			if vn.kind != jsonString || vn.escaped {
				return 0, false
			}
			if repeated && cat != nil {
				*dst = cat.name(doc.bytes(val))
			} else {
				*dst = string(doc.bytes(val))
			}
		}
		j = val + int(vn.size)
	}
	return data, true
}

// envelopeFold reports whether key names an envelope attribute in another case.
func envelopeFold(key string) bool {
	for _, a := range [...]string{"specversion", "id", "source", "type", "subject", "partition", "time", "datacontenttype", "dataschema", "data"} {
		if len(key) == len(a) && equalFoldASCII(key, a) {
			return true
		}
	}
	return false
}

// equalFoldASCII is strings.EqualFold where b is lower-case ASCII; a non-ASCII a
// (encoding/json also folds the Kelvin sign and the long s) is taken as a match.
func equalFoldASCII(a, b string) bool {
	for i := range len(a) {
		c := a[i]
		if c >= 0x80 {
			return true
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != b[i] {
			return false
		}
	}
	return true
}
