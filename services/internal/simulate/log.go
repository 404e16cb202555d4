package simulate

import (
	"context"
	"fmt"
	"time"

	"github.com/touchstream/touchstream/events"
)

// ClockSource is the source of the daily clock ticks Log interleaves.
const ClockSource = "urn:touchstream:service:clock"

// Log generates a generator's history as the log would hold it, straight from the
// drafts, without the gateway: each draft as an event with its behaviour time, its
// id and its channel's source, and a clock.ticked to every one of partitions at each
// midnight of the generator's time zone from the day after start until end, in time
// order. publish receives batches of up to batch events; Log returns how many it
// published. It is for benchmarks and tests that need months of history in seconds.
func Log(ctx context.Context, g *Generator, start, end time.Time, partitions, batch int, publish func(context.Context, []*events.Event) error) (int, error) {
	if batch <= 0 {
		batch = 2000
	}
	var buf []*events.Event
	n := 0
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if err := publish(ctx, buf); err != nil {
			return err
		}
		n += len(buf)
		buf = buf[:0]
		return nil
	}
	start = start.In(g.loc)
	next := time.Date(start.Year(), start.Month(), start.Day()+1, 0, 0, 0, 0, g.loc)
	for {
		d, ok := g.Next()
		for (ok && !d.At.Before(next)) || (!ok && next.Before(end)) {
			ticks, err := events.NewPartitionEvents(partitions, next, events.ClockTicked{Period: "day", Tick: next})
			if err != nil {
				return n, err
			}
			for _, e := range ticks {
				e.Source = ClockSource
			}
			buf = append(buf, ticks...)
			next = next.AddDate(0, 0, 1)
		}
		if !ok {
			break
		}
		ch := g.channels[d.Channel]
		if ch == nil {
			return n, fmt.Errorf("simulate: draft %s: unknown channel %q", d.ID, d.Channel)
		}
		e, err := events.NewEvent(d.Customer, d.At, d.Payload)
		if err != nil {
			return n, err
		}
		e.ID, e.Source = d.ID, ch.Source
		buf = append(buf, e)
		if len(buf) >= batch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	return n, flush()
}
