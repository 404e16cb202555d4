package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
)

// Decoder turns stored messages into envelopes, validating each against the stored
// form of its schema: nothing unvalidated is ever folded.
type Decoder struct {
	layout    events.Layout
	validator *events.Validator
}

// NewDecoder returns a decoder for the layout's log.
func NewDecoder(layout events.Layout, cat *events.Catalog) *Decoder {
	return &Decoder{layout: layout, validator: events.NewValidator(cat, layout.Partitions, events.Limits{}, nil)}
}

// DecodeError is an event that failed to decode or validate. It is parked, never
// folded.
type DecodeError struct {
	Stream    string
	Seq       uint64
	Partition int
	Subject   string
	Event     *events.Event // what could be read of the envelope, possibly nil
	Err       error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode %s seq=%d subject=%s: %v", e.Stream, e.Seq, e.Subject, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Decode decodes one stored message.
func (d *Decoder) Decode(stream, subject string, seq uint64, storedAt time.Time, data []byte) (*Envelope, error) {
	p, typ, err := d.layout.ParseSubject(subject)
	if err != nil {
		return nil, &DecodeError{Stream: stream, Seq: seq, Partition: -1, Subject: subject, Err: err}
	}
	fail := func(ev *events.Event, err error) (*Envelope, error) {
		return nil, &DecodeError{Stream: stream, Seq: seq, Partition: p, Subject: subject, Event: ev, Err: err}
	}
	var ev events.Event
	// One parse of the message serves the envelope, its validation and the payload
	// (decoded here once for every projection of the group).
	s, payload, err := d.validator.ReadStored(data, &ev, func(ev *events.Event) error {
		if ev.Type != typ {
			return fmt.Errorf("subject carries type %q, envelope %q", typ, ev.Type)
		}
		if !ev.PartitionWide() && d.layout.PartitionOf(ev.Subject) != p {
			return fmt.Errorf("customer belongs to partition %d, stored in %d", d.layout.PartitionOf(ev.Subject), p)
		}
		if ev.PartitionWide() && ev.Partition != p {
			return fmt.Errorf("partition-wide event for partition %d stored in %d", ev.Partition, p)
		}
		return nil
	})
	if err != nil {
		if ev.ID == "" {
			return fail(nil, err)
		}
		return fail(&ev, err)
	}
	env := &Envelope{Event: ev, Schema: s, Stream: stream, Seq: seq, Partition: p, StoredAt: storedAt}
	if payload != nil {
		env.payload, env.payloadDone = payload, true
	}
	return env, nil
}

// DecodeMsg decodes a message delivered by a consumer.
func (d *Decoder) DecodeMsg(m jetstream.Msg) (*Envelope, uint64, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, 0, fmt.Errorf("message metadata: %w", err)
	}
	env, err := d.Decode(md.Stream, m.Subject(), md.Sequence.Stream, md.Timestamp, m.Data())
	return env, md.Sequence.Stream, err
}

// SequenceIndex maps a customer to the stream sequences of its events. The timeline
// read model implements it.
type SequenceIndex interface {
	// Sequences returns the stream and the ascending sequences of the customer's events
	// up to upTo. It returns an error matching ErrIndexBehind while the index has not
	// applied upTo in the customer's partition.
	Sequences(ctx context.Context, q Querier, customer string, upTo uint64) (stream string, seqs []uint64, err error)
}

// LogHistory implements History: sequences from an index, messages fetched directly
// from the stream by sequence.
type LogHistory struct {
	Index   SequenceIndex
	JS      jetstream.JetStream
	Decoder *Decoder
}

// History implements History.
func (h *LogHistory) History(ctx context.Context, q Querier, customer string, upTo uint64) ([]*Envelope, error) {
	stream, seqs, err := h.Index.Sequences(ctx, q, customer, upTo)
	if err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return nil, nil
	}
	s, err := h.JS.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("history of customer: stream %s: %w", stream, err)
	}
	out := make([]*Envelope, 0, len(seqs))
	for _, seq := range seqs {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("history: get %s seq=%d: %w", stream, seq, err)
		}
		env, err := h.Decoder.Decode(stream, m.Subject, m.Sequence, m.Time, m.Data)
		if err != nil {
			continue // parked when it was first met; it never counted
		}
		if env.Subject != customer {
			return nil, fmt.Errorf("history: index maps seq=%d to another customer", seq)
		}
		out = append(out, env)
	}
	return out, nil
}
