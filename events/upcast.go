package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/touchstream/touchstream/schemas"
)

// Upcaster rewrites the payload of one major version of an event type into the next
// one. The log keeps every event as it was written, forever; upcasters let code that
// knows only the current version read all of them (see Decode and UpcastEvent).
//
// An upcaster works on JSON, not on Go types, so a chain v1 -> v2 -> v3 needs no Go type
// for the versions in between, and it works on both forms of a payload: the input form
// (personal fields in clear) and the stored form (personal fields sealed). It must leave
// every personal value where it is: a sealed value is bound to its JSON pointer and
// would no longer open anywhere else.
type Upcaster struct {
	Type string // the event type, e.g. "recharge.completed"
	From int    // the major version it reads; it writes From+1
	// Resolves names, by JSON pointer into the payload, each breaking difference
	// between the two versions that Up takes care of: a required field it fills in, a
	// field it renames or drops, a value it maps into a narrower set. The compatibility
	// test (upcast_test.go) refuses a breaking difference that the upcaster of that
	// step does not list, and a listed one that is not there.
	Resolves []string
	// Up rewrites doc, a valid payload of version From, in place into a valid payload
	// of version From+1. Numbers are json.Number, so amounts keep every digit. An
	// error (see upcastError) names the field by JSON pointer in the payload.
	Up func(doc map[string]any) error
}

// upcasters is the registry: one entry per type and version that has a successor.
// When a schema gets a new major version, write its upcaster below and list it here;
// the compatibility test fails until the new version's breaking differences are all
// resolved and every earlier example and stored event upcasts into a valid payload.
var upcasters = []Upcaster{
	{Type: TypeRechargeCompleted, From: 1, Resolves: []string{"/credited"}, Up: rechargeCompletedV1},
}

// rechargeCompletedV1 upcasts recharge.completed v1 to v2. v1 had a single amount,
// paid and credited alike (no v1 producer ran promotions): v2 keeps it as what was
// paid and credits the same.
func rechargeCompletedV1(doc map[string]any) error {
	amount, ok := doc["amount"].(map[string]any)
	if !ok {
		return upcastError("/amount", "required, an object, to derive /credited")
	}
	doc["credited"] = maps.Clone(amount) // fen and currency: flat values
	return nil
}

// upcastError is the error of an upcaster that cannot read its input: pointer names
// the field in the payload, reason says why. Decode reports it under /data.
func upcastError(pointer, reason string) error {
	return FieldErrors{{Field: pointer, Reason: reason}}
}

type upcastKey struct {
	typ  string
	from int
}

// upcasterIndex finds an upcaster by type and version, built once from the registry.
var upcasterIndex = sync.OnceValue(func() map[upcastKey]*Upcaster {
	out := make(map[upcastKey]*Upcaster, len(upcasters))
	for i := range upcasters {
		u := &upcasters[i]
		out[upcastKey{u.Type, u.From}] = u
	}
	return out
})

func upcasterFrom(eventType string, from int) (*Upcaster, bool) {
	u, ok := upcasterIndex()[upcastKey{eventType, from}]
	return u, ok
}

// Upcasters returns the registered upcasters, sorted by type and version.
func Upcasters() []Upcaster {
	out := slices.Clone(upcasters)
	for i := range out {
		out[i].Resolves = slices.Clone(out[i].Resolves)
	}
	slices.SortFunc(out, func(a, b Upcaster) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return a.From - b.From
	})
	return out
}

// CurrentMajor returns the version that payloads of eventType at major version from
// are read as: the last of the upcasters' chain from there, or from itself.
func CurrentMajor(eventType string, from int) int {
	for {
		if _, ok := upcasterFrom(eventType, from); !ok {
			return from
		}
		from++
	}
}

// Upcast rewrites a payload of eventType at major version from into the current
// version, one upcaster at a time, and returns it with its version. A payload that has
// no upcaster from its version is returned as it is. The payload must be valid for its
// version (validate first); a refusal is a FieldErrors naming fields under /data.
func Upcast(eventType string, from int, data json.RawMessage) (json.RawMessage, int, error) {
	u, ok := upcasterFrom(eventType, from)
	if !ok {
		return data, from, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return nil, from, FieldErrors{{Field: "/data", Reason: fmt.Sprintf("upcast %s v%d: not a JSON object", eventType, from)}}
	}
	major := from
	for ok {
		if err := u.Up(doc); err != nil {
			return nil, from, upcastFailed(eventType, major, err)
		}
		major++
		u, ok = upcasterFrom(eventType, major)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, from, fmt.Errorf("upcast %s v%d to v%d: encode: %w", eventType, from, major, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), major, nil
}

// upcastFailed words an upcaster's error as field errors under /data.
func upcastFailed(eventType string, from int, err error) error {
	step := fmt.Sprintf("upcast %s v%d to v%d: ", eventType, from, from+1)
	var fe FieldErrors
	if !errors.As(err, &fe) {
		return FieldErrors{{Field: "/data", Reason: step + err.Error()}}
	}
	out := make(FieldErrors, len(fe))
	for i, f := range fe {
		out[i] = FieldError{Field: "/data" + f.Field, Reason: step + f.Reason, kind: f.kind}
	}
	return out
}

// UpcastEvent returns the event as the current version of its type: e itself when it
// is current, or a copy with its data upcast and its dataschema naming the version
// reached. Read tools (history, audit) use it to show every event in today's shape;
// projections need not, since Decode upcasts.
func UpcastEvent(e *Event) (*Event, error) {
	t, major, ok := schemas.ParseURI(e.DataSchema)
	if !ok || t != e.Type {
		return e, nil // not ours to judge here: validation names the problem
	}
	if _, ok := upcasterFrom(t, major); !ok {
		return e, nil
	}
	data, to, err := Upcast(t, major, e.Data)
	if err != nil {
		return nil, fmt.Errorf("upcast event %s: %w", e.ID, err)
	}
	out := *e
	out.Data, out.DataSchema = data, schemas.URI(t, to)
	return &out, nil
}
