package events

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Door is what the gateway and the SDK share: it turns events as producers send them
// into messages ready for the log. It validates (unless disabled), seals every personal
// field with the customer's data key, encodes the event in structured mode and computes
// its subject and dedup key. Both doors use this one code path, so an event is checked
// and protected the same way whichever door it comes through.
type Door struct {
	layout    Layout
	validator *Validator
	sealer    *Sealer
	validate  bool
}

// Message is an event ready to be appended.
type Message struct {
	Event    *Event
	Stream   string
	Subject  string
	DedupKey string
	Body     []byte // structured-mode JSON, personal fields sealed
}

// NatsMsg returns the NATS message carrying it, with the dedup key as Nats-Msg-Id.
func (m *Message) NatsMsg() *nats.Msg {
	// The header literal: jetstream.MsgIDHeader is in canonical form already.
	return &nats.Msg{Subject: m.Subject, Header: nats.Header{jetstream.MsgIDHeader: []string{m.DedupKey}}, Data: m.Body}
}

// NewDoor returns a door over the given layout. keys may be nil only if no event with
// personal fields will pass; such an event is then refused with ErrKeyUnavailable.
func NewDoor(layout Layout, validator *Validator, keys KeySource, validate bool) *Door {
	var s *Sealer
	if keys != nil {
		s = NewSealer(keys)
	}
	return &Door{layout: layout, validator: validator, sealer: s, validate: validate}
}

// Prepare turns a batch of events into messages. errs[i] is non-nil when event i was
// refused (a FieldErrors) or could not be sealed (ErrKeyUnavailable); msgs[i] is then
// nil. Data keys for all customers of the batch are fetched in one request.
func (d *Door) Prepare(ctx context.Context, evs []*Event) (msgs []*Message, errs []error) {
	checked := make([]Checked, len(evs))
	errs = make([]error, len(evs))
	var customers []string // of the events with personal fields, each once
	seen := map[string]struct{}{}
	for i, e := range evs {
		if errs[i] = d.check(e, &checked[i]); errs[i] != nil || !checked[i].Schema.HasPersonal() {
			continue
		}
		if _, ok := seen[e.Subject]; !ok {
			seen[e.Subject] = struct{}{}
			customers = append(customers, e.Subject)
		}
	}
	// Events without personal fields need no key: a key service outage fails only the
	// events that need one.
	keys := d.fetchKeys(ctx, customers)
	return d.encode(evs, checked, errs, keys.of), errs
}

// fetchedKeys is the answer to one key request.
type fetchedKeys struct {
	keys map[string]DataKey
	err  error
}

func (d *Door) fetchKeys(ctx context.Context, customers []string) *fetchedKeys {
	keys, err := d.sealer.customerKeys(ctx, customers)
	return &fetchedKeys{keys, err}
}

// of returns a customer's key.
func (f *fetchedKeys) of(customer string) (DataKey, error) {
	if f.err != nil {
		return DataKey{}, f.err
	}
	k, ok := f.keys[customer]
	if !ok {
		return DataKey{}, fmt.Errorf("%w: no key returned for customer", ErrKeyUnavailable)
	}
	return k, nil
}

// encode seals and encodes the checked events of a batch into messages, recording
// in errs why an event could not be.
func (d *Door) encode(evs []*Event, checked []Checked, errs []error, keyOf func(customer string) (DataKey, error)) []*Message {
	msgs := make([]*Message, len(evs))
	ms := make([]Message, len(evs))
	var sc sealScratch
	var buf []byte // bodies are cut from shared blocks
	for i, e := range evs {
		if errs[i] != nil {
			continue
		}
		c := &checked[i]
		var key *DataKey
		if c.Schema.HasPersonal() {
			k, err := keyOf(e.Subject)
			if err != nil {
				errs[i] = err
				continue
			}
			key = &k
		}
		if need := bodySize(c); cap(buf)-len(buf) < need {
			buf = make([]byte, 0, max(need, bodyBlock))
		}
		start := len(buf)
		buf = e.appendHead(buf)
		b, err := d.sealer.appendData(buf, c, key, &sc)
		if err != nil {
			buf = buf[:start]
			if key == nil {
				err = FieldErrors{{Field: "/data", Reason: "not valid JSON: " + err.Error()}}
			}
			errs[i] = err
			continue
		}
		buf = append(b, '}')
		body := buf[start:len(buf):len(buf)]
		if err := d.validator.CheckSize(len(body)); err != nil {
			errs[i] = err
			continue
		}
		p := e.Partition
		if !e.PartitionWide() {
			p = d.layout.PartitionOf(e.Subject)
		}
		ms[i] = Message{Event: e, Stream: d.layout.Stream(p), Subject: d.layout.Subject(p, e.Type), DedupKey: e.DedupKey(), Body: body}
		msgs[i] = &ms[i]
	}
	return msgs
}

// bodyBlock is the size of the blocks message bodies are cut from.
const bodyBlock = 64 << 10

// bodySize estimates the encoded size of a checked event, sealed.
func bodySize(c *Checked) int {
	e := c.Event
	n := 160 + len(e.ID) + len(e.Source) + len(e.Type) + len(e.Subject) + len(e.DataSchema) + len(e.Data)
	for _, f := range c.fields {
		n += 128 + 4*int(f.end-f.start)/3
	}
	return n
}

func (d *Door) check(e *Event, c *Checked) error {
	if d.validate {
		return d.validator.checkInput(e, c)
	}
	// Validation off: only what sealing and routing need.
	var errs FieldErrors
	s := d.validator.checkEnvelope(e, &errs)
	if err := errs.err(); err != nil {
		return err
	}
	*c = Checked{Event: e, Schema: s}
	if c.readFast(false) || !s.HasPersonal() {
		return nil // not read: encoding compacts, or refuses what is not JSON
	}
	doc, err := parseData(e.Data)
	if err != nil {
		return FieldErrors{{Field: "/data", Reason: "not valid JSON: " + err.Error()}}
	}
	if _, ok := doc.(map[string]any); !ok {
		return FieldErrors{{Field: "/data", Reason: "must be a JSON object"}}
	}
	c.doc = doc
	return nil
}

// classifyPublishError says whether a failed publish certainly did not store the event.
func classifyPublishError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return fmt.Errorf("%w: %s", ErrStreamRefused, apiErr.Description)
	}
	return fmt.Errorf("%w: %w", ErrAckUnknown, err)
}
