package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
)

// Personal is a personal field (name, phone number, id number, address, free text).
// A producer sets it in clear with Clear; read back from the log it holds the sealed
// value, which only the key service's keys can open. It never prints its content:
// String, Format and slog show "[personal]", so it cannot leak into logs by accident.
type Personal struct {
	clear  string
	sealed *Sealed
}

// Clear wraps a clear-text personal value for publishing.
func Clear(s string) Personal { return Personal{clear: s} }

// IsZero reports whether the field is absent.
func (p Personal) IsZero() bool { return p.clear == "" && p.sealed == nil }

// Sealed returns the stored form, or nil if the value is in clear.
func (p Personal) Sealed() *Sealed { return p.sealed }

// Reveal returns the clear value a producer set. A value read from the log is sealed:
// open it with Open and the customer's data key.
func (p Personal) Reveal() string { return p.clear }

func (p Personal) String() string             { return "[personal]" }
func (p Personal) GoString() string           { return "events.Personal{[personal]}" }
func (p Personal) LogValue() slog.Value       { return slog.StringValue("[personal]") }
func (p Personal) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[personal]")) }

// MarshalJSON writes the clear string, or the sealed object.
func (p Personal) MarshalJSON() ([]byte, error) {
	if p.sealed != nil {
		return json.Marshal(p.sealed)
	}
	return json.Marshal(p.clear)
}

// UnmarshalJSON reads either form.
func (p *Personal) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var s Sealed
		if err := strictUnmarshal(b, &s); err != nil {
			return fmt.Errorf("sealed personal value: %w", err)
		}
		*p = Personal{sealed: &s}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("personal value: %w", err)
	}
	*p = Personal{clear: s}
	return nil
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
