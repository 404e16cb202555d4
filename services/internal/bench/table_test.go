package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTableWrite(t *testing.T) {
	tb := newTable("ingest", "path", "events", "events/s", "target")
	tb.note("inputs: seed %d", 42)
	tb.row("raw", count(200000), perSecond(161234.4), "")
	tb.row("gateway → log", count(5), perSecond(9.6), "≥ 40,000: MISSED")
	var got strings.Builder
	if err := tb.write(&got); err != nil {
		t.Fatal(err)
	}
	want := `## ingest
   inputs: seed 42

   path            events  events/s            target
   -------------  -------  --------  ----------------
   raw            200,000   161,234
   gateway → log        5        10  ≥ 40,000: MISSED

`
	if diff := cmp.Diff(want, got.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

func TestFigures(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"count zero", count(0), "0"},
		{"count thousands", count(1234567), "1,234,567"},
		{"count negative", count(-1234), "-1,234"},
		{"count hundreds", count(999), "999"},
		{"millis small", millis(1234 * time.Microsecond), "1.23"},
		{"millis large", millis(123456 * time.Microsecond), "123.5"},
		{"seconds", seconds(1500 * time.Millisecond), "1.50"},
		{"ratio", ratio(1, 4), "0.25×"},
		{"ratio of nothing", ratio(1, 0), "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestRowTooLong(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a row with more cells than columns was accepted")
		}
	}()
	newTable("t", "a").row("1", "2")
}
