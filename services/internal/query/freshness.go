package query

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/touchstream/touchstream/projections"
)

// Freshness says how current a read is: the stream sequence the read model reflects
// and how far behind the log it was when last measured. See the package
// documentation for what it means for one customer and for a search.
type Freshness struct {
	Target string `json:"target"`
	// Partition is the customer's partition; nil for a summary over partitions.
	Partition *int `json:"partition,omitempty"`
	// Partitions is how many partitions this summarises (1 for a customer).
	Partitions   int        `json:"partitions"`
	Seq          uint64     `json:"seq"`
	LastStoredAt *time.Time `json:"last_stored_at"`
	LagEvents    int64      `json:"lag_events"`
	LagSeconds   float64    `json:"lag_seconds"`
	MeasuredAt   *time.Time `json:"lag_measured_at"`
}

// Freshness headers.
const (
	headerSeq = "X-Touchstream-Seq"
	headerLag = "X-Touchstream-Lag-Seconds"
)

func (f *Freshness) setHeaders(h http.Header) {
	h.Set(headerSeq, strconv.FormatUint(f.Seq, 10))
	h.Set(headerLag, strconv.FormatFloat(f.LagSeconds, 'f', -1, 64))
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// customerFreshness reads the freshness of target in the customer's partition.
func (s *Server) customerFreshness(ctx context.Context, target, customer string) (*Freshness, error) {
	p := s.cfg.Layout.PartitionOf(customer)
	f, err := projections.ReadFreshness(ctx, s.db, target, p)
	if err != nil {
		return nil, err
	}
	return &Freshness{Target: target, Partition: &p, Partitions: 1, Seq: f.Seq, LastStoredAt: timePtr(f.LastStoredAt),
		LagEvents: f.LagEvents, LagSeconds: f.LagSeconds, MeasuredAt: timePtr(f.MeasuredAt)}, nil
}

// summaryFreshness summarises target over every partition: the lowest checkpoint,
// the oldest log time reflected, the highest lags and the oldest measurement, so that
// what it states holds for every partition.
//
// It reads the runtime's tables directly because projections offers only a
// per-partition ReadFreshness; one statement here beats one per partition.
func (s *Server) summaryFreshness(ctx context.Context, target string) (*Freshness, error) {
	f := &Freshness{Target: target}
	var seq int64
	var stored, measured *time.Time
	err := s.db.QueryRow(ctx, `SELECT count(*), coalesce(min(c.seq), 0), min(c.last_stored_at),
			coalesce(max(l.lag_events), 0), coalesce(max(l.lag_seconds), 0), min(l.measured_at)
		FROM projections.checkpoints c
		LEFT JOIN projections.lag l ON l.target = c.target AND l.partition = c.partition
		WHERE c.target = $1`, target).Scan(&f.Partitions, &seq, &stored, &f.LagEvents, &f.LagSeconds, &measured)
	if err != nil {
		return nil, fmt.Errorf("freshness of %s: %w", target, err)
	}
	f.Seq = uint64(seq)
	if stored != nil {
		f.LastStoredAt = timePtr(*stored)
	}
	if measured != nil {
		f.MeasuredAt = timePtr(*measured)
	}
	return f, nil
}
