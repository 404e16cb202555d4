package events

import (
	"encoding/json"
	"fmt"

	"github.com/touchstream/touchstream/schemas"
)

func marshalPayload(p Payload) (json.RawMessage, error) {
	if p == nil {
		return nil, fmt.Errorf("events: nil payload")
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("events: encode %s payload: %w", p.EventType(), err)
	}
	return b, nil
}

func schemaURI(p Payload) string { return schemas.URI(p.EventType(), p.SchemaMajor()) }

// DecodeData decodes an event's payload into v, refusing unknown fields.
func DecodeData(e *Event, v any) error {
	if err := strictUnmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode %s data of event %s: %w", e.Type, e.ID, err)
	}
	return nil
}

// Decode decodes an event's payload into the Go type of the current version of its
// type, refusing unknown fields: a payload of an older major version is first upcast
// (see Upcast), so a v1 recharge.completed decodes into RechargeCompleted (v2) and
// code written for the current version replays the whole log. It works on both forms:
// personal fields read from the log hold their sealed value. Decode checks the shape of
// the payload, not the schema's constraints: validate first (Validator.CheckInput or
// CheckStored). An event whose type and version have no Go type is refused with an
// error matching ErrUnknownType; a payload that does not fit the type, or that cannot
// be upcast, with one matching ErrInvalid.
func Decode(e *Event) (Payload, error) {
	t, major, ok := schemas.ParseURI(e.DataSchema)
	var errs FieldErrors
	switch {
	case !ok:
		errs.addKind(ErrUnknownType, "/dataschema", fmt.Sprintf("unknown schema %q", truncate(e.DataSchema, 96)))
	case t != e.Type:
		errs.add("/dataschema", fmt.Sprintf("names type %q but the event type is %q", t, truncate(e.Type, 64)))
	}
	if err := errs.err(); err != nil {
		return nil, fmt.Errorf("decode event %s: %w", e.ID, err)
	}
	data := e.Data
	if _, ok := upcasterFrom(t, major); ok {
		var err error
		if data, major, err = Upcast(t, major, e.Data); err != nil {
			return nil, fmt.Errorf("decode event %s: %w", e.ID, err)
		}
	}
	p, ok := NewPayload(t, major)
	if !ok {
		errs.addKind(ErrUnknownType, "/dataschema", fmt.Sprintf("no Go type for %s v%d", t, major))
		return nil, fmt.Errorf("decode event %s: %w", e.ID, errs)
	}
	if fastUnmarshal(data, p) {
		return p, nil
	}
	p, _ = NewPayload(t, major) // the fast path may have filled it partly
	if err := strictUnmarshal(data, p); err != nil {
		return nil, fmt.Errorf("%w: decode %s data of event %s: %w", ErrInvalid, e.Type, e.ID, err)
	}
	return p, nil
}
