package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/customer360"
)

// ErrMismatch: the read model differs from the log. Report.Err wraps it with the first
// differing partition and customer.
var ErrMismatch = errors.New("read model differs from the log")

// Deps are a Verifier's collaborators.
type Deps struct {
	Pool     *pgxpool.Pool
	JS       jetstream.JetStream
	Layout   events.Layout
	Registry prometheus.Registerer // nil: metrics are kept but not exported
	Log      *slog.Logger          // nil: silent
}

// Options say what to verify.
type Options struct {
	// Target is the customer360 version to verify, e.g. "customer360_v1".
	Target string
	// Partitions to verify; nil: every partition of the layout.
	Partitions []int
	// FetchBatch is how many messages the ordered consumer pulls at a time (default 1000).
	FetchBatch int
	// Progress, if not nil, is called while the log is read (about once per batch) and
	// once at the end of each stream.
	Progress func(Progress)
}

// Progress is how far the log reading is.
type Progress struct {
	Stream string
	Read   uint64 // messages read so far, all streams
	Total  uint64 // messages to read, estimated when the streams were opened
}

// Verifier checks a customer360 read model against the log.
type Verifier struct {
	deps  Deps
	opts  Options
	parts []int
	m     *metrics
}

// New returns a verifier.
func New(deps Deps, opts Options) (*Verifier, error) {
	var errs []error
	if deps.Pool == nil {
		errs = append(errs, errors.New("verify: pool: required"))
	}
	if deps.JS == nil {
		errs = append(errs, errors.New("verify: JetStream: required"))
	}
	if err := deps.Layout.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("verify: %w", err))
	}
	if opts.Target == "" {
		errs = append(errs, errors.New("verify: target: required (e.g. customer360_v1)"))
	}
	if opts.FetchBatch < 0 || opts.FetchBatch > 100_000 {
		errs = append(errs, fmt.Errorf("verify: fetch batch %d: must be between 1 and 100000", opts.FetchBatch))
	}
	parts := slices.Clone(opts.Partitions)
	for _, p := range parts {
		if p < 0 || p >= deps.Layout.Partitions {
			errs = append(errs, fmt.Errorf("verify: partition %d: not in 0-%d", p, deps.Layout.Partitions-1))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		for p := range deps.Layout.Partitions {
			parts = append(parts, p)
		}
	}
	slices.Sort(parts)
	parts = slices.Compact(parts)
	if opts.FetchBatch == 0 {
		opts.FetchBatch = 1000
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	return &Verifier{deps: deps, opts: opts, parts: parts, m: newMetrics(deps.Registry)}, nil
}

// Report is the outcome of one verification.
type Report struct {
	Target     string            `json:"target"`
	OK         bool              `json:"ok"`
	Customers  int               `json:"customers_checked"`
	Events     int64             `json:"events_counted"` // customer events at or below the checkpoints, not parked
	Read       uint64            `json:"events_read"`    // messages read from the log
	Differing  int               `json:"customers_differing"`
	Seconds    float64           `json:"seconds"`
	Partitions []PartitionReport `json:"partitions"`
}

// PartitionReport is the outcome for one partition.
type PartitionReport struct {
	Partition  int       `json:"partition"`
	Stream     string    `json:"stream"`
	Checkpoint uint64    `json:"checkpoint_seq"`
	OK         bool      `json:"ok"`
	Customers  int       `json:"customers_checked"`
	Events     int64     `json:"events_counted"`
	Parked     int64     `json:"parked_events_left_out"`
	Differing  int       `json:"customers_differing"`
	First      *Mismatch `json:"first_mismatch,omitempty"` // the differing customer with the lowest id
}

// Mismatch is a customer whose profile differs from the log.
type Mismatch struct {
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason"`
	Diffs      []Diff `json:"diffs"`
}

// Diff is one differing value: Expected is recomputed from the log, Actual is the read
// model's.
type Diff struct {
	Field    string `json:"field"`
	Expected int64  `json:"expected"`
	Actual   int64  `json:"actual"`
}

// Reasons of a mismatch.
const (
	ReasonValues    = "values differ"
	ReasonNoProfile = "events in the log but no profile"
	ReasonNoEvents  = "profile but no events in the log"
)

// Err is nil when the report is clean, and otherwise an error matching ErrMismatch that
// names the first differing partition and customer.
func (r *Report) Err() error {
	if r.OK {
		return nil
	}
	for _, p := range r.Partitions {
		if p.OK || p.First == nil {
			continue
		}
		msg := fmt.Sprintf("%s: %d customers differ in %d partitions; first: partition %d customer %s (%s)",
			r.Target, r.Differing, r.differingPartitions(), p.Partition, p.First.CustomerID, p.First.Reason)
		for _, d := range p.First.Diffs {
			msg += fmt.Sprintf(" %s expected %d actual %d;", d.Field, d.Expected, d.Actual)
		}
		return fmt.Errorf("%w: %s", ErrMismatch, msg)
	}
	return fmt.Errorf("%w: %s", ErrMismatch, r.Target)
}

func (r *Report) differingPartitions() int {
	n := 0
	for _, p := range r.Partitions {
		if !p.OK {
			n++
		}
	}
	return n
}

// Run verifies the target once. A mismatch is not an error of Run: it is in the report
// (see Report.Err). Run fails when the log or the database cannot be read, or when the
// target does not exist.
func (v *Verifier) Run(ctx context.Context) (*Report, error) {
	began := time.Now()
	// One snapshot: the checkpoints and the rows they were committed with.
	tx, err := v.deps.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("verify %s: begin snapshot: %w", v.opts.Target, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	cps, err := projections.LoadCheckpoints(ctx, tx, v.opts.Target, v.parts)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	for _, p := range v.parts {
		if _, ok := cps[p]; !ok {
			return nil, fmt.Errorf("verify %s: partition %d has no checkpoint: unknown target, or never run", v.opts.Target, p)
		}
	}
	parked, err := v.parked(ctx, tx)
	if err != nil {
		return nil, err
	}
	lg := newLedger(v.deps.Layout.Partitions, v.parts, cps, parked)
	if err := v.readLog(ctx, lg); err != nil {
		return nil, err
	}
	rep := &Report{Target: v.opts.Target, OK: true, Read: lg.read}
	for _, p := range v.parts {
		pr, err := v.compare(ctx, tx, p, cps[p], lg)
		if err != nil {
			return nil, err
		}
		rep.Partitions = append(rep.Partitions, pr)
		rep.Customers += pr.Customers
		rep.Events += pr.Events
		rep.Differing += pr.Differing
		rep.OK = rep.OK && pr.OK
		if pr.Differing > 0 {
			v.m.mismatches.WithLabelValues(v.opts.Target, fmt.Sprint(p)).Add(float64(pr.Differing))
		}
	}
	rep.Seconds = time.Since(began).Seconds()
	ok := 0.0
	if rep.OK {
		ok = 1
	}
	v.m.lastOK.WithLabelValues(v.opts.Target).Set(ok)
	v.m.lastRun.WithLabelValues(v.opts.Target).SetToCurrentTime()
	v.m.customers.WithLabelValues(v.opts.Target).Set(float64(rep.Customers))
	v.deps.Log.Info("verified", "target", v.opts.Target, "ok", rep.OK, "customers", rep.Customers, "events", rep.Events,
		"customers_differing", rep.Differing, "seconds", rep.Seconds)
	return rep, nil
}

// parked reads the target's dead letters that were not redriven: events the target
// consumed without applying them.
func (v *Verifier) parked(ctx context.Context, tx pgx.Tx) (map[streamSeq]struct{}, error) {
	rows, err := tx.Query(ctx, `SELECT stream, seq FROM projections.dead_letters WHERE target = $1 AND status <> 'redriven'`, v.opts.Target)
	if err != nil {
		return nil, fmt.Errorf("verify %s: dead letters: %w", v.opts.Target, err)
	}
	defer rows.Close()
	out := map[streamSeq]struct{}{}
	for rows.Next() {
		var k streamSeq
		var seq int64
		if err := rows.Scan(&k.stream, &seq); err != nil {
			return nil, fmt.Errorf("verify %s: dead letters: %w", v.opts.Target, err)
		}
		k.seq = uint64(seq)
		out[k] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify %s: dead letters: %w", v.opts.Target, err)
	}
	return out, nil
}

// compare reads the partition's profiles (one query) and compares each with the
// customer's tally from the log.
func (v *Verifier) compare(ctx context.Context, tx pgx.Tx, p int, cp projections.Checkpoint, lg *ledger) (PartitionReport, error) {
	pr := PartitionReport{Partition: p, Stream: v.deps.Layout.Stream(p), Checkpoint: cp.Seq, Parked: lg.parkedIn[p]}
	tallies := lg.customers[p]
	seen := make(map[string]struct{}, len(tallies))
	note := func(m Mismatch) {
		pr.Differing++
		if pr.First == nil || m.CustomerID < pr.First.CustomerID {
			pr.First = &m
		}
	}
	err := customer360.ScanTotals(ctx, tx, v.opts.Target, p, func(got customer360.Totals) error {
		pr.Customers++
		want, ok := tallies[got.CustomerID]
		if !ok {
			note(Mismatch{CustomerID: got.CustomerID, Reason: ReasonNoEvents, Diffs: diffs(&tally{}, got)})
			return nil
		}
		seen[got.CustomerID] = struct{}{}
		if d := diffs(want, got); len(d) > 0 {
			note(Mismatch{CustomerID: got.CustomerID, Reason: ReasonValues, Diffs: d})
		}
		return nil
	})
	if err != nil {
		return pr, fmt.Errorf("verify: %w", err)
	}
	for c, t := range tallies {
		pr.Events += t.events
		if _, ok := seen[c]; !ok {
			pr.Customers++
			note(Mismatch{CustomerID: c, Reason: ReasonNoProfile, Diffs: diffs(t, customer360.Totals{CustomerID: c})})
		}
	}
	pr.OK = pr.Differing == 0
	return pr, nil
}

// diffs lists the values of got that differ from the log's tally.
func diffs(want *tally, got customer360.Totals) []Diff {
	var out []Diff
	add := func(field string, w, g int64) {
		if w != g {
			out = append(out, Diff{Field: field, Expected: w, Actual: g})
		}
	}
	add("events_total", want.events, got.EventsTotal)
	add("seq_hash", int64(want.hash), got.SeqHash)
	add("recharge_total_fen", want.recharge, got.RechargeTotalFen)
	add("lifetime_spend_fen", want.spend, got.LifetimeSpendFen)
	return out
}
