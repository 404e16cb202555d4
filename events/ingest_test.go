package events_test

import (
	"testing"

	"github.com/touchstream/touchstream/events"
)

func TestChannelSubject(t *testing.T) {
	if got, want := events.ChannelSubject("store", "recharge.completed"), "ingest.store.recharge.completed"; got != want {
		t.Errorf("ChannelSubject = %q, want %q", got, want)
	}
	tests := []struct {
		subject, channel, typ string
		ok                    bool
	}{
		{"ingest.store.recharge.completed", "store", "recharge.completed", true},
		{"ingest.store.v1", "", "", false},
		{"ingest.store.recharge.completed.x", "", "", false},
		{"tp.store.recharge.completed", "", "", false},
		{"ingest.store.recharge.*", "", "", false},
		{"ingest..recharge.completed", "", "", false},
	}
	for _, tt := range tests {
		ch, typ, err := events.ParseChannelSubject(tt.subject)
		if (err == nil) != tt.ok || ch != tt.channel || typ != tt.typ {
			t.Errorf("ParseChannelSubject(%q) = %q, %q, %v; want %q, %q, ok %v", tt.subject, ch, typ, err, tt.channel, tt.typ, tt.ok)
		}
	}
}
