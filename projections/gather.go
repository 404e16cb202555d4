package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Gathering (ADR 35). A catch-up read far behind the log (a rebuild, a replay,
// Runner.CatchUp) does not fold the log as it comes, a thousand events of every
// partition at a time: most customers then appear once per batch, and every event
// costs a read and a write of its customer's row. It gathers a window of the log instead, up to GatherBytes of messages, grouped by
// partition, and folds each partition's share of the window in a few large batches
// (GatherBatch events each), one partition after the other: a customer's events of the
// whole window are folded in memory and written once. Order holds where it matters,
// within a partition; each batch still commits with the checkpoint of its partition,
// so an interruption resumes from there.

// msgOverhead approximates what a delivered message costs in memory beyond its
// subject and body (the message, its reply subject and headers).
const msgOverhead = 320

// parsedMsg is a message whose metadata (parsed from its reply subject) is parsed
// once: the reader, the decoder and progress each ask for it.
type parsedMsg struct {
	jetstream.Msg
	md *jetstream.MsgMetadata
}

func (m parsedMsg) Metadata() (*jetstream.MsgMetadata, error) { return m.md, nil }

// parsed returns m with its metadata parsed once (m itself if it has none).
func parsed(m jetstream.Msg) jetstream.Msg {
	if _, ok := m.(parsedMsg); ok {
		return m
	}
	if md, err := m.Metadata(); err == nil {
		return parsedMsg{m, md}
	}
	return m
}

// handoff is what the reader hands a worker: a batch of messages, and for a batch of a
// gathered window, the window (for progress).
type handoff struct {
	msgs   []jetstream.Msg
	window *window
}

// window is a gathered range of the log, folded partition by partition.
type window struct {
	first, last uint64 // stream sequences of its first and last message
	events      int
	after       uint64 // matching messages pending after the window
	done        atomic.Int64
}

// applied counts n events of the window as folded and returns where the fold stands,
// for progress: the window's events counted as if applied in stream order, and what is
// left of the window and after it.
func (w *window) applied(n int) (seq, pending uint64) {
	done := uint64(w.done.Add(int64(n)))
	span := w.last - w.first + 1
	seq = w.first - 1 + done*span/uint64(max(w.events, 1))
	return seq, w.last - seq + w.after
}

// gather reads a window of the log starting with first, waits for the previous
// window to be handed over (prev), and starts feeders that hand each worker its
// partitions' shares in batches of up to GatherBatch events. It returns without
// waiting for them, so the next window is read while this one is folded (at most two
// windows are in memory); wait waits until every batch of the window is taken. It
// reports done when a catch-up read has nothing more pending.
func (r *Runner) gather(ctx context.Context, it jetstream.MessagesContext, stream string, opts readOptions,
	first jetstream.Msg, workerOf map[int]int, inboxes []chan handoff, prev func() error) (done bool, wait func() error, err error) {
	began := time.Now()
	byPart := map[int][]jetstream.Msg{}
	win := &window{}
	var size int64
	behind := uint64(0)
	linger := max(r.cfg.Linger, 100*time.Millisecond)
	for m := first; ; {
		m = parsed(m)
		md, mdErr := m.Metadata()
		if mdErr == nil && opts.to > 0 && md.Sequence.Stream > opts.to {
			behind = 0 // past the end of the range: caught up
			break
		}
		p := -1 // not a partition subject of this layout: a worker ignores it
		if part, _, err := r.deps.Layout.ParseSubject(m.Subject()); err == nil {
			p = part
		}
		byPart[p] = append(byPart[p], m)
		size += int64(len(m.Data()) + len(m.Subject()) + msgOverhead)
		win.events++
		if mdErr == nil {
			if win.first == 0 {
				win.first = md.Sequence.Stream
			}
			win.last, behind = md.Sequence.Stream, md.NumPending
		}
		if behind == 0 || size >= r.cfg.GatherBytes {
			break
		}
		var err error
		if m, err = it.Next(jetstream.NextMaxWait(linger)); err != nil {
			if errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
				break // nothing more for now: fold what is gathered
			}
			if ctx.Err() != nil {
				return false, nil, ctx.Err()
			}
			return false, nil, fmt.Errorf("next message from %s: %w", stream, err)
		}
	}
	win.after = behind
	r.m.gathered.WithLabelValues(r.cfg.Group).Observe(float64(win.events))
	r.stage("gather", began)
	if win.events > 0 {
		r.log.Debug("window gathered", "stream", stream, "events", win.events, "bytes", size,
			"first_seq", win.first, "last_seq", win.last, "partitions", len(byPart), "seconds", time.Since(began).Seconds())
	}

	// The previous window goes first: a partition's events stay in stream order.
	if err := prev(); err != nil {
		return false, nil, err
	}
	// Each worker is fed its partitions, one after the other, by a feeder of its own.
	keys := make([]int, 0, len(byPart))
	for p := range byPart {
		keys = append(keys, p)
	}
	slices.Sort(keys)
	shares := make([][][]jetstream.Msg, len(inboxes))
	for _, p := range keys {
		w := 0
		if p >= 0 {
			w = workerOf[p]
		}
		shares[w] = append(shares[w], byPart[p])
	}
	clear(byPart)
	var wg sync.WaitGroup
	errs := make(chan error, len(inboxes))
	for w, share := range shares {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, msgs := range share {
				for len(msgs) > 0 {
					n := min(len(msgs), r.cfg.GatherBatch)
					select {
					case inboxes[w] <- handoff{msgs: msgs[:n:n], window: win}:
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					}
					msgs = msgs[n:]
				}
				share[i] = nil // taken: the worker's batch holds what it still needs
			}
		}()
	}
	wait = func() error {
		wg.Wait()
		select {
		case err := <-errs:
			return err
		default:
			return nil
		}
	}
	return behind == 0, wait, nil
}
