// Package clock publishes clock.ticked to every partition of the log at each period
// boundary (daily by default, at midnight in the operator's time zone), so that
// silence is visible in event time: "no recharge for 30 days" and the decay of a value
// tier happen when the log says a day has passed, identically on every replay.
//
// A tick's id is derived from its period and boundary ("day-2026-11-23"), so several
// schedulers (one per instance, for availability) publish the same events and the
// stream's duplicate detection keeps one: the dedup key of a partition-wide event is
// its source, id and partition.
package clock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/touchstream/touchstream/events"
)

// Source is the CloudEvents source of the ticks.
const Source = "urn:touchstream:service:clock"

// Config configures the scheduler.
type Config struct {
	Period   string         // "day" (default) or "hour"
	Location *time.Location // boundaries are cut in this zone (default Asia/Shanghai)
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Scheduler publishes the ticks.
type Scheduler struct {
	cfg        Config
	pub        *events.Publisher
	partitions int
	log        *slog.Logger
}

// New returns a scheduler publishing through pub to a log of the given partitions.
func New(cfg Config, pub *events.Publisher, partitions int, log *slog.Logger) (*Scheduler, error) {
	if cfg.Period == "" {
		cfg.Period = "day"
	}
	if cfg.Period != "day" && cfg.Period != "hour" {
		return nil, fmt.Errorf("clock: period %q: must be day or hour", cfg.Period)
	}
	if cfg.Location == nil {
		loc, err := time.LoadLocation("Asia/Shanghai")
		if err != nil {
			return nil, fmt.Errorf("clock: %w", err)
		}
		cfg.Location = loc
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if partitions < 1 {
		return nil, errors.New("clock: partitions must be positive")
	}
	return &Scheduler{cfg: cfg, pub: pub, partitions: partitions, log: log}, nil
}

// Boundary is the start of the period holding t.
func (s *Scheduler) Boundary(t time.Time) time.Time {
	t = t.In(s.cfg.Location)
	if s.cfg.Period == "hour" {
		return t.Truncate(time.Hour)
	}
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, s.cfg.Location)
}

func (s *Scheduler) next(b time.Time) time.Time {
	if s.cfg.Period == "hour" {
		return b.Add(time.Hour)
	}
	return b.AddDate(0, 0, 1)
}

// Tick publishes the tick of boundary b to every partition. Publishing the same
// boundary again is harmless: the stream answers duplicates.
func (s *Scheduler) Tick(ctx context.Context, b time.Time) error {
	evs, err := events.NewPartitionEvents(s.partitions, b, events.ClockTicked{Period: s.cfg.Period, Tick: b})
	if err != nil {
		return err
	}
	id := s.cfg.Period + "-" + b.Format("2006-01-02T15")
	if s.cfg.Period == "day" {
		id = s.cfg.Period + "-" + b.Format("2006-01-02")
	}
	for _, e := range evs {
		e.ID, e.Source = id, Source
	}
	var stored, dup int
	for _, r := range s.pub.PublishBatch(ctx, evs) {
		switch {
		case r.Err != nil:
			return fmt.Errorf("clock tick %s: %w", id, r.Err)
		case r.Duplicate:
			dup++
		default:
			stored++
		}
	}
	s.log.Info("clock ticked", "tick", id, "partitions", s.partitions, "stored", stored, "duplicates", dup)
	return nil
}

// Run publishes the current period's tick at start (catching up a boundary missed
// while no scheduler ran), then each boundary as it passes, until ctx is cancelled.
// A failed tick is retried every few seconds.
func (s *Scheduler) Run(ctx context.Context) error {
	b := s.Boundary(s.cfg.Now())
	for {
		for {
			err := s.Tick(ctx, b)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("clock tick failed; retrying", "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
		b = s.next(b)
		t := time.NewTimer(time.Until(b))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
