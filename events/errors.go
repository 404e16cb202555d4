package events

import (
	"errors"
	"strings"
)

// Sentinel errors. Every error the package returns for a bad event matches ErrInvalid
// with errors.Is; the more specific ones say what the caller must change.
var (
	// ErrInvalid: the event breaks the contract. Do not retry it unchanged.
	ErrInvalid = errors.New("invalid event")
	// ErrUnknownType: no schema exists for the event's type and version.
	ErrUnknownType = errors.New("unknown event type or version")
	// ErrTooLarge: the encoded event exceeds the size limit.
	ErrTooLarge = errors.New("event too large")
	// ErrKeyUnavailable: the key service could not supply a data key; retry later.
	ErrKeyUnavailable = errors.New("data key unavailable")
	// ErrErased: the customer's data key was erased; personal fields can no longer be read.
	ErrErased = errors.New("data key erased")
	// ErrAckUnknown: the stream did not confirm the write in time. The event may or may
	// not be stored; publishing it again with the same source and id is safe.
	ErrAckUnknown = errors.New("acknowledgement not received in time")
	// ErrStreamRefused: the stream refused the write (full, or it holds no such
	// subject). The event is not stored.
	ErrStreamRefused = errors.New("stream refused the write")
	// ErrClosed: the publisher is closed.
	ErrClosed = errors.New("publisher closed")
)

// FieldError names one field of an event (a JSON pointer into the structured-mode
// event, such as "/subject" or "/data/amount/fen") and why it was refused.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
	kind   error  // ErrUnknownType, ErrTooLarge or nil
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// FieldErrors is every reason an event was refused. It matches ErrInvalid, and
// ErrUnknownType or ErrTooLarge when one of those is the cause.
type FieldErrors []FieldError

func (fe FieldErrors) Error() string {
	var b strings.Builder
	b.WriteString("invalid event: ")
	for i, e := range fe {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Is matches ErrInvalid always, and ErrUnknownType or ErrTooLarge when a field error
// is of that kind.
func (fe FieldErrors) Is(target error) bool {
	if target == ErrInvalid {
		return true
	}
	for _, e := range fe {
		if e.kind != nil && e.kind == target {
			return true
		}
	}
	return false
}

func (fe *FieldErrors) add(field, reason string) {
	*fe = append(*fe, FieldError{Field: field, Reason: reason})
}

func (fe *FieldErrors) addKind(kind error, field, reason string) {
	*fe = append(*fe, FieldError{Field: field, Reason: reason, kind: kind})
}

func (fe FieldErrors) err() error {
	if len(fe) == 0 {
		return nil
	}
	return fe
}
