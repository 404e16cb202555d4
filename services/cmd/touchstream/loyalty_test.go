package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
)

// TestLoyaltyCommand lists the rule versions, activates one through the log (one
// event per partition, same id), and refuses what would not do what the operator
// means.
func TestLoyaltyCommand(t *testing.T) {
	c := newCLIEnv(t)
	out, err := c.run(t, "loyalty", "rules")
	if err != nil || !strings.Contains(out, "2026-01") || !strings.Contains(out, "2026-10") {
		t.Fatalf("loyalty rules: %v\n%s", err, out)
	}
	// The embedded default opens the club when the log has no activation yet, once.
	tc := &toolConn{pool: c.pool, nc: c.nc, js: c.js, def: c.def, cat: c.cat}
	if v, err := ensureClubOpen(t.Context(), tc, c.loyalty); err != nil || v != "2026-10" {
		t.Fatalf("ensureClubOpen on an empty log: %q %v, want the newest version", v, err)
	}
	if v, err := ensureClubOpen(t.Context(), tc, c.loyalty); err != nil || v != "" {
		t.Fatalf("ensureClubOpen with an activation in the log: %q %v", v, err)
	}
	at := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	out, err = c.run(t, "loyalty", "activate", "2026-10", "--effective", at.Format(time.RFC3339), "--note", "test")
	if err != nil || !strings.Contains(out, "in all 64 partitions") {
		t.Fatalf("loyalty activate: %v\n%s", err, out)
	}
	s, err := c.js.Stream(t.Context(), c.def.Layout.Stream(0))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil || info.State.Msgs != 128 {
		t.Fatalf("the log holds %d messages after two activations (%v), want 128", info.State.Msgs, err)
	}
	msg, err := s.GetLastMsgForSubject(t.Context(), c.def.Layout.Subject(0, events.TypeLoyaltyRulesActivated))
	if err != nil || !strings.Contains(string(msg.Data), `"2026-10"`) {
		t.Fatalf("last activation in partition 0: %v %s", err, msg.Data)
	}

	// A club operator's correction, safe to retry with the same id.
	out, err = c.run(t, "loyalty", "adjust", "C-ADJ-1", "--points", "-120", "--reason", "duplicate import", "--operator", "op-7", "--id", "ADJ-T-1")
	if err != nil || !strings.Contains(out, "adjustment ADJ-T-1 of -120 points for C-ADJ-1 stored") {
		t.Fatalf("loyalty adjust: %v\n%s", err, out)
	}
	out, err = c.run(t, "loyalty", "adjust", "C-ADJ-1", "--points", "-120", "--reason", "duplicate import", "--operator", "op-7", "--id", "ADJ-T-1")
	if err != nil || !strings.Contains(out, "already stored") {
		t.Fatalf("loyalty adjust again: %v\n%s", err, out)
	}

	for _, args := range [][]string{
		{"loyalty", "adjust", "C-ADJ-1", "--points", "0", "--reason", "x", "--operator", "op"},
		{"loyalty", "adjust", "C-ADJ-1", "--points", "5", "--reason", "x"},
		{"loyalty", "adjust", "C-ADJ-1", "--points", "5", "--operator", "op"},
		{"loyalty", "adjust", "no such id!", "--points", "5", "--reason", "x", "--operator", "op"},
		{"loyalty"},
		{"loyalty", "promote"},
		{"loyalty", "activate", "1999-01", "--effective", at.Format(time.RFC3339)},
		{"loyalty", "activate", "2026-10"},
		{"loyalty", "activate", "2026-10", "--effective", "tomorrow"},
		{"loyalty", "activate", "2026-10", "--effective", "2026-01-01T00:00:00+08:00"},
	} {
		if _, err := c.run(t, args...); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
