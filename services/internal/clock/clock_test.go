package clock_test

import (
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/services/internal/clock"
	"github.com/touchstream/touchstream/testkit"
)

func TestTicksReachEveryPartitionOnceWhateverTheSchedulers(t *testing.T) {
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	def := streams.Default()
	if _, err := streams.Apply(t.Context(), js, def); err != nil {
		t.Fatal(err)
	}
	pub, err := events.NewPublisher(t.Context(), nc, events.WithLayout(def.Layout), events.WithLimits(events.Limits{MaxSize: 64 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	loc := time.FixedZone("CST", 8*3600)
	now := time.Date(2026, 11, 23, 15, 4, 0, 0, loc)
	s, err := clock.New(clock.Config{Location: loc, Now: func() time.Time { return now }}, pub, 64, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	b := s.Boundary(now)
	if want := time.Date(2026, 11, 23, 0, 0, 0, 0, loc); !b.Equal(want) {
		t.Fatalf("boundary %s, want %s", b, want)
	}
	// Two schedulers tick the same boundary: one event per partition is stored.
	for range 2 {
		if err := s.Tick(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := js.Stream(t.Context(), "TOUCHPOINTS")
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 64 {
		t.Fatalf("%d ticks stored, want 64 (one per partition)", info.State.Msgs)
	}
	for seq := uint64(1); seq <= 64; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if p, typ, err := def.Layout.ParseSubject(m.Subject); err != nil || typ != events.TypeClockTicked || p != int(seq-1) {
			t.Fatalf("tick %d on %s", seq, m.Subject)
		}
	}
}
