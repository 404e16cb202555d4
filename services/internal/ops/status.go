package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/projections"
)

// Status is the state of the log and of every projection target.
type Status struct {
	At          time.Time                     `json:"at"`
	Partitions  int                           `json:"partitions"`
	Streams     []StreamStatus                `json:"streams"`
	Targets     []TargetStatus                `json:"targets"`
	DeadLetters []projections.DeadLetterCount `json:"dead_letters"`
	// Rebuilds are the rebuilds in progress (status running); empty when none, or
	// when the runtime has no rebuild table yet.
	Rebuilds []Rebuild `json:"rebuilds"`
}

// StreamStatus is one stream of the log.
type StreamStatus struct {
	Name           string    `json:"name"`
	FirstPartition int       `json:"first_partition"`
	LastPartition  int       `json:"last_partition"`
	Messages       uint64    `json:"messages"`
	Bytes          uint64    `json:"bytes"`
	FirstSeq       uint64    `json:"first_seq"`
	LastSeq        uint64    `json:"last_seq"`
	LastTime       time.Time `json:"last_time,omitzero"`
}

// TargetStatus is one projection target (a version of a read model).
type TargetStatus struct {
	Target  string `json:"target"`
	Serving string `json:"serving,omitempty"` // the projection it serves, if it is a serving version
	// Summary over its partitions: the lowest checkpoint, the highest lags.
	MinSeq        uint64            `json:"min_seq"`
	MaxSeq        uint64            `json:"max_seq"`
	Applied       uint64            `json:"applied"`
	LagEvents     uint64            `json:"lag_events"`
	LagSeconds    float64           `json:"lag_seconds"`
	ParkedEvents  int64             `json:"parked"`
	PartitionList []PartitionStatus `json:"partitions"`
}

// PartitionStatus is a target's position in one partition. Lag is measured now:
// events in the partition not yet consumed by the target, and the log time between the
// last event it consumed and the partition's newest.
type PartitionStatus struct {
	Partition     int       `json:"partition"`
	Seq           uint64    `json:"seq"`
	Applied       uint64    `json:"applied"`
	LagEvents     uint64    `json:"lag_events"`
	LagSeconds    float64   `json:"lag_seconds"`
	PartitionTime time.Time `json:"partition_time,omitzero"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Rebuild is a rebuild in progress.
type Rebuild struct {
	Target     string    `json:"target"`
	Projection string    `json:"projection"`
	Status     string    `json:"status"`
	StartedAt  time.Time `json:"started_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	Seq        uint64    `json:"seq"`
	Total      uint64    `json:"total"`
}

// Status reads the state of the log (stream info, per-partition counts) and of every
// target recorded in the checkpoints.
func (s *Service) Status(ctx context.Context) (*Status, error) {
	st := &Status{At: time.Now().UTC(), Partitions: s.d.Layout.Partitions, Streams: []StreamStatus{}, Targets: []TargetStatus{},
		Rebuilds: []Rebuild{}}
	logs := map[int]projections.PartitionLog{}
	for _, sl := range s.d.Layout.Streams {
		str, err := s.d.JS.Stream(ctx, sl.Name)
		if err != nil {
			return nil, fmt.Errorf("status: stream %s: %w", sl.Name, err)
		}
		info, err := str.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("status: stream %s: %w", sl.Name, err)
		}
		ss := StreamStatus{Name: sl.Name, FirstPartition: sl.First, LastPartition: sl.Last, Messages: info.State.Msgs,
			Bytes: info.State.Bytes, FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, LastTime: info.State.LastTime.UTC()}
		if info.State.Msgs == 0 {
			ss.LastTime = time.Time{}
		}
		st.Streams = append(st.Streams, ss)
		var parts []int
		for p := sl.First; p <= sl.Last; p++ {
			parts = append(parts, p)
		}
		pl, err := projections.ReadPartitionLog(ctx, s.d.JS, sl.Name, s.d.Layout.Prefix, parts)
		if err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
		for p, l := range pl {
			logs[p] = l
		}
	}

	serving, err := s.serving(ctx)
	if err != nil {
		return nil, err
	}
	counts, err := projections.CountDeadLetters(ctx, s.d.Pool)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	st.DeadLetters = counts
	if st.DeadLetters == nil {
		st.DeadLetters = []projections.DeadLetterCount{}
	}
	parked := map[string]int64{}
	for _, c := range counts {
		if c.Status == projections.StatusParked {
			parked[c.Target] += c.Count
		}
	}

	rows, err := s.d.Pool.Query(ctx, `SELECT target, partition, seq, applied, partition_time, last_stored_at, updated_at
		FROM projections.checkpoints ORDER BY target, partition`)
	if err != nil {
		return nil, fmt.Errorf("status: checkpoints: %w", err)
	}
	var cur *TargetStatus
	var target string
	var part int32
	var seq, applied int64
	var ptime, stored *time.Time
	var updated time.Time
	_, err = pgx.ForEachRow(rows, []any{&target, &part, &seq, &applied, &ptime, &stored, &updated}, func() error {
		if cur == nil || cur.Target != target {
			st.Targets = append(st.Targets, TargetStatus{Target: target, Serving: serving[target], MinSeq: uint64(seq),
				ParkedEvents: parked[target]})
			cur = &st.Targets[len(st.Targets)-1]
		}
		ps := PartitionStatus{Partition: int(part), Seq: uint64(seq), Applied: uint64(applied), UpdatedAt: updated}
		if ptime != nil {
			ps.PartitionTime = *ptime
		}
		l := logs[int(part)]
		if l.Messages > ps.Applied {
			ps.LagEvents = l.Messages - ps.Applied
			if !l.LastTime.IsZero() {
				since := l.LastTime
				if stored != nil {
					since = *stored
				} else if first, ok := s.firstTime(ctx, int(part)); ok {
					since = first
				}
				ps.LagSeconds = max(l.LastTime.Sub(since).Seconds(), 0)
			}
		}
		cur.MinSeq = min(cur.MinSeq, ps.Seq)
		cur.MaxSeq = max(cur.MaxSeq, ps.Seq)
		cur.Applied += ps.Applied
		cur.LagEvents += ps.LagEvents
		cur.LagSeconds = max(cur.LagSeconds, ps.LagSeconds)
		cur.PartitionList = append(cur.PartitionList, ps)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("status: checkpoints: %w", err)
	}
	if st.Rebuilds, err = s.rebuilds(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// firstTime is the time of a partition's oldest message; a target that consumed
// nothing is behind by the whole partition.
func (s *Service) firstTime(ctx context.Context, p int) (time.Time, bool) {
	str, err := s.d.JS.Stream(ctx, s.d.Layout.Stream(p))
	if err != nil {
		return time.Time{}, false
	}
	m, err := str.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(s.d.Layout.PartitionFilter(p)))
	if err != nil {
		return time.Time{}, false
	}
	return m.Time, true
}

// serving maps each serving target to its projection, when the runtime records them.
func (s *Service) serving(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	var exists bool
	if err := s.d.Pool.QueryRow(ctx, `SELECT to_regclass('projections.serving') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("status: serving versions: %w", err)
	}
	if !exists {
		return out, nil
	}
	rows, err := s.d.Pool.Query(ctx, `SELECT target, projection FROM projections.serving`)
	if err != nil {
		return nil, fmt.Errorf("status: serving versions: %w", err)
	}
	var t, p string
	if _, err := pgx.ForEachRow(rows, []any{&t, &p}, func() error { out[t] = p; return nil }); err != nil {
		return nil, fmt.Errorf("status: serving versions: %w", err)
	}
	return out, nil
}

// rebuilds lists the rebuilds in progress, tolerating a runtime without the table.
func (s *Service) rebuilds(ctx context.Context) ([]Rebuild, error) {
	var exists bool
	if err := s.d.Pool.QueryRow(ctx, `SELECT to_regclass('projections.rebuilds') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("status: rebuilds: %w", err)
	}
	out := []Rebuild{}
	if !exists {
		return out, nil
	}
	rows, err := s.d.Pool.Query(ctx, `SELECT target, projection, status, started_at, updated_at, seq, total
		FROM projections.rebuilds WHERE status = 'running' ORDER BY started_at`)
	if err != nil {
		return nil, fmt.Errorf("status: rebuilds: %w", err)
	}
	var r Rebuild
	var seq, total int64
	_, err = pgx.ForEachRow(rows, []any{&r.Target, &r.Projection, &r.Status, &r.StartedAt, &r.UpdatedAt, &seq, &total}, func() error {
		r.Seq, r.Total = uint64(seq), uint64(total)
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("status: rebuilds: %w", err)
	}
	return out, nil
}
