package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/testkit"
)

func TestPublishSealsAndPartitions(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	if _, err := streams.Apply(ctx, js, streams.Default()); err != nil {
		t.Fatal(err)
	}
	keys := newMemKeys()
	p, err := events.NewPublisher(ctx, nc, events.WithSource("urn:test"), events.WithKeys(keys))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.NewEvent("C-1001", time.Now(), events.CustomerRegistered{
		Name: events.Clear("张伟"), Phone: events.Clear("+8613800138000"), CustomerType: "individual",
		Region: "CN-GD-SZ", Plan: events.Plan{ID: "P58", Kind: "prepaid", MonthlyFee: events.CNY(5800)},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Publish(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, "TOUCHPOINTS")
	raw, err := s.GetMsg(ctx, res.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw.Data, []byte("13800138000")) || bytes.Contains(raw.Data, []byte("张伟")) {
		t.Fatalf("clear personal data in stored message: %s", raw.Data)
	}
	t.Logf("subject %s body %s", raw.Subject, raw.Data)
	// Publish via the ingest transform and check the server's partition equals ours.
	for _, c := range []string{"C-1001", "abc", "Z_9-x", "customer-000042"} {
		pa, err := js.Publish(ctx, "tpin."+c+".recharge.completed", []byte("{}"))
		if err != nil {
			t.Fatal(err)
		}
		m, _ := s.GetMsg(ctx, pa.Sequence)
		want := events.DefaultLayout().Subject(events.Partition(c, 64), "recharge.completed")
		if m.Subject != want {
			t.Errorf("customer %s: server put it on %s, we compute %s", c, m.Subject, want)
		}
	}
	_ = jetstream.MsgIDHeader
}

// failingKeys is a key source that is down.
type failingKeys struct{}

func (failingKeys) CustomerKeys(context.Context, []string) (map[string]events.DataKey, error) {
	return nil, errors.New("key service down")
}

func (failingKeys) KeysByID(context.Context, []string) (map[string]events.DataKey, error) {
	return nil, errors.New("key service down")
}

// TestPublishBatchLarge publishes batches larger than a chunk, with personal fields:
// every event is stored once, sealed, in the order given per customer; with the key
// service down only the events that need a key fail.
func TestPublishBatchLarge(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	if _, err := streams.Apply(ctx, js, streams.Default()); err != nil {
		t.Fatal(err)
	}
	keys := newMemKeys()
	now := func() time.Time { return testNow }
	evs := personalBatch(1000)
	for _, e := range evs {
		e.Subject = fmt.Sprintf("C-%d", events.Partition(e.ID, 40)) // few customers: many events each
	}
	bad := rechargeBatch(1)[0]
	bad.Data = []byte(`{"recharge_id":`)
	evs[617] = bad
	tests := []struct {
		name string
		keys events.KeySource
	}{{"keys", keys}, {"key service down", failingKeys{}}}
	for n, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := events.NewPublisher(ctx, nc, events.WithLayout(events.DefaultLayout()), events.WithKeys(tt.keys), events.WithClock(now))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				e.ID = fmt.Sprintf("%s-%d", e.ID[:36], n)
			}
			results := p.PublishBatch(ctx, evs)
			last := map[string]uint64{}
			for i, r := range results {
				e := evs[i]
				schema, _ := testCatalog(t).Lookup(e.DataSchema)
				switch {
				case i == 617:
					if !errors.Is(r.Err, events.ErrInvalid) {
						t.Errorf("event %d: error %v, want ErrInvalid", i, r.Err)
					}
					continue
				case tt.keys == events.KeySource(failingKeys{}) && schema.HasPersonal():
					if !errors.Is(r.Err, events.ErrKeyUnavailable) {
						t.Errorf("event %d (%s): error %v, want ErrKeyUnavailable", i, e.Type, r.Err)
					}
					continue
				case r.Err != nil || r.Duplicate:
					t.Fatalf("event %d (%s): %+v", i, e.Type, r)
				}
				if r.Seq <= last[e.Subject] {
					t.Errorf("event %d of %s stored at %d, after one stored at %d", i, e.Subject, r.Seq, last[e.Subject])
				}
				last[e.Subject] = r.Seq
				if tt.keys == events.KeySource(failingKeys{}) {
					continue
				}
				s, _ := js.Stream(ctx, "TOUCHPOINTS")
				raw, err := s.GetMsg(ctx, r.Seq)
				if err != nil {
					t.Fatal(err)
				}
				var stored events.Event
				if err := json.Unmarshal(raw.Data, &stored); err != nil {
					t.Fatal(err)
				}
				if stored.ID != e.ID {
					t.Fatalf("event %d stored as %s", i, stored.ID)
				}
				clear, err := events.NewSealer(keys).Reveal(ctx, schema, &stored)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(jsonValue(t, e.Data), jsonValue(t, clear)); diff != "" {
					t.Errorf("event %d: revealed payload differs (-sent +revealed):\n%s", i, diff)
				}
				if schema.HasPersonal() && bytes.Equal(stored.Data, e.Data) {
					t.Errorf("event %d: stored in clear", i)
				}
			}
		})
	}
}

// TestPublishOutcomes drives every outcome of an append: stored, duplicate, refused by
// the stream, no stream bound to the subject, no answer, connection lost. Each
// publisher allows two messages in flight, so a slot leaked by any outcome would stall
// the next batch.
func TestPublishOutcomes(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	if _, err := streams.Apply(ctx, js, streams.Default()); err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return testNow }
	publisher := func(t *testing.T, opts ...events.Option) *events.Publisher {
		t.Helper()
		opts = append([]events.Option{events.WithLayout(events.DefaultLayout()), events.WithClock(now), events.WithMaxInFlight(2)}, opts...)
		p, err := events.NewPublisher(ctx, nc, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	batch := func(id string, n int) []*events.Event {
		evs := rechargeBatch(n)
		for i, e := range evs {
			e.ID = fmt.Sprintf("%s-%d", id, i)
		}
		return evs
	}
	elsewhere := events.Layout{Prefix: "elsewhere", Partitions: 64, Streams: []events.StreamLayout{{Name: "NONE", First: 0, Last: 63}}}

	t.Run("stored and duplicate", func(t *testing.T) {
		p := publisher(t)
		first := p.PublishBatch(ctx, batch("dup", 5))
		again := p.PublishBatch(ctx, batch("dup", 5))
		for i := range first {
			if first[i].Err != nil || first[i].Duplicate || first[i].Stream != "TOUCHPOINTS" || first[i].Seq == 0 {
				t.Errorf("first %d: %+v", i, first[i])
			}
			if want := (events.Result{Stream: "TOUCHPOINTS", Seq: first[i].Seq, Duplicate: true}); again[i] != want {
				t.Errorf("again %d: %+v, want %+v", i, again[i], want)
			}
		}
	})
	t.Run("refused by the stream", func(t *testing.T) {
		// The stream's largest message is 65 KiB: the door's limit is raised above it.
		p := publisher(t, events.WithLimits(events.Limits{MaxSize: 1 << 20}), events.WithValidation(false))
		evs := batch("large", 3)
		evs[1].Data = json.RawMessage(`{"recharge_id":"` + strings.Repeat("R", 70<<10) + `"}`)
		res := p.PublishBatch(ctx, evs)
		if res[0].Err != nil || res[2].Err != nil {
			t.Errorf("neighbours refused: %v, %v", res[0].Err, res[2].Err)
		}
		if !errors.Is(res[1].Err, events.ErrStreamRefused) || errors.Is(res[1].Err, events.ErrAckUnknown) {
			t.Errorf("oversized: %v, want ErrStreamRefused", res[1].Err)
		}
	})
	t.Run("no stream", func(t *testing.T) {
		p := publisher(t, events.WithLayout(elsewhere), events.WithValidation(false))
		for _, r := range p.PublishBatch(ctx, batch("none", 3)) {
			if !errors.Is(r.Err, events.ErrAckUnknown) {
				t.Errorf("no stream bound: %+v, want ErrAckUnknown", r)
			}
		}
	})
	t.Run("no answer", func(t *testing.T) {
		sub, err := nc.SubscribeSync("elsewhere.>") // a responder that never answers
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		p := publisher(t, events.WithLayout(elsewhere), events.WithValidation(false), events.WithAckTimeout(300*time.Millisecond))
		start := time.Now()
		for _, r := range p.PublishBatch(ctx, batch("silent", 5)) {
			if !errors.Is(r.Err, events.ErrAckUnknown) {
				t.Errorf("no answer: %+v, want ErrAckUnknown", r)
			}
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
			t.Errorf("gave up after %s, the ack timeout is 300ms", d)
		}
	})
}

// TestPublishReconnect gives up on messages in flight when the connection is lost,
// without waiting for the ack timeout.
func TestPublishReconnect(t *testing.T) {
	ctx := t.Context()
	ns := testkit.StartNATS(t)
	nc, js := ns.JetStream(t)
	if _, err := streams.Apply(ctx, js, streams.Default()); err != nil {
		t.Fatal(err)
	}
	listener := ns.Connect(t)
	sub, err := listener.SubscribeSync("elsewhere.>") // answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	elsewhere := events.Layout{Prefix: "elsewhere", Partitions: 64, Streams: []events.StreamLayout{{Name: "NONE", First: 0, Last: 63}}}
	p, err := events.NewPublisher(ctx, nc, events.WithLayout(elsewhere), events.WithValidation(false), events.WithAckTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	evs := rechargeBatch(3)
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		if _, err := sub.NextMsg(5 * time.Second); err == nil {
			ns.Restart(t)
		}
	}()
	// The server must be up again before the test ends: its cleanup (and the removal
	// of its store directory) may not race a server still starting.
	defer func() { <-restarted }()
	start := time.Now()
	for _, r := range p.PublishBatch(ctx, evs) {
		if !errors.Is(r.Err, events.ErrAckUnknown) {
			t.Errorf("connection lost: %+v, want ErrAckUnknown", r)
		}
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("gave up after %s", d)
	}
}
