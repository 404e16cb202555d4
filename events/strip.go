package events

// AppendWithoutPersonal appends data, a payload of the schema's type, to b with every
// personal field removed (the member, key and value), the rest kept byte for byte.
// It reports false, appending nothing, when data is not the compact, plain JSON the
// log holds (the caller then removes the fields from a decoded copy).
func (s *Schema) AppendWithoutPersonal(b, data []byte) ([]byte, bool) {
	if len(s.personal) == 0 {
		return append(b, data...), true
	}
	doc := docPool.Get().(*jsonDoc)
	defer docPool.Put(doc)
	if !parseJSON(doc, data) || !doc.plain || !doc.compact {
		return b, false
	}
	tree := stripTree{}
	for _, toks := range s.personal {
		tree.add(toks)
	}
	return appendStripped(b, doc, 0, tree), true
}

// stripTree holds the pointers to remove: a member whose subtree is nil goes.
type stripTree map[string]stripTree

func (t stripTree) add(toks []string) {
	if len(toks) == 0 {
		return
	}
	if len(toks) == 1 {
		t[toks[0]] = nil
		return
	}
	sub, ok := t[toks[0]]
	if ok && sub == nil {
		return // the whole member goes already
	}
	if !ok {
		sub = stripTree{}
		t[toks[0]] = sub
	}
	sub.add(toks[1:])
}

// appendStripped appends node i of doc without the members tree names. A pointer
// through anything but an object removes nothing, as a lookup would find nothing.
func appendStripped(b []byte, doc *jsonDoc, i int, tree stripTree) []byte {
	n := &doc.nodes[i]
	if tree == nil || n.kind != jsonObject {
		return append(b, doc.raw(i)...)
	}
	b = append(b, '{')
	first := true
	j := i + 1
	for range n.members {
		val := j + 1
		sub, named := tree[string(doc.bytes(j))]
		if !named || sub != nil {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, doc.raw(j)...)
			b = append(b, ':')
			b = appendStripped(b, doc, val, sub)
		}
		j = val + int(doc.nodes[val].size)
	}
	return append(b, '}')
}
