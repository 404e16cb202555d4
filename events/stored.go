package events

import (
	"encoding/json"
	"reflect"

	"github.com/touchstream/touchstream/schemas"
)

// ReadStored reads a message from the log: it decodes the envelope into e as
// Event.UnmarshalJSON does, runs check (the caller's own checks of e against where it
// was stored; nil for none), validates e as CheckStored does, and decodes the payload
// as Decode would. It parses the message once: the envelope, the validation and the
// payload are read from the same nodes wherever the fast paths are sure of their
// answer, and each step takes its reference path elsewhere, so the results are those
// of the three calls (FuzzFastDecode holds them to it).
//
// e.Data shares data's bytes (where the fast path reads it): data must not change
// while e is in use.
//
// The payload is nil when it was not decoded in the pass (an older major version to
// upcast, or a payload the fast path leaves to encoding/json): Decode then gives it,
// or its error. On an error, e holds what could be read of the envelope.
func (v *Validator) ReadStored(data []byte, e *Event, check func(*Event) error) (*Schema, Payload, error) {
	doc := docPool.Get().(*jsonDoc)
	defer releaseDoc(doc)
	var w wire
	at, fast := envelopeFromDoc(doc, data, &w, v.cat)
	if !fast {
		w = wire{}
		if err := json.Unmarshal(data, &w); err != nil {
			return nil, nil, err
		}
	}
	if err := e.fromWire(&w); err != nil {
		return nil, nil, err
	}
	if check != nil {
		if err := check(e); err != nil {
			return nil, nil, err
		}
	}
	if !fast || at == 0 {
		s, err := v.CheckStored(e)
		return s, nil, err
	}
	var errs FieldErrors
	s := v.checkEnvelope(e, &errs)
	if len(errs) > 0 || s == nil {
		return nil, nil, errs.err()
	}
	if s.fastStored.check(doc, at, 0) != pass {
		if err := s.checkStoredSlow(e.Data); err != nil {
			return nil, nil, err
		}
		return s, nil, nil
	}
	return s, fastPayload(e, doc, at), nil
}

// fastPayload fills the payload of e from node at of doc, as Decode would decode it;
// nil where Decode must decide (no Go type, an upcast, a value the fast path leaves to
// encoding/json).
func fastPayload(e *Event, doc *jsonDoc, at int) Payload {
	t, major, ok := schemas.ParseURI(e.DataSchema)
	if !ok || t != e.Type {
		return nil
	}
	if _, ok := upcasterFrom(t, major); ok {
		return nil
	}
	p, ok := NewPayload(t, major)
	if !ok {
		return nil
	}
	rv := reflect.ValueOf(p)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || !shapeFor(rv.Type().Elem()).fill(doc, at, rv.Elem()) {
		return nil
	}
	return p
}
