package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/touchstream/touchstream/events"
)

// Publishing settings shared by the raw path and the SDK, so that the ratio between
// them is the cost of the door alone.
const (
	inFlight   = 4096 // unacknowledged messages at most (the SDK's default)
	ackTimeout = 10 * time.Second
	sdkBatch   = 1000 // events per PublishBatch / Door.Prepare call
)

// prepareAll turns events into stored messages with a door, batch by batch. Any
// refused event is an error: the bench's inputs are all valid.
func prepareAll(ctx context.Context, door *events.Door, evs []*events.Event) ([]*events.Message, error) {
	out := make([]*events.Message, 0, len(evs))
	for chunk := range slices.Chunk(evs, sdkBatch) {
		msgs, errs := door.Prepare(ctx, chunk)
		for i, err := range errs {
			if err != nil {
				return nil, fmt.Errorf("prepare event %s (%s): %w", chunk[i].ID, chunk[i].Type, err)
			}
		}
		out = append(out, msgs...)
	}
	return out, nil
}

// avgBody is the mean size of the stored bodies, in bytes.
func avgBody(msgs []*events.Message) int {
	if len(msgs) == 0 {
		return 0
	}
	var n int
	for _, m := range msgs {
		n += len(m.Body)
	}
	return n / len(msgs)
}

// shardEvents splits events among producers by partition, keeping each customer's
// events in order within one producer, as a well-behaved producer would.
func shardEvents(evs []*events.Event, producers int, l events.Layout) [][]*events.Event {
	out := make([][]*events.Event, producers)
	for _, e := range evs {
		p := l.PartitionOf(e.Subject) % producers
		out[p] = append(out[p], e)
	}
	return out
}

// shardMessages builds the NATS messages of prepared messages, split like shardEvents.
func shardMessages(msgs []*events.Message, producers int, l events.Layout) [][]*nats.Msg {
	out := make([][]*nats.Msg, producers)
	for _, m := range msgs {
		p := l.PartitionOf(m.Event.Subject) % producers
		out[p] = append(out[p], m.NatsMsg())
	}
	return out
}

// rawJetStream is the JetStream context of the raw path: the same async limits as the
// SDK's publisher.
func rawJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(inFlight), jetstream.WithPublishAsyncTimeout(ackTimeout))
}

// asyncPublisher publishes with jetstream PublishMsgAsync and waits for each
// acknowledgement in order, as the SDK does, holding a slot of sem per message in
// flight.
type asyncPublisher struct {
	js     jetstream.JetStream
	sem    chan struct{}
	queue  chan jetstream.PubAckFuture
	done   chan struct{}
	failed atomic.Int64
	first  atomic.Value
}

func newAsyncPublisher(js jetstream.JetStream, sem chan struct{}) *asyncPublisher {
	p := &asyncPublisher{js: js, sem: sem, queue: make(chan jetstream.PubAckFuture, cap(sem)), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for f := range p.queue {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if p.failed.Add(1) == 1 {
					p.first.Store(err)
				}
			}
			<-p.sem
		}
	}()
	return p
}

// publish sends one message once a slot is free.
func (p *asyncPublisher) publish(ctx context.Context, m *nats.Msg) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	f, err := p.js.PublishMsgAsync(m)
	if err != nil {
		<-p.sem
		return fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	p.queue <- f
	return nil
}

// wait returns once every message sent is acknowledged; a refused or unacknowledged
// message is an error.
func (p *asyncPublisher) wait() error {
	close(p.queue)
	<-p.done
	if n := p.failed.Load(); n > 0 {
		return fmt.Errorf("%d messages not acknowledged, first: %v", n, p.first.Load())
	}
	return nil
}

// publishRaw appends the messages, one producer per shard, at most inFlight
// unacknowledged in all, and returns once every message is acknowledged.
func publishRaw(ctx context.Context, js jetstream.JetStream, shards [][]*nats.Msg) error {
	sem := make(chan struct{}, inFlight)
	g, ctx := errgroup.WithContext(ctx)
	for _, shard := range shards {
		g.Go(func() error {
			p := newAsyncPublisher(js, sem)
			for _, m := range shard {
				if err := p.publish(ctx, m); err != nil {
					_ = p.wait()
					return err
				}
			}
			return p.wait()
		})
	}
	return g.Wait()
}

// fetchRaw reads n messages of a stream from its start with an ordered consumer,
// fetched in batches as the runner fetches them, doing nothing with them, and returns
// the bytes read.
func fetchRaw(ctx context.Context, js jetstream.JetStream, stream string, n int, progress func(int)) (int64, error) {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return 0, fmt.Errorf("ordered consumer on %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * sdkBatch))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	var bytes int64
	for i := 0; i < n; i++ {
		m, err := it.Next(jetstream.NextMaxWait(10 * time.Second))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) {
				return bytes, fmt.Errorf("fetch %s: %d of %d messages, then nothing for 10s", stream, i, n)
			}
			return bytes, fmt.Errorf("fetch %s: %w", stream, err)
		}
		bytes += int64(len(m.Data()))
		if progress != nil && i%100_000 == 0 {
			progress(i)
		}
	}
	return bytes, nil
}
