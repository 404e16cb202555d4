package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// SpecVersion is the CloudEvents version touchstream speaks.
const SpecVersion = "1.0"

// ContentType is the only data content type accepted: JSON.
const ContentType = "application/json"

// Event is a CloudEvents 1.0 event as it travels through touchstream.
//
// Subject is the opaque customer id. Partition-wide events (clock ticks, rule and model
// activations) have no subject and name their Partition instead; they are published
// once to every partition with the same id.
type Event struct {
	ID         string          // unique within Source; the SDK mints UUIDv7
	Source     string          // the channel system, e.g. "urn:touchstream:channel:recharge"
	Type       string          // stable type name, e.g. "recharge.completed"
	Subject    string          // customer id; empty for partition-wide events
	Partition  int             // partition-wide events only: the partition addressed
	Time       time.Time       // when it happened, with the producer's offset
	DataSchema string          // schema URI; carries the major version
	Data       json.RawMessage // the payload; personal fields sealed once stored
}

// PartitionWide reports whether the event addresses a partition rather than a customer.
func (e *Event) PartitionWide() bool { return e.Subject == "" }

// DedupKey is the idempotency key of the event: a hash of its source and id (and, for
// a partition-wide event, its partition), so two channels that both use id "1001" never
// collide. It is sent as the Nats-Msg-Id header.
func (e *Event) DedupKey() string {
	var in [256]byte
	b := append(in[:0], e.Source...)
	b = append(b, 0)
	b = append(b, e.ID...)
	if e.PartitionWide() {
		b = append(b, 0)
		b = strconv.AppendInt(b, int64(e.Partition), 10)
	}
	sum := sha256.Sum256(b)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
}

// Ref names the event by source and id, as retractions and corrections do.
func (e *Event) Ref() EventRef { return EventRef{Source: e.Source, ID: e.ID} }

// EventRef names an event by its CloudEvents source and id.
type EventRef struct {
	Source string `json:"source"`
	ID     string `json:"id"`
}

// wire is the structured-mode JSON form of an event.
type wire struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Partition       *int            `json:"partition,omitempty"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	DataSchema      string          `json:"dataschema"`
	Data            json.RawMessage `json:"data"`
}

// AppendJSON appends the structured-mode JSON encoding of the event to b. The encoding
// is compact, its attributes in a fixed order; Data is copied as it is.
func (e *Event) AppendJSON(b []byte) []byte {
	b = e.appendHead(b)
	b = append(b, e.Data...)
	return append(b, '}')
}

// appendHead appends the encoding up to the data: the attributes and `"data":`.
func (e *Event) appendHead(b []byte) []byte {
	b = append(b, `{"specversion":"1.0","id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"source":`...)
	b = appendString(b, e.Source)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	if e.Subject != "" {
		b = append(b, `,"subject":`...)
		b = appendString(b, e.Subject)
	} else {
		b = append(b, `,"partition":`...)
		b = strconv.AppendInt(b, int64(e.Partition), 10)
	}
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","datacontenttype":"application/json","dataschema":`...)
	b = appendString(b, e.DataSchema)
	return append(b, `,"data":`...)
}

// MarshalJSON encodes the event in CloudEvents structured mode.
func (e Event) MarshalJSON() ([]byte, error) {
	if !json.Valid(e.Data) {
		return nil, fmt.Errorf("event %s: data is not valid JSON", e.ID)
	}
	return e.AppendJSON(make([]byte, 0, 256+len(e.Data))), nil
}

// UnmarshalJSON decodes the structured-mode JSON form. It checks the shape of the
// envelope only; Validator checks the contents.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wire
	if !fastEnvelope(b, &w) {
		w = wire{}
		if err := json.Unmarshal(b, &w); err != nil {
			return err
		}
	}
	return e.fromWire(&w)
}

func (e *Event) fromWire(w *wire) error {
	var errs FieldErrors
	if w.SpecVersion != SpecVersion {
		errs.add("/specversion", fmt.Sprintf("must be %q, got %q", SpecVersion, w.SpecVersion))
	}
	if w.DataContentType != "" && w.DataContentType != ContentType {
		errs.add("/datacontenttype", fmt.Sprintf("must be %q, got %q", ContentType, w.DataContentType))
	}
	t, err := parseTime(w.Time)
	if err != nil {
		errs.add("/time", err.Error())
	}
	*e = Event{ID: w.ID, Source: w.Source, Type: w.Type, Subject: w.Subject, Time: t, DataSchema: w.DataSchema, Data: w.Data}
	switch {
	case w.Partition != nil && w.Subject != "":
		errs.add("/partition", "only partition-wide events (without subject) name a partition")
	case w.Partition != nil:
		e.Partition = *w.Partition
	case w.Subject == "":
		e.Partition = -1 // neither: refused by the validator, never taken for partition 0
	}
	return errs.err()
}

// parseTime accepts RFC 3339 with an explicit offset (Z or ±hh:mm).
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("required (RFC 3339 with offset)")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not RFC 3339 with offset: %q", truncate(s, 40))
	}
	return t, nil
}

// ValidCustomerID reports whether s is a well-formed customer id: an opaque operator id
// of [A-Za-z0-9_-], 1 to 64 characters.
func ValidCustomerID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func appendString(b []byte, s string) []byte {
	// Fast path: nothing to escape.
	for i := 0; i < len(s); i++ {
		if !plainByte(s[i]) {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
