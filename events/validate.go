package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/touchstream/touchstream/schemas"
)

// Limits bound what the doors accept.
type Limits struct {
	// MaxSize is the largest structured-mode encoding of a stored event, in bytes.
	MaxSize int
	// MaxFuture is how far ahead of the receiver's clock an event time may be.
	MaxFuture time.Duration
	// MaxAge is the late-arrival limit: how far in the past an event time may be.
	MaxAge time.Duration
}

// DefaultLimits: 64 KiB events, five minutes of clock skew, thirty days late.
func DefaultLimits() Limits {
	return Limits{MaxSize: 64 << 10, MaxFuture: 5 * time.Minute, MaxAge: 30 * 24 * time.Hour}
}

// Validator checks events against the contract. The doors (gateway and SDK) call
// CheckInput on what producers send; consumers call CheckStored on what they read.
type Validator struct {
	cat        *Catalog
	limits     Limits
	partitions int
	now        func() time.Time
}

// NewValidator returns a validator for a log of the given number of partitions.
// A nil clock means time.Now.
func NewValidator(cat *Catalog, partitions int, limits Limits, now func() time.Time) *Validator {
	if now == nil {
		now = time.Now
	}
	return &Validator{cat: cat, limits: limits, partitions: partitions, now: now}
}

// Checked is an event that passed CheckInput: its schema and its parsed payload, ready
// for sealing.
type Checked struct {
	Event  *Event
	Schema *Schema
	doc    any // parsed data (input form), when read by encoding/json
	// When read by parseJSON instead (the fast path): the payload is valid JSON, plain
	// (no repeated or escaped key), compact or not, and fields lists its personal
	// values in document order.
	read    bool
	compact bool
	fields  []personalField
}

// personalField is a personal value found in a payload read by parseJSON.
type personalField struct {
	pointer    string // the schema's JSON pointer
	start, end int32  // the value's bytes, a string's quotes included
	str        bool   // the value is a string
	escaped    bool   // ... whose bytes are not its value
}

// CheckInput validates an event as a producer sent it: envelope attributes, the payload
// against the input form of its schema, and the time bounds. The returned error is a
// FieldErrors naming every refused field.
func (v *Validator) CheckInput(e *Event) (*Checked, error) {
	c := new(Checked)
	if err := v.checkInput(e, c); err != nil {
		return nil, err
	}
	return c, nil
}

// checkInput is CheckInput into c.
func (v *Validator) checkInput(e *Event, c *Checked) error {
	var errs FieldErrors
	s := v.checkEnvelope(e, &errs)
	if s != nil {
		v.checkTime(e, &errs)
	}
	if len(errs) > 0 || s == nil {
		return errs.err()
	}
	*c = Checked{Event: e, Schema: s}
	if c.readFast(true) {
		return nil
	}
	doc, err := v.checkInputSlow(e, s)
	if err != nil {
		return err
	}
	c.doc = doc
	return nil
}

// readFast reads the payload with parseJSON and, if validate, checks it against the
// input form and the Go type. It returns false (c unchanged) unless every step is sure
// the payload passes: the caller then takes the original path, which decides.
func (c *Checked) readFast(validate bool) bool {
	doc := docPool.Get().(*jsonDoc)
	defer releaseDoc(doc)
	s := c.Schema
	if !parseJSON(doc, c.Event.Data) || !doc.plain || doc.nodes[0].kind != jsonObject {
		return false
	}
	if validate && (s.fastInput.check(doc, 0, 0) != pass || s.shape != nil && !s.shape.holds(doc, 0)) {
		return false
	}
	c.read, c.compact = true, doc.compact
	if s.HasPersonal() {
		c.fields = findPersonal(doc, s, c.fields[:0])
	}
	return true
}

func releaseDoc(doc *jsonDoc) {
	doc.data = nil
	if cap(doc.nodes) <= 4096 {
		docPool.Put(doc)
	}
}

// findPersonal appends the personal values present in doc, in document order.
func findPersonal(doc *jsonDoc, s *Schema, out []personalField) []personalField {
	for k, toks := range s.personal {
		i, ok := 0, true
		for _, t := range toks {
			if doc.nodes[i].kind != jsonObject {
				ok = false
				break
			}
			if i, ok = doc.member(i, t); !ok {
				break
			}
		}
		if !ok {
			continue
		}
		n := &doc.nodes[i]
		f := personalField{pointer: s.Personal[k], start: n.start, end: n.end, str: n.kind == jsonString, escaped: n.escaped}
		if f.str {
			f.start, f.end = f.start-1, f.end+1
		}
		out = append(out, f)
	}
	for i := 1; i < len(out); i++ { // few: insertion sort
		for j := i; j > 0 && out[j].start < out[j-1].start; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// checkInputSlow is CheckInput's original path, for payloads the fast path is not sure
// about: it decides, and words every refusal.
func (v *Validator) checkInputSlow(e *Event, s *Schema) (any, error) {
	var errs FieldErrors
	doc, err := parseData(e.Data)
	if err != nil {
		errs.add("/data", "not valid JSON: "+err.Error())
		return nil, errs
	}
	if _, ok := doc.(map[string]any); !ok {
		errs.add("/data", "must be a JSON object")
		return nil, errs
	}
	if err := s.input.Validate(doc); err != nil {
		return nil, redactPersonal(s, doc, schemaErrors("/data", err))
	}
	if err := checkDecodes(e, s, doc); err != nil {
		var fe FieldErrors
		if errors.As(err, &fe) {
			return nil, redactPersonal(s, doc, fe)
		}
		return nil, err
	}
	return doc, nil
}

// redactPersonal keeps refusals free of personal data: a schema error on a personal
// field may quote the value sent ("'+8613...' does not match pattern ..."), and callers
// log errors. The value is replaced by "[personal]", or the reason by a generic one
// when the value cannot be found in it.
func redactPersonal(s *Schema, doc any, errs FieldErrors) FieldErrors {
	if !s.HasPersonal() {
		return errs
	}
	m, _ := doc.(map[string]any)
	for i, fe := range errs {
		ptr, ok := strings.CutPrefix(fe.Field, "/data")
		if !ok || !slices.Contains(s.Personal, ptr) {
			continue
		}
		var v string
		if parent, name, ok := resolveParent(m, ptr); ok && m != nil {
			v, _ = parent[name].(string)
		}
		switch {
		case v != "" && strings.Contains(fe.Reason, v):
			errs[i].Reason = strings.ReplaceAll(fe.Reason, v, "[personal]")
		case strings.ContainsAny(fe.Reason, `'"`):
			errs[i].Reason = "invalid value (not quoted: personal field)"
		}
	}
	return errs
}

// checkDecodes refuses a payload that its schema accepts but its Go type cannot hold.
// JSON Schema counts 1e2 and 100.0 as integers and accepts some date-times that
// time.Time does not parse; such an event would be stored, then parked by every
// consumer that decodes it. Types without a Go type are not checked.
func checkDecodes(e *Event, s *Schema, doc any) error {
	p, ok := NewPayload(s.Type, s.Major)
	if !ok {
		return nil
	}
	err := strictUnmarshal(e.Data, p)
	if err == nil {
		return nil
	}
	field, reason := "/data", err.Error()
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		for _, tok := range strings.Split(te.Field, ".") {
			field += "/" + pointerEscaper.Replace(tok)
		}
		switch te.Type.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			reason = fmt.Sprintf("%s must be written as a whole number without fraction or exponent (100, not 100.0 or 1e2)", truncate(te.Value, 32))
		default:
			reason = fmt.Sprintf("cannot be decoded as %s", te.Type)
		}
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		// encoding/json does not say which field a time.Time failed in: find the value.
		if at, ok := findString(doc, pe.Value, ""); ok {
			field += at
		}
		reason = fmt.Sprintf("not a time Go can read (RFC 3339, upper-case T and Z, no leap second): %q", truncate(pe.Value, 40))
	}
	return FieldErrors{{Field: field, Reason: reason}}
}

// findString returns the JSON pointer of the first string equal to value in doc.
func findString(doc any, value, at string) (string, bool) {
	switch n := doc.(type) {
	case string:
		return at, n == value
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(n)) {
			if p, ok := findString(n[k], value, at+"/"+pointerEscaper.Replace(k)); ok {
				return p, true
			}
		}
	case []any:
		for i, v := range n {
			if p, ok := findString(v, value, at+"/"+strconv.Itoa(i)); ok {
				return p, true
			}
		}
	}
	return "", false
}

// CheckStored validates an event read from the log: envelope attributes and the payload
// against the stored form of its schema (every personal field sealed). It does not check
// time bounds: the log keeps history forever.
func (v *Validator) CheckStored(e *Event) (*Schema, error) {
	var errs FieldErrors
	s := v.checkEnvelope(e, &errs)
	if len(errs) > 0 || s == nil {
		return nil, errs.err()
	}
	if storedFast(s, e.Data) {
		return s, nil
	}
	if err := s.checkStoredSlow(e.Data); err != nil {
		return nil, err
	}
	return s, nil
}

// checkStoredSlow validates data against the stored form with the schema library.
func (s *Schema) checkStoredSlow(data []byte) error {
	doc, err := parseData(data)
	if err != nil {
		var errs FieldErrors
		errs.add("/data", "not valid JSON: "+err.Error())
		return errs
	}
	if err := s.stored.Validate(doc); err != nil {
		return schemaErrors("/data", err)
	}
	return nil
}

// storedFast reports whether the fast path is sure data passes the stored form.
func storedFast(s *Schema, data []byte) bool {
	doc := docPool.Get().(*jsonDoc)
	defer releaseDoc(doc)
	return parseJSON(doc, data) && doc.plain && s.fastStored.check(doc, 0, 0) == pass
}

// CheckSize refuses an encoded event over the size limit.
func (v *Validator) CheckSize(encoded int) error {
	if v.limits.MaxSize > 0 && encoded > v.limits.MaxSize {
		var errs FieldErrors
		errs.addKind(ErrTooLarge, "", fmt.Sprintf("event is %d bytes, the limit is %d", encoded, v.limits.MaxSize))
		return errs
	}
	return nil
}

func (v *Validator) checkEnvelope(e *Event, errs *FieldErrors) *Schema {
	checkText(errs, "/id", e.ID, 256)
	checkText(errs, "/source", e.Source, 256)
	var s *Schema
	if known, ok := v.cat.Lookup(e.DataSchema); ok && e.Type != "" && known.Type == e.Type {
		s = known // what the cases below find for a known schema, without parsing its URI
	}
	switch {
	case s != nil:
	case e.Type == "":
		errs.add("/type", "required")
	case e.DataSchema == "":
		if _, ok := v.cat.Latest(e.Type); !ok {
			errs.addKind(ErrUnknownType, "/type", fmt.Sprintf("unknown type %q", truncate(e.Type, 64)))
		} else {
			errs.add("/dataschema", "required: the schema URI carries the major version, e.g. "+schemas.URI(e.Type, 1))
		}
	default:
		t, _, ok := schemas.ParseURI(e.DataSchema)
		switch {
		case !ok:
			errs.addKind(ErrUnknownType, "/dataschema", fmt.Sprintf("unknown schema %q: want %s<type>/v<major>", truncate(e.DataSchema, 96), schemas.BaseURI))
		case t != e.Type:
			errs.add("/dataschema", fmt.Sprintf("names type %q but the event type is %q", t, truncate(e.Type, 64)))
		default:
			var found bool
			if s, found = v.cat.Lookup(e.DataSchema); !found {
				if _, known := v.cat.Latest(e.Type); known {
					errs.addKind(ErrUnknownType, "/dataschema", fmt.Sprintf("unknown version %q of type %q", e.DataSchema, e.Type))
				} else {
					errs.addKind(ErrUnknownType, "/type", fmt.Sprintf("unknown type %q", truncate(e.Type, 64)))
				}
			}
		}
	}
	if s == nil {
		v.checkScope(e, schemas.ScopeCustomer, errs)
		return nil
	}
	v.checkScope(e, s.Scope, errs)
	if len(e.Data) == 0 {
		errs.add("/data", "required")
	}
	return s
}

// printableASCII reports whether s is all ASCII from '!' to '~': no spaces, no control
// characters, valid UTF-8.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

func (v *Validator) checkScope(e *Event, scope string, errs *FieldErrors) {
	if scope == schemas.ScopePartition {
		if e.Subject != "" {
			errs.add("/subject", fmt.Sprintf("%s is partition-wide: it names a partition, not a customer", e.Type))
		}
		if e.Partition < 0 || e.Partition >= v.partitions {
			errs.add("/partition", fmt.Sprintf("%d is not a partition (0-%d)", e.Partition, v.partitions-1))
		}
		return
	}
	switch {
	case e.Subject == "":
		errs.add("/subject", "required: the customer id")
	case !ValidCustomerID(e.Subject):
		errs.add("/subject", "must be an opaque customer id of 1-64 characters [A-Za-z0-9_-]")
	}
}

func (v *Validator) checkTime(e *Event, errs *FieldErrors) {
	if e.Time.IsZero() {
		errs.add("/time", "required (RFC 3339 with offset)")
		return
	}
	now := v.now()
	if v.limits.MaxFuture > 0 && e.Time.After(now.Add(v.limits.MaxFuture)) {
		errs.add("/time", fmt.Sprintf("%s is more than %s in the future", e.Time.Format(time.RFC3339), v.limits.MaxFuture))
	}
	if v.limits.MaxAge > 0 && e.Time.Before(now.Add(-v.limits.MaxAge)) {
		errs.add("/time", fmt.Sprintf("%s is older than the late-arrival limit of %s", e.Time.Format(time.RFC3339), v.limits.MaxAge))
	}
}

func checkText(errs *FieldErrors, field, s string, max int) {
	if len(s) > 0 && len(s) <= max && printableASCII(s) {
		return
	}
	switch {
	case s == "":
		errs.add(field, "required")
	case len(s) > max:
		errs.add(field, "longer than "+strconv.Itoa(max)+" bytes")
	case !utf8.ValidString(s):
		errs.add(field, "not valid UTF-8")
	default:
		for _, r := range s {
			if unicode.IsControl(r) || unicode.IsSpace(r) {
				errs.add(field, "must not contain spaces or control characters")
				return
			}
		}
	}
}
