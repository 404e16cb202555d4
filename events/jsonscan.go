package events

import (
	"sync"
	"unicode/utf8"
)

// This file is the door's payload reader. Every payload is read once into a flat list
// of nodes that point into its bytes, without building Go values. The fast paths of the
// door (schema check, Go type check, sealing by splicing) work on the nodes; whatever
// the reader does not handle, or the fast paths are not sure about, goes down the
// original path (encoding/json and the jsonschema library), which stays the reference.
//
// The reader accepts exactly the JSON that encoding/json accepts, or gives up: a true
// result is always valid JSON whose nodes hold what encoding/json would decode.

type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonFalse
	jsonTrue
	jsonNumber
	jsonString
	jsonArray
	jsonObject
)

// jsonNode is one value of a payload. Nodes are in document order: a container is
// followed by its members, an object's as key, value, key, value... size counts the
// nodes of the subtree (the node itself included), so nodes[i+size] follows it.
type jsonNode struct {
	kind jsonKind
	// escaped: a string whose bytes are not its value (an escape sequence, or invalid
	// UTF-8 that decoding replaces). Only its decoded form may be compared.
	escaped bool
	// integer: a number written without fraction or exponent.
	integer bool
	start   int32 // the value's bytes; a string's without its quotes
	end     int32
	size    int32
	members int32 // containers: elements, or key-value pairs
}

// jsonDoc is a payload read by parseJSON.
type jsonDoc struct {
	data  []byte
	nodes []jsonNode
	// compact: no insignificant whitespace, so the bytes are already what
	// json.Compact would write.
	compact bool
	// plain: no object repeats a key and no key is escaped, so nodes can be looked up
	// by name and mean what a decoder into a map or a struct sees (a repeated key is
	// decoded twice by encoding/json and once, the last, into a map).
	plain bool
}

// maxScanDepth bounds the nesting the reader follows; deeper payloads take the
// original path (encoding/json allows 10,000 levels).
const maxScanDepth = 64

// maxScanKeys bounds the members of an object checked for repeated keys (pairwise);
// a larger object is taken as possibly repeating one.
const maxScanKeys = 32

var docPool = sync.Pool{New: func() any { return &jsonDoc{nodes: make([]jsonNode, 0, 64)} }}

// parseJSON reads data into doc. It returns false if data is not JSON or lies beyond
// what the reader handles (too deep or too large); the caller then asks encoding/json.
func parseJSON(doc *jsonDoc, data []byte) bool {
	doc.data, doc.nodes, doc.compact, doc.plain = data, doc.nodes[:0], true, true
	if len(data) > 1<<30 {
		return false
	}
	p := jsonParser{doc: doc, b: data}
	p.space()
	if !p.value(0) {
		return false
	}
	p.space()
	return p.i == len(data)
}

type jsonParser struct {
	doc *jsonDoc
	b   []byte
	i   int
}

func (p *jsonParser) space() {
	start := p.i
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
			continue
		}
		break
	}
	if p.i != start {
		p.doc.compact = false
	}
}

func (p *jsonParser) value(depth int) bool {
	if p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		return p.string()
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == 't':
		return p.literal("true", jsonTrue)
	case c == 'f':
		return p.literal("false", jsonFalse)
	case c == 'n':
		return p.literal("null", jsonNull)
	}
	return false
}

func (p *jsonParser) literal(lit string, k jsonKind) bool {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return false
	}
	p.doc.nodes = append(p.doc.nodes, jsonNode{kind: k, start: int32(p.i), end: int32(p.i + len(lit)), size: 1})
	p.i += len(lit)
	return true
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *jsonParser) number() bool {
	b, i := p.b, p.i
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	integer := true
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	p.doc.nodes = append(p.doc.nodes, jsonNode{kind: jsonNumber, integer: integer, start: int32(start), end: int32(i), size: 1})
	p.i = i
	return true
}

// string reads a string as encoding/json's scanner does: no control characters, only
// the escapes \" \\ \/ \b \f \n \r \t \uXXXX.
func (p *jsonParser) string() bool {
	b := p.b
	i := p.i + 1
	start := i
	escaped, high := false, false
	for {
		for i < len(b) && plainByte(b[i]) {
			i++
		}
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '"':
			if high && !escaped && !utf8.Valid(b[start:i]) {
				escaped = true // decoding replaces invalid UTF-8 with U+FFFD
			}
			p.doc.nodes = append(p.doc.nodes, jsonNode{kind: jsonString, escaped: escaped, start: int32(start), end: int32(i), size: 1})
			p.i = i + 1
			return true
		case c == '\\':
			escaped = true
			i++
			if i >= len(b) {
				return false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(b)-i < 5 || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return false
				}
				i += 5
			default:
				return false
			}
		case c < 0x20:
			return false
		default: // c >= utf8.RuneSelf
			high = true
			i++
		}
	}
}

// plainByte reports whether c stands for itself in a JSON string: ASCII, printable,
// neither quote nor backslash.
func plainByte(c byte) bool { return c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' }

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (p *jsonParser) array(depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	at := len(p.doc.nodes)
	p.doc.nodes = append(p.doc.nodes, jsonNode{kind: jsonArray, start: int32(p.i)})
	p.i++ // [
	p.space()
	var n int32
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
	} else {
		for {
			if !p.value(depth) {
				return false
			}
			n++
			p.space()
			if p.i >= len(p.b) {
				return false
			}
			if c := p.b[p.i]; c == ',' {
				p.i++
				p.space()
				continue
			} else if c == ']' {
				p.i++
				break
			}
			return false
		}
	}
	nd := &p.doc.nodes[at]
	nd.end, nd.size, nd.members = int32(p.i), int32(len(p.doc.nodes)-at), n
	return true
}

func (p *jsonParser) object(depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	at := len(p.doc.nodes)
	p.doc.nodes = append(p.doc.nodes, jsonNode{kind: jsonObject, start: int32(p.i)})
	p.i++ // {
	p.space()
	var n int32
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
	} else {
		for {
			if p.i >= len(p.b) || p.b[p.i] != '"' || !p.string() {
				return false
			}
			if p.doc.nodes[len(p.doc.nodes)-1].escaped {
				p.doc.plain = false
			}
			p.space()
			if p.i >= len(p.b) || p.b[p.i] != ':' {
				return false
			}
			p.i++
			p.space()
			if !p.value(depth) {
				return false
			}
			n++
			p.space()
			if p.i >= len(p.b) {
				return false
			}
			if c := p.b[p.i]; c == ',' {
				p.i++
				p.space()
				continue
			} else if c == '}' {
				p.i++
				break
			}
			return false
		}
	}
	nd := &p.doc.nodes[at]
	nd.end, nd.size, nd.members = int32(p.i), int32(len(p.doc.nodes)-at), n
	if n > 1 && p.doc.plain && repeatsKey(p.doc, at) {
		p.doc.plain = false
	}
	return true
}

// repeatsKey reports whether the object at i may repeat a key.
func repeatsKey(doc *jsonDoc, i int) bool {
	o := &doc.nodes[i]
	if o.members > maxScanKeys {
		return true
	}
	var keys [maxScanKeys][]byte
	k := 0
	for m := range doc.members(i) {
		keys[k] = doc.bytes(m.key)
		for _, prev := range keys[:k] {
			if string(prev) == string(keys[k]) {
				return true
			}
		}
		k++
	}
	return false
}

// jsonMember is one key-value pair of an object: node indexes.
type jsonMember struct{ key, value int }

// members iterates over the members of the object at i.
func (d *jsonDoc) members(i int) func(yield func(jsonMember) bool) {
	return func(yield func(jsonMember) bool) {
		n := int(d.nodes[i].members)
		j := i + 1
		for range n {
			v := j + 1
			if !yield(jsonMember{j, v}) {
				return
			}
			j = v + int(d.nodes[v].size)
		}
	}
}

// member returns the value of the object at i under name. The doc must be plain.
func (d *jsonDoc) member(i int, name string) (int, bool) {
	n := int(d.nodes[i].members)
	j := i + 1
	for range n {
		v := j + 1
		if string(d.bytes(j)) == name {
			return v, true
		}
		j = v + int(d.nodes[v].size)
	}
	return 0, false
}

// bytes returns the bytes of node i, a string's without its quotes. For an escaped
// string they are not its value.
func (d *jsonDoc) bytes(i int) []byte {
	n := &d.nodes[i]
	return d.data[n.start:n.end]
}

// raw returns the bytes of node i, quotes included for a string.
func (d *jsonDoc) raw(i int) []byte {
	n := &d.nodes[i]
	if n.kind == jsonString {
		return d.data[n.start-1 : n.end+1]
	}
	return d.data[n.start:n.end]
}
