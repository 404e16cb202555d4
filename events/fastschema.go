package events

import (
	"math"
	"math/big"
	"regexp"
	"regexp/syntax"
	"strconv"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// fastSchema checks a payload read by parseJSON against a compiled schema without
// building Go values. It is the door's fast path and only ever says "valid" when the
// jsonschema library would: each keyword it knows is evaluated exactly, or answers
// unsure (a number it cannot compare exactly, a string it would have to unescape), and
// a schema using any keyword it does not know answers unsure. Anything but pass sends
// the payload to the library, which produces the refusal.
type fastSchema struct {
	known bool // every keyword of the schema is handled here
	boolS int8 // boolean schema: 1 true, -1 false, 0 not one

	types    jsonTypes // 0: any
	ref      *fastSchema
	allOf    []*fastSchema
	not      *fastSchema
	ifS      *fastSchema
	thenS    *fastSchema
	elseS    *fastSchema
	constV   *fastValue
	enum     []fastValue
	format   func(any) error
	required []string
	props    map[string]*fastSchema
	addl     int8 // additionalProperties: 0 absent or true, -1 false, 1 a schema
	addlS    *fastSchema
	minProps int // -1: none
	maxProps int
	depSch   map[string]*fastSchema
	minLen   int // -1: none
	maxLen   int
	pattern  func([]byte) bool
	minimum  *fastBound
	maximum  *fastBound
}

// jsonTypes is a set of JSON Schema types.
type jsonTypes uint8

const (
	typeNull jsonTypes = 1 << iota
	typeBoolean
	typeNumber
	typeInteger
	typeString
	typeArray
	typeObject
)

// fastValue is a const or enum value: the kinds compared exactly here.
type fastValue struct {
	kind    jsonKind // jsonNull, jsonFalse, jsonTrue, jsonNumber or jsonString; jsonArray for any other
	str     string
	num     int64 // jsonNumber: the value, when isInt
	isInt   bool  // an integer that fits int64
	integer bool  // an integer at all (e.g. 1e30 or 2.0)
}

// fastBound is a minimum or maximum.
type fastBound struct {
	i     int64 // the bound, when isInt
	isInt bool
	f     float64 // the bound, when exact
	exact bool
}

type verdict uint8

const (
	pass verdict = iota
	fail
	unsure
)

// and combines the verdicts of two keywords of one schema: any failure fails it.
func (v verdict) and(w verdict) verdict {
	switch {
	case v == fail || w == fail:
		return fail
	case v == unsure || w == unsure:
		return unsure
	}
	return pass
}

// compileFast translates a compiled schema, sharing the translation of shared
// subschemas (and so following $ref cycles).
func compileFast(s *jsonschema.Schema, memo map[*jsonschema.Schema]*fastSchema) *fastSchema {
	if s == nil {
		return nil
	}
	if f, ok := memo[s]; ok {
		return f
	}
	f := &fastSchema{known: true, minProps: -1, maxProps: -1, minLen: -1, maxLen: -1}
	memo[s] = f
	sub := func(s *jsonschema.Schema) *fastSchema { return compileFast(s, memo) }
	if s.DraftVersion < 2019 || s.RecursiveRef != nil || s.DynamicRef != nil || s.AnyOf != nil || s.OneOf != nil ||
		s.PropertyNames != nil || s.PatternProperties != nil || s.Dependencies != nil || s.DependentRequired != nil ||
		s.UnevaluatedProperties != nil || s.MinItems != nil || s.MaxItems != nil || s.UniqueItems || s.Contains != nil ||
		s.MinContains != nil || s.MaxContains != nil || s.Items != nil || s.AdditionalItems != nil || s.PrefixItems != nil ||
		s.Items2020 != nil || s.UnevaluatedItems != nil || s.ContentEncoding != nil || s.ContentMediaType != nil ||
		s.ContentSchema != nil || s.ExclusiveMaximum != nil || s.ExclusiveMinimum != nil || s.MultipleOf != nil ||
		len(s.Extensions) > 0 {
		f.known = false
		return f
	}
	if s.Bool != nil {
		f.boolS = -1
		if *s.Bool {
			f.boolS = 1
		}
		return f
	}
	if s.Types != nil {
		for _, t := range s.Types.ToStrings() {
			switch t {
			case "null":
				f.types |= typeNull
			case "boolean":
				f.types |= typeBoolean
			case "number":
				f.types |= typeNumber
			case "integer":
				f.types |= typeInteger
			case "string":
				f.types |= typeString
			case "array":
				f.types |= typeArray
			case "object":
				f.types |= typeObject
			}
		}
	}
	f.ref = sub(s.Ref)
	for _, a := range s.AllOf {
		f.allOf = append(f.allOf, sub(a))
	}
	f.not, f.ifS, f.thenS, f.elseS = sub(s.Not), sub(s.If), sub(s.Then), sub(s.Else)
	if s.Const != nil {
		v := toFastValue(*s.Const)
		f.constV = &v
	}
	if s.Enum != nil {
		f.enum = make([]fastValue, 0, len(s.Enum.Values))
		for _, v := range s.Enum.Values {
			f.enum = append(f.enum, toFastValue(v))
		}
	}
	if s.Format != nil {
		f.format = s.Format.Validate
	}
	f.required = s.Required
	if s.Properties != nil {
		f.props = make(map[string]*fastSchema, len(s.Properties))
		for k, p := range s.Properties {
			f.props[k] = sub(p)
		}
	}
	switch a := s.AdditionalProperties.(type) {
	case nil:
	case bool:
		if !a {
			f.addl = -1
		}
	case *jsonschema.Schema:
		f.addl, f.addlS = 1, sub(a)
	default:
		f.known = false
	}
	if s.MinProperties != nil {
		f.minProps = *s.MinProperties
	}
	if s.MaxProperties != nil {
		f.maxProps = *s.MaxProperties
	}
	if s.DependentSchemas != nil {
		f.depSch = make(map[string]*fastSchema, len(s.DependentSchemas))
		for k, d := range s.DependentSchemas {
			f.depSch[k] = sub(d)
		}
	}
	if s.MinLength != nil {
		f.minLen = *s.MinLength
	}
	if s.MaxLength != nil {
		f.maxLen = *s.MaxLength
	}
	if s.Pattern != nil {
		re, ok := s.Pattern.(*regexp.Regexp)
		if !ok {
			f.known = false
			return f
		}
		f.pattern = fastPattern(re)
	}
	f.minimum, f.maximum = toFastBound(s.Minimum), toFastBound(s.Maximum)
	return f
}

func toFastValue(v any) fastValue {
	switch v := v.(type) {
	case nil:
		return fastValue{kind: jsonNull}
	case bool:
		if v {
			return fastValue{kind: jsonTrue}
		}
		return fastValue{kind: jsonFalse}
	case string:
		return fastValue{kind: jsonString, str: v}
	case interface{ String() string }: // json.Number
		r, ok := new(big.Rat).SetString(v.String())
		if !ok {
			return fastValue{kind: jsonArray}
		}
		fv := fastValue{kind: jsonNumber, integer: r.IsInt()}
		if fv.integer && r.Num().IsInt64() {
			fv.num, fv.isInt = r.Num().Int64(), true
		}
		return fv
	}
	return fastValue{kind: jsonArray} // arrays, objects: never equal to what the fast path compares
}

func toFastBound(r *big.Rat) *fastBound {
	if r == nil {
		return nil
	}
	b := &fastBound{}
	if r.IsInt() && r.Num().IsInt64() {
		b.i, b.isInt = r.Num().Int64(), true
	}
	b.f, b.exact = r.Float64()
	return b
}

// fastPattern returns a matcher for re. A pattern that is one anchored character
// class of ASCII with a repetition ("^[A-Za-z0-9_.:-]+$", "^[A-Z]{3}$") is matched
// with a table; any other with re itself.
func fastPattern(re *regexp.Regexp) func([]byte) bool {
	prog, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return re.Match
	}
	if prog.Op != syntax.OpConcat || len(prog.Sub) != 3 || prog.Sub[0].Op != syntax.OpBeginText || prog.Sub[2].Op != syntax.OpEndText {
		return re.Match
	}
	rep := prog.Sub[1]
	lo, hi := 0, -1
	switch rep.Op {
	case syntax.OpStar:
	case syntax.OpPlus:
		lo = 1
	case syntax.OpRepeat:
		lo, hi = rep.Min, rep.Max
	default:
		return re.Match
	}
	if len(rep.Sub) != 1 || rep.Sub[0].Op != syntax.OpCharClass {
		return re.Match
	}
	var set [256]bool
	rs := rep.Sub[0].Rune
	for i := 0; i+1 < len(rs); i += 2 {
		if rs[i+1] >= utf8.RuneSelf {
			return re.Match
		}
		for r := rs[i]; r <= rs[i+1]; r++ {
			set[r] = true
		}
	}
	return func(b []byte) bool {
		// Only ASCII bytes are in the set, so a match is ASCII and bytes are characters.
		if len(b) < lo || hi >= 0 && len(b) > hi {
			return false
		}
		for _, c := range b {
			if !set[c] {
				return false
			}
		}
		return true
	}
}

// check evaluates node i of doc, which must be plain.
func (f *fastSchema) check(doc *jsonDoc, i int, depth int) verdict {
	if f == nil {
		return pass
	}
	if !f.known || depth > maxScanDepth {
		return unsure
	}
	switch f.boolS {
	case 1:
		return pass
	case -1:
		return fail
	}
	n := &doc.nodes[i]
	v := pass
	if f.types != 0 {
		v = v.and(f.checkType(n))
		if v == fail {
			return fail
		}
	}
	if f.constV != nil {
		v = v.and(equal(doc, i, f.constV))
	}
	if f.enum != nil {
		e := fail
		for k := range f.enum {
			if e = e.or(equal(doc, i, &f.enum[k])); e == pass {
				break
			}
		}
		v = v.and(e)
	}
	if v == fail {
		return fail
	}
	if f.format != nil {
		if n.kind != jsonString || n.escaped {
			v = unsure
		} else if f.format(string(doc.bytes(i))) != nil {
			return fail
		}
	}
	if f.ref != nil {
		if v = v.and(f.ref.check(doc, i, depth+1)); v == fail {
			return fail
		}
	}
	switch n.kind {
	case jsonObject:
		v = v.and(f.checkObject(doc, i, depth))
	case jsonString:
		v = v.and(f.checkString(doc, i))
	case jsonNumber:
		v = v.and(f.checkNumber(doc, i))
	}
	if v == fail {
		return fail
	}
	for _, a := range f.allOf {
		if v = v.and(a.check(doc, i, depth+1)); v == fail {
			return fail
		}
	}
	if f.not != nil {
		switch f.not.check(doc, i, depth+1) {
		case pass:
			return fail
		case unsure:
			v = unsure
		}
	}
	if f.ifS != nil {
		var branch *fastSchema
		switch f.ifS.check(doc, i, depth+1) {
		case pass:
			branch = f.thenS
		case fail:
			branch = f.elseS
		default:
			return unsure
		}
		v = v.and(branch.check(doc, i, depth+1))
	}
	return v
}

// or combines alternatives: any pass passes.
func (v verdict) or(w verdict) verdict {
	switch {
	case v == pass || w == pass:
		return pass
	case v == unsure || w == unsure:
		return unsure
	}
	return fail
}

func (f *fastSchema) checkType(n *jsonNode) verdict {
	var t jsonTypes
	switch n.kind {
	case jsonNull:
		t = typeNull
	case jsonFalse, jsonTrue:
		t = typeBoolean
	case jsonNumber:
		t = typeNumber
	case jsonString:
		t = typeString
	case jsonArray:
		t = typeArray
	case jsonObject:
		t = typeObject
	}
	switch {
	case f.types&t != 0:
		return pass
	case t == typeNumber && f.types&typeInteger != 0:
		if n.integer {
			return pass
		}
		return unsure // 1.0 and 1e2 are integers to JSON Schema
	}
	return fail
}

// equal compares node i with a const or enum value.
func equal(doc *jsonDoc, i int, want *fastValue) verdict {
	n := &doc.nodes[i]
	switch n.kind {
	case jsonNull, jsonFalse, jsonTrue:
		if n.kind == want.kind {
			return pass
		}
		return fail
	case jsonString:
		switch {
		case want.kind != jsonString:
			return fail
		case n.escaped:
			return unsure
		case string(doc.bytes(i)) == want.str:
			return pass
		}
		return fail
	case jsonNumber:
		switch {
		case want.kind != jsonNumber:
			return fail
		case !n.integer:
			return unsure
		case !want.integer:
			return fail
		case !want.isInt:
			return unsure
		}
		x, ok := parseInt(doc.bytes(i))
		switch {
		case !ok:
			return unsure
		case x == want.num:
			return pass
		}
		return fail
	}
	if want.kind != jsonArray {
		return fail // a container never equals a scalar
	}
	return unsure
}

func (f *fastSchema) checkObject(doc *jsonDoc, i int, depth int) verdict {
	o := &doc.nodes[i]
	v := pass
	if f.minProps >= 0 && int(o.members) < f.minProps || f.maxProps >= 0 && int(o.members) > f.maxProps {
		return fail
	}
	for _, r := range f.required {
		if _, ok := doc.member(i, r); !ok {
			return fail
		}
	}
	j := i + 1
	for range o.members {
		val := j + 1
		key := doc.bytes(j)
		var w verdict
		if p, ok := f.props[string(key)]; ok {
			w = p.check(doc, val, depth+1)
		} else {
			switch f.addl {
			case -1:
				w = fail
			case 1:
				w = f.addlS.check(doc, val, depth+1)
			}
		}
		if v = v.and(w); v == fail {
			return fail
		}
		if f.depSch != nil {
			if d, ok := f.depSch[string(key)]; ok {
				if v = v.and(d.check(doc, i, depth+1)); v == fail {
					return fail
				}
			}
		}
		j = val + int(doc.nodes[val].size)
	}
	return v
}

func (f *fastSchema) checkString(doc *jsonDoc, i int) verdict {
	if f.minLen < 0 && f.maxLen < 0 && f.pattern == nil {
		return pass
	}
	if doc.nodes[i].escaped {
		return unsure
	}
	b := doc.bytes(i)
	if f.minLen >= 0 || f.maxLen >= 0 {
		n := utf8.RuneCount(b)
		if f.minLen >= 0 && n < f.minLen || f.maxLen >= 0 && n > f.maxLen {
			return fail
		}
	}
	if f.pattern != nil && !f.pattern(b) {
		return fail
	}
	return pass
}

func (f *fastSchema) checkNumber(doc *jsonDoc, i int) verdict {
	if f.minimum == nil && f.maximum == nil {
		return pass
	}
	b := doc.bytes(i)
	v := pass
	if f.minimum != nil {
		v = v.and(compareBound(b, doc.nodes[i].integer, f.minimum, -1))
	}
	if f.maximum != nil {
		v = v.and(compareBound(b, doc.nodes[i].integer, f.maximum, 1))
	}
	return v
}

// compareBound checks the number b against a minimum (side -1: b >= bound) or a
// maximum (side 1: b <= bound).
func compareBound(b []byte, integer bool, bound *fastBound, side int) verdict {
	if integer && bound.isInt {
		if x, ok := parseInt(b); ok {
			if side < 0 && x >= bound.i || side > 0 && x <= bound.i {
				return pass
			}
			return fail
		}
	}
	// Otherwise in floating point, deciding only away from the bound: parsing rounds.
	if !bound.exact || math.Abs(bound.f) > 1<<53 {
		return unsure
	}
	x, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.Abs(x) > 1<<53 {
		return unsure
	}
	margin := 1e-9 * max(1, math.Abs(bound.f))
	switch {
	case x > bound.f+margin:
		if side > 0 {
			return fail
		}
		return pass
	case x < bound.f-margin:
		if side < 0 {
			return fail
		}
		return pass
	}
	return unsure
}

// parseInt parses a JSON integer of at most 18 digits (so it cannot overflow).
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var x int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		x = x*10 + int64(c-'0')
	}
	if neg {
		x = -x
	}
	return x, true
}
