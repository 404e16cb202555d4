package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PartitionLog is what the log holds for one partition.
type PartitionLog struct {
	Messages uint64
	LastTime time.Time
}

// ReadPartitionLog counts the messages of each given partition in a stream (per-subject
// counts, which stay few because subjects are <prefix>.<partition>.<type>) and the
// time of each partition's newest message.
func ReadPartitionLog(ctx context.Context, js jetstream.JetStream, stream, prefix string, parts []int) (map[int]PartitionLog, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefix+".*.>"))
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", stream, err)
	}
	want := map[int]bool{}
	for _, p := range parts {
		want[p] = true
	}
	out := make(map[int]PartitionLog, len(parts))
	for subj, n := range info.State.Subjects {
		p, ok := partitionToken(subj, prefix)
		if !ok || !want[p] {
			continue
		}
		pl := out[p]
		pl.Messages += n
		out[p] = pl
	}
	for _, p := range parts {
		pl := out[p]
		if pl.Messages == 0 {
			continue
		}
		m, err := s.GetLastMsgForSubject(ctx, prefix+"."+strconv.Itoa(p)+".>")
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			return nil, fmt.Errorf("last message of partition %d: %w", p, err)
		}
		pl.LastTime = m.Time
		out[p] = pl
	}
	return out, nil
}

func partitionToken(subject, prefix string) (int, bool) {
	if len(subject) <= len(prefix)+1 || subject[:len(prefix)+1] != prefix+"." {
		return 0, false
	}
	rest := subject[len(prefix)+1:]
	end := 0
	for end < len(rest) && rest[end] != '.' {
		end++
	}
	n, err := strconv.Atoi(rest[:end])
	return n, err == nil
}

// measureLag records, for every target and owned partition, how far the target is
// behind the log, in the lag table and as metrics.
func (r *Runner) measureLag(ctx context.Context, owned []int) error {
	if len(owned) == 0 {
		return nil
	}
	byStream := map[string][]int{}
	for _, p := range owned {
		s := r.deps.Layout.Stream(p)
		byStream[s] = append(byStream[s], p)
	}
	logs := map[int]PartitionLog{}
	for s, parts := range byStream {
		pl, err := ReadPartitionLog(ctx, r.deps.JS, s, r.deps.Layout.Prefix, parts)
		if err != nil {
			return err
		}
		for p, l := range pl {
			logs[p] = l
		}
	}
	for _, t := range r.targets {
		cps, err := LoadCheckpoints(ctx, r.deps.Pool, t, owned)
		if err != nil {
			return err
		}
		parts := make([]int32, 0, len(owned))
		evs := make([]int64, 0, len(owned))
		secs := make([]float64, 0, len(owned))
		for _, p := range owned {
			l, cp := logs[p], cps[p]
			behind := int64(l.Messages) - int64(cp.Applied)
			if behind < 0 {
				behind = 0
			}
			var lagSecs float64
			if behind > 0 && !l.LastTime.IsZero() {
				since := cp.LastStoredAt
				if since.IsZero() {
					since = l.LastTime
				}
				lagSecs = max(l.LastTime.Sub(since).Seconds(), 0)
			}
			parts, evs, secs = append(parts, int32(p)), append(evs, behind), append(secs, lagSecs)
			label := strconv.Itoa(p)
			r.m.lagEvents.WithLabelValues(t, label).Set(float64(behind))
			r.m.lagSecs.WithLabelValues(t, label).Set(lagSecs)
		}
		if _, err := r.deps.Pool.Exec(ctx, `INSERT INTO projections.lag (target, partition, lag_events, lag_seconds, owner, measured_at)
			SELECT $1, p, e, s, $5, now() FROM unnest($2::int[], $3::bigint[], $4::float8[]) AS u(p, e, s)
			ON CONFLICT (target, partition) DO UPDATE SET lag_events = excluded.lag_events,
				lag_seconds = excluded.lag_seconds, owner = excluded.owner, measured_at = excluded.measured_at`,
			t, parts, evs, secs, r.cfg.Instance); err != nil {
			return fmt.Errorf("record lag of %s: %w", t, err)
		}
	}
	return nil
}
