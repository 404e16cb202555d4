package simulate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/touchstream/touchstream/events"
)

// item is an event on its way to the gateway.
type item struct {
	ev   *events.Event
	ch   *Channel
	cust int
}

// batch is a request's worth of events of one channel.
type batch struct {
	n      int64
	ch     *Channel
	items  []item
	opened time.Time
}

// settled is a batch whose every event has its final outcome (or was abandoned).
type settled struct {
	b   *batch
	err error
}

// slot tracks a customer with events on their way: one customer's events are never
// in two requests at once, so they reach the log in the order they were generated
// even though they go to different channels and requests run concurrently.
type slot struct {
	b    *batch // the batch holding the customer's outstanding events
	n    int    // outstanding events, all in b
	held []item // events waiting until b is settled
}

// dispatch batches events per channel and hands batches to the senders, holding back
// a customer's events while an earlier one is in flight. It returns when every event
// is settled and the producer is done, when hard is cancelled, or when a sender
// meets a fatal error.
func (s *Simulator) dispatch(hard context.Context, in <-chan item, work chan<- *batch, done <-chan settled) error {
	cfg := s.cfg
	pending := map[string]*batch{}
	slots := map[int]*slot{}
	var ready []*batch
	var nb int64
	held, queued, out := 0, 0, 0 // events held, events in pending or ready batches, batches with senders
	limit := cfg.BatchSize*cfg.Concurrency*4 + 4096
	tick := time.NewTicker(max(cfg.Linger/2, 10*time.Millisecond))
	defer tick.Stop()

	flush := func(b *batch) {
		delete(pending, b.ch.Name)
		ready = append(ready, b)
	}
	add := func(it item, sl *slot) {
		b := pending[it.ch.Name]
		if b == nil {
			nb++
			b = &batch{n: nb, ch: it.ch, opened: time.Now()}
			pending[it.ch.Name] = b
		}
		b.items = append(b.items, it)
		sl.b, sl.n = b, sl.n+1
		queued++
		if len(b.items) >= cfg.BatchSize {
			flush(b)
		}
	}
	// place adds an event to its channel's open batch unless the customer has events
	// elsewhere in flight.
	place := func(it item) {
		sl := slots[it.cust]
		if sl == nil {
			sl = &slot{}
			slots[it.cust] = sl
		}
		if len(sl.held) > 0 || (sl.n > 0 && sl.b != pending[it.ch.Name]) {
			sl.held = append(sl.held, it)
			held++
			return
		}
		add(it, sl)
	}
	release := func(cust int) {
		sl := slots[cust]
		if sl == nil || sl.n > 0 {
			return
		}
		for len(sl.held) > 0 {
			it := sl.held[0]
			if sl.n > 0 && sl.b != pending[it.ch.Name] {
				break
			}
			sl.held = sl.held[1:]
			held--
			add(it, sl)
		}
		if sl.n == 0 && len(sl.held) == 0 {
			delete(slots, cust)
		}
	}
	settle := func(b *batch) {
		queued -= len(b.items)
		custs := make([]int, 0, len(b.items))
		for _, it := range b.items {
			if sl := slots[it.cust]; sl != nil {
				sl.n--
				custs = append(custs, it.cust)
			}
		}
		for _, c := range slices.Compact(custs) {
			release(c)
		}
	}
	abandon := func() {
		n := held
		for _, b := range pending {
			n += len(b.items)
		}
		for _, b := range ready {
			n += len(b.items)
		}
		s.stats.abandoned.Add(int64(n))
	}

	inOpen := true
	for {
		if !inOpen {
			// No more input: whatever is open goes now.
			for _, b := range pending {
				flush(b)
			}
			if len(ready) == 0 && out == 0 && held == 0 {
				return nil
			}
		}
		var send chan<- *batch
		var next *batch
		if len(ready) > 0 {
			send, next = work, ready[0]
		}
		var recv <-chan item
		if inOpen && held+queued < limit {
			recv = in
		}
		select {
		case <-hard.Done():
			abandon()
			return nil
		case send <- next:
			ready = ready[1:]
			out++
		case it, ok := <-recv:
			if !ok {
				inOpen = false
				continue
			}
			place(it)
		case st := <-done:
			out--
			if st.err != nil {
				abandon()
				s.stats.abandoned.Add(int64(len(st.b.items)))
				return st.err
			}
			settle(st.b)
		case now := <-tick.C:
			for _, b := range pending {
				if now.Sub(b.opened) >= cfg.Linger {
					flush(b)
				}
			}
		}
	}
}

// deliver sends a batch until every event has its final outcome: stored, duplicate
// or refused. It retries 429 and 503 after Retry-After, "unknown" and "failed"
// outcomes with the same ids (the gateway deduplicates them), splits a batch the
// gateway finds too large, and gives up only when ctx ends (the events are then
// abandoned) or the gateway refuses the key.
func (s *Simulator) deliver(ctx context.Context, b *batch) error {
	const minBackoff, maxBackoff = 250 * time.Millisecond, 10 * time.Second
	todo := b.items
	chunk := len(todo)
	backoff := minBackoff
	s.stats.sent.Add(int64(len(todo)))
	for attempt := 0; len(todo) > 0; attempt++ {
		part := todo[:min(chunk, len(todo))]
		evs := make([]*events.Event, len(part))
		for i, it := range part {
			evs[i] = it.ev
		}
		if attempt > 0 {
			s.stats.retries.Add(1)
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		rep, err := s.client.post(rctx, b.ch, evs, fmt.Sprintf("sim-%d-b%d-%d", s.cfg.Seed, b.n, attempt))
		cancel()
		var wait time.Duration
		switch {
		case ctx.Err() != nil:
			s.stats.abandoned.Add(int64(len(todo)))
			return nil
		case err != nil:
			s.warnf("gateway_unreachable", "gateway request failed; retrying", "channel", b.ch.Name, "error", err)
			wait = backoff
		case rep.code == 401:
			return fmt.Errorf("simulate: channel %s: %w", b.ch.Name, errUnauthorized)
		case rep.code == 413 && len(part) > 1:
			chunk = max(1, len(part)/2)
			continue
		case rep.code == 429 || (rep.code == 503 && len(rep.resp.Results) != len(part)):
			wait = max(rep.retryAfter, backoff)
			s.warnf("gateway_busy", "gateway asked to retry later", "channel", b.ch.Name, "status", rep.code, "retry_after_ms", wait.Milliseconds())
		case len(rep.resp.Results) == len(part):
			var again []item
			for _, r := range rep.resp.Results {
				if r.Index < 0 || r.Index >= len(part) {
					continue
				}
				it := part[r.Index]
				switch r.Status {
				case StatusStored:
					s.stats.stored.Add(1)
				case StatusDuplicate:
					s.stats.duplicate.Add(1)
				case StatusRefused:
					s.refused(b.ch, it.ev, r)
				default: // unknown or failed: not certainly stored, safe to send again
					again = append(again, it)
				}
			}
			todo = append(again, todo[len(part):]...)
			if len(again) == 0 {
				backoff = minBackoff
				continue
			}
			wait = max(rep.retryAfter, backoff)
		case rep.code >= 500:
			s.warnf("gateway_error", "gateway error; retrying", "channel", b.ch.Name, "status", rep.code)
			wait = backoff
		default:
			// The request itself was refused (400, 415, a single event over the size
			// limit): sending it again would not help.
			for _, it := range part {
				s.refused(b.ch, it.ev, Result{Status: StatusRefused, Reason: fmt.Sprintf("request refused (%d): %s", rep.code, rep.resp.Error)})
			}
			todo = todo[len(part):]
			continue
		}
		backoff = min(backoff*2, maxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.stats.abandoned.Add(int64(len(todo)))
			return nil
		case <-t.C:
		}
	}
	return nil
}

// refusals keeps what was refused, for logs without personal data.
type refusals struct {
	n      int
	byType map[string]int
	warned map[string]time.Time
}

// refused counts a refused event and logs the first ones and then every 500th: the
// event id, type and channel, the refused fields, and the reasons of envelope fields
// only, as a reason about a payload field may quote its (possibly personal) value.
func (s *Simulator) refused(ch *Channel, e *events.Event, r Result) {
	s.stats.refused.Add(1)
	s.mu.Lock()
	s.refuse.n++
	n := s.refuse.n
	if s.refuse.byType == nil {
		s.refuse.byType = map[string]int{}
	}
	s.refuse.byType[e.Type]++
	s.mu.Unlock()
	if n > 20 && n%500 != 0 {
		return
	}
	var fields, reasons []string
	for _, fe := range r.Errors {
		fields = append(fields, fe.Field)
		if !strings.HasPrefix(fe.Field, "/data") {
			reasons = append(reasons, fe.Field+": "+fe.Reason)
		}
	}
	if r.Reason != "" {
		reasons = append(reasons, r.Reason)
	}
	s.log.Warn("event refused", "channel", ch.Name, "event_id", e.ID, "event_type", e.Type,
		"fields", strings.Join(fields, ","), "reasons", strings.Join(reasons, "; "), "refused_so_far", n)
}

func (s *Simulator) logRefusals() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range slices.Sorted(mapKeys(s.refuse.byType)) {
		s.log.Warn("events refused during the run", "event_type", t, "refused", s.refuse.byType[t])
	}
}

// warnf logs a warning at most once every ten seconds per key.
func (s *Simulator) warnf(key, msg string, args ...any) {
	s.mu.Lock()
	if s.refuse.warned == nil {
		s.refuse.warned = map[string]time.Time{}
	}
	last := s.refuse.warned[key]
	now := time.Now()
	ok := now.Sub(last) >= 10*time.Second
	if ok {
		s.refuse.warned[key] = now
	}
	s.mu.Unlock()
	if ok {
		s.log.Warn(msg, args...)
	}
}
