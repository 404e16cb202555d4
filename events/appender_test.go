package events

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestReadAck reads acknowledgements as nats-server writes them, and errors.
func TestReadAck(t *testing.T) {
	tests := []struct {
		name   string
		ack    string
		stream string
		seq    uint64
		dup    bool
		err    error
	}{
		{"stored", `{"stream":"TOUCHPOINTS","seq":42}`, "TOUCHPOINTS", 42, false, nil},
		{"domain", `{"stream":"TOUCHPOINTS","domain":"hub","seq":7}`, "TOUCHPOINTS", 7, false, nil},
		{"duplicate", `{"stream":"TOUCHPOINTS","seq":42,"duplicate": true}`, "TOUCHPOINTS", 42, true, nil},
		{"batch duplicate", `{"stream":"S","seq":9,"duplicate": true,"batch":"b1","count":3}`, "S", 9, true, nil},
		{"escaped name", `{"stream":"T\u004fUCH","seq":1}`, "TOUCH", 1, false, nil},
		{"api error", `{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}`, "", 0, false,
			&jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}},
		{"no stream", `{"seq":1}`, "", 0, false, jetstream.ErrInvalidJSAck},
		{"not JSON", `+OK`, "", 0, false, jetstream.ErrInvalidJSAck},
	}
	a := &appender{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, seq, dup, err := a.readAck([]byte(tt.ack))
			if stream != tt.stream || seq != tt.seq || dup != tt.dup {
				t.Errorf("read %q %d %v, want %q %d %v", stream, seq, dup, tt.stream, tt.seq, tt.dup)
			}
			var apiErr *jetstream.APIError
			switch {
			case tt.err == nil && err != nil:
				t.Errorf("error %v", err)
			case errors.As(tt.err, &apiErr):
				var got *jetstream.APIError
				if !errors.As(err, &got) || *got != *apiErr {
					t.Errorf("error %v, want %v", err, tt.err)
				}
				if !errors.Is(classifyPublishError(err), ErrStreamRefused) {
					t.Errorf("%v is not classified as refused", err)
				}
			case tt.err != nil && !errors.Is(err, tt.err):
				t.Errorf("error %v, want %v", err, tt.err)
			}
		})
	}
}
