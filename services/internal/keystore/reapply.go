package keystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
)

// ErasureLog is where the key service reads the erasures recorded in the log: the
// customer.erased events of every stream of the layout.
type ErasureLog struct {
	JS     jetstream.JetStream
	Layout events.Layout
}

// Reapplied is what Reapply did.
type Reapplied struct {
	Events    int       // customer.erased events read
	Customers int       // customers they name
	Skipped   int       // events that did not decode (logged; nothing erased for them)
	Erased    []Receipt // customers who still had keys the log says are erased: the keys deleted now
}

// Keys counts the keys Reapply deleted.
func (r Reapplied) Keys() int {
	n := 0
	for _, e := range r.Erased {
		n += len(e.KeyIDs)
	}
	return n
}

// Reapply reads every customer.erased event of the log and erases, for each customer,
// the data keys created up to the erasure's requested_at that the store still holds:
// after a restore from a backup older than an erasure, the erasure holds again. Keys
// created after the erasure (data recorded since) are kept.
//
// It never scans the log: per stream, one ordered consumer filtered on the
// customer.erased subjects of the partitions the stream holds, read to its end.
func Reapply(ctx context.Context, store *Store, l ErasureLog, log *slog.Logger) (Reapplied, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res Reapplied
	upTo := map[string]time.Time{}
	var order []string
	for _, s := range l.Layout.Streams {
		err := readErasures(ctx, l, s, func(subject string, data []byte) {
			res.Events++
			var ev events.Event
			var ce events.CustomerErased
			err := json.Unmarshal(data, &ev)
			if err == nil {
				err = events.DecodeData(&ev, &ce)
			}
			if err != nil || !events.ValidCustomerID(ev.Subject) || ce.RequestedAt.IsZero() {
				res.Skipped++
				log.Warn("customer.erased event not understood; not re-applied", "stream", s.Name, "subject", subject, "error", err)
				return
			}
			prev, seen := upTo[ev.Subject]
			if !seen {
				order = append(order, ev.Subject)
			}
			if !seen || ce.RequestedAt.After(prev) {
				upTo[ev.Subject] = ce.RequestedAt
			}
		})
		if err != nil {
			return res, err
		}
	}
	res.Customers = len(order)
	for start := 0; start < len(order); start += MaxNames {
		chunk := order[start:min(start+MaxNames, len(order))]
		es := make([]Erasure, len(chunk))
		for i, c := range chunk {
			es[i] = Erasure{Customer: c, UpTo: upTo[c]}
		}
		rs, err := store.EraseAll(ctx, es)
		if err != nil {
			return res, fmt.Errorf("re-apply erasures: %w", err)
		}
		for _, r := range rs {
			if len(r.KeyIDs) > 0 {
				res.Erased = append(res.Erased, r)
			}
		}
	}
	return res, nil
}

// erasedFilters are the subject filters of the customer.erased events a stream holds.
func erasedFilters(l events.Layout, s events.StreamLayout) []string {
	if s.First == 0 && s.Last == l.Partitions-1 {
		return []string{l.Prefix + ".*." + events.TypeCustomerErased}
	}
	out := make([]string, 0, s.Last-s.First+1)
	for p := s.First; p <= s.Last; p++ {
		out = append(out, l.Subject(p, events.TypeCustomerErased))
	}
	return out
}

// readErasures hands fn every customer.erased message of one stream, in order. A
// stream that does not exist yet holds none.
func readErasures(ctx context.Context, l ErasureLog, s events.StreamLayout, fn func(subject string, data []byte)) error {
	cons, err := l.JS.OrderedConsumer(ctx, s.Name, jetstream.OrderedConsumerConfig{
		FilterSubjects: erasedFilters(l.Layout, s), DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: time.Minute})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("re-apply erasures: consumer on %s: %w", s.Name, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("re-apply erasures: consumer info on %s: %w", s.Name, err)
	}
	if info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(500))
	if err != nil {
		return fmt.Errorf("re-apply erasures: read %s: %w", s.Name, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("re-apply erasures: next message from %s: %w", s.Name, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("re-apply erasures: metadata from %s: %w", s.Name, err)
		}
		fn(m.Subject(), m.Data())
		if md.NumPending == 0 {
			return nil
		}
	}
}

// reapplyAtStart re-applies the log's erasures before the service answers anything,
// retrying with backoff while the log or the database cannot be read. It returns false
// if ctx ended first.
func (s *Service) reapplyAtStart(ctx context.Context) bool {
	wait := 500 * time.Millisecond
	for {
		start := time.Now()
		res, err := Reapply(ctx, s.store, *s.erasures, s.log)
		if err == nil {
			s.log.Info("erasures in the log re-applied", "events", res.Events, "customers", res.Customers,
				"re_applied", len(res.Erased), "keys", res.Keys(), "skipped", res.Skipped, "duration_ms", time.Since(start).Milliseconds())
			for _, r := range res.Erased {
				s.log.Warn("an erased customer's data key was back (a restored key store?): erased again", "customer_id", r.Customer, "keys", len(r.KeyIDs))
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.log.Warn("cannot re-apply the log's erasures yet; not serving keys until done", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
