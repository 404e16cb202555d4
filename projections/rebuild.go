package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// RebuildSpec is one rebuild: a new version of a projection folded from the log beside
// the serving one.
type RebuildSpec struct {
	// Projection is the projection's name ("customer360"); New binds it to a target.
	Projection string
	New        func(target string) (Projection, error)
	// Pin names the rule or model version the new version folds the whole history
	// under ("" : the versions the log activates, each from its effective time). It is
	// recorded with the rebuild (TargetPin), so that whoever continues the version
	// after a switch folds it under the same pin.
	Pin string
	// Target names the new version; "" resumes the projection's interrupted rebuild of
	// the same range, or else takes the next version number.
	Target string
	// FromSeq and ToSeq bound a replay to a range of the log (0: from the beginning, to
	// the end). A range replay builds a version for inspection; it never switches.
	FromSeq, ToSeq uint64
	// Switch makes the new version the serving one once it has caught up with the log.
	Switch bool
	// SwitchWait bounds how long the switch waits for the serving version (folded by
	// the live projector) to be at least as far as the new one (default 1m; see
	// Switch).
	SwitchWait time.Duration
	// Config tunes the rebuild's runner; its Group is set to "rebuild:<target>".
	Config Config
	// Progress, if set, is called about every ProgressEvery (default 1s) and at the end.
	Progress      func(RebuildProgress)
	ProgressEvery time.Duration
}

// RebuildProgress is where a rebuild stands.
type RebuildProgress struct {
	Target  string
	Seq     uint64        // highest stream sequence read
	Last    uint64        // the sequence it is heading for (the log's end when last measured)
	Read    uint64        // events read by this run
	Elapsed time.Duration // of this run
	Rate    float64       // events read per second in this run
	ETA     time.Duration // at Rate, to Last; 0 when unknown
	Done    bool
	// Stage, when set, is what the rebuild does besides reading the log (creating
	// its deferred indexes).
	Stage string
}

// RebuildResult is what a finished rebuild did.
type RebuildResult struct {
	Target     string
	Replaced   string // the serving version when it started ("" if none)
	Resumed    bool   // it continued an interrupted rebuild
	Switched   bool
	Read       uint64 // events read by this run
	Elapsed    time.Duration
	SwitchSeqs map[int]uint64 // per partition, where the new version took over
	// Deferred is how many secondary indexes the rebuild created at its end (see
	// IndexDeferrer), in IndexTime.
	Deferred  int
	IndexTime time.Duration
}

// ErrAlreadyBuilt: the target named is not a rebuild that can run (it serves, was
// built, switched or dropped).
var ErrAlreadyBuilt = errors.New("target already built")

// Rebuild folds a new version of a projection from the log while the serving version
// keeps answering, recording its progress in projections.rebuilds. Interrupted (ctx
// cancelled, process killed), it keeps its checkpoints: running it again resumes where
// it stopped. With Switch, once caught up it switches readers to the new version in one
// statement (Switch) and the old version is kept until DropTarget. The live projector
// follows the serving pointer and continues the new version from its checkpoints.
//
// The rebuild runs in its own lease group and never writes the serving version.
// Derived signals must not be re-sent by a rebuild: projections that emit signals
// emit only for the serving target, from the switch sequence on.
func Rebuild(ctx context.Context, deps Deps, spec RebuildSpec) (RebuildResult, error) {
	if spec.New == nil || spec.Projection == "" {
		return RebuildResult{}, errors.New("rebuild: Projection and New are required")
	}
	if spec.ToSeq > 0 && spec.ToSeq < spec.FromSeq {
		return RebuildResult{}, fmt.Errorf("rebuild: to-seq %d is before from-seq %d", spec.ToSeq, spec.FromSeq)
	}
	ranged := spec.FromSeq > 1 || spec.ToSeq > 0
	if ranged && spec.Switch {
		return RebuildResult{}, errors.New("rebuild: a replay of a range builds a version for inspection; it cannot switch readers")
	}
	pool := deps.Pool
	if err := Migrate(ctx, pool); err != nil {
		return RebuildResult{}, err
	}
	serving, err := ServingTargets(ctx, pool)
	if err != nil {
		return RebuildResult{}, err
	}
	res := RebuildResult{Replaced: serving[spec.Projection]}
	res.Target, res.Resumed, err = claimTarget(ctx, pool, spec, res.Replaced)
	if err != nil {
		return res, err
	}
	proj, err := spec.New(res.Target)
	if err != nil {
		return res, err
	}
	cfg := spec.Config
	cfg.Group = "rebuild:" + res.Target
	cfg.NoSignals = true // a rebuild never emits: the serving version did, or will past the switch
	r, err := NewRunner(cfg, deps, proj)
	if err != nil {
		return res, err
	}
	if err := r.Prepare(ctx); err != nil {
		return res, err
	}
	if d, ok := proj.(IndexDeferrer); ok {
		n, err := deferIndexes(ctx, pool, res.Target, d.DeferredIndexes())
		if err != nil {
			return res, err
		}
		if n > 0 {
			r.log.Info("rebuild: secondary indexes deferred to the end", "target", res.Target, "indexes", n)
		}
	}
	if spec.FromSeq > 1 {
		// A range starts as if everything before it had been read.
		if _, err := pool.Exec(ctx, `UPDATE projections.checkpoints SET seq = $2 WHERE target = $1 AND seq < $2 AND applied = 0`,
			res.Target, int64(spec.FromSeq-1)); err != nil {
			return res, fmt.Errorf("rebuild %s: start at %d: %w", res.Target, spec.FromSeq, err)
		}
	}

	tr := newTracker(res.Target, spec.ToSeq)
	every := spec.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p := tr.snapshot()
				recordProgress(ctx, pool, p, "running", "")
				if spec.Progress != nil {
					spec.Progress(p)
				}
			}
		}
	}()
	runErr := r.CatchUpTo(ctx, spec.ToSeq, tr.observe)
	if runErr == nil && ctx.Err() != nil {
		runErr = ctx.Err() // the runner drains and returns nil when stopped
	}
	if runErr == nil {
		// Before the version can be built or serve: the indexes it was folded without.
		if spec.Progress != nil {
			p := tr.snapshot()
			p.Stage = "creating the deferred indexes"
			spec.Progress(p)
		}
		res.IndexTime, res.Deferred, runErr = createDeferredIndexes(ctx, pool, res.Target, func(def string, took time.Duration) {
			r.log.Info("rebuild: deferred index created", "target", res.Target, "index", def, "seconds", took.Seconds())
		})
		if runErr != nil && ctx.Err() != nil {
			runErr = ctx.Err()
		}
	}
	if runErr == nil && spec.Switch {
		// Catch up once more right before switching, so readers move to a version as
		// fresh as the one they leave; the live projector continues it from there.
		runErr = r.CatchUpTo(ctx, 0, tr.observe)
		if runErr == nil && ctx.Err() != nil {
			runErr = ctx.Err()
		}
	}
	close(stop)
	wg.Wait()
	final := tr.snapshot()
	res.Read, res.Elapsed = final.Read, final.Elapsed
	if runErr != nil {
		if ctx.Err() != nil {
			recordProgress(context.WithoutCancel(ctx), pool, final, "running", "")
			return res, fmt.Errorf("rebuild %s interrupted at seq %d (run it again to resume): %w", res.Target, final.Seq, ctx.Err())
		}
		recordProgress(ctx, pool, final, "failed", runErr.Error())
		return res, fmt.Errorf("rebuild %s: %w (run it again to resume)", res.Target, runErr)
	}
	final.Done = true
	status := "built"
	if spec.Switch {
		var seqs map[int]uint64
		err := switchWhenCaughtUp(ctx, pool, spec.SwitchWait, func(tx pgx.Tx) error {
			var err error
			if seqs, err = Switch(ctx, tx, spec.Projection, res.Replaced, res.Target); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE projections.rebuilds SET status = 'switched', updated_at = now(), finished_at = now(),
				seq = greatest(seq, $2), total = greatest(total, $3),
				applied = coalesce((SELECT sum(applied) FROM projections.checkpoints WHERE target = $1), 0)
				WHERE target = $1`, res.Target, int64(final.Seq), int64(final.Last))
			return err
		})
		if errors.Is(err, ErrServingBehind) {
			recordProgress(ctx, pool, final, "built", "")
		}
		if err != nil {
			return res, err
		}
		res.Switched, res.SwitchSeqs, status = true, seqs, "switched"
	} else {
		recordProgress(ctx, pool, final, status, "")
	}
	if spec.Progress != nil {
		spec.Progress(final)
	}
	return res, nil
}

// SwitchBuilt makes a version that a rebuild built without switching the serving one.
// The live projector continues it from its checkpoints.
// It waits up to wait for the serving version to catch up (see Switch).
func SwitchBuilt(ctx context.Context, pool *pgxpool.Pool, target string, wait time.Duration) error {
	projection, _, ok := TargetVersion(target)
	if !ok {
		return fmt.Errorf("switch %q: not a versioned target such as customer360_v2", target)
	}
	var status string
	var from, to int64
	err := pool.QueryRow(ctx, `SELECT status, from_seq, to_seq FROM projections.rebuilds WHERE target = $1`, target).Scan(&status, &from, &to)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("switch %s: no rebuild of that name", target)
	}
	if err != nil {
		return fmt.Errorf("switch %s: %w", target, err)
	}
	if status != "built" || from > 1 || to > 0 {
		return fmt.Errorf("switch %s: it is %s (range %d-%d); only a completed rebuild of the whole log can serve", target, status, from, to)
	}
	serving, err := ServingTargets(ctx, pool)
	if err != nil {
		return err
	}
	return switchWhenCaughtUp(ctx, pool, wait, func(tx pgx.Tx) error {
		if _, err := Switch(ctx, tx, projection, serving[projection], target); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE projections.rebuilds SET status = 'switched', updated_at = now() WHERE target = $1`, target)
		return err
	})
}

// TargetPin is the rule or model version a target was rebuilt pinned to ("" when it
// was not, or was never rebuilt): the projector folds a switched version under it.
func TargetPin(ctx context.Context, q Querier, target string) (string, error) {
	var pin string
	err := q.QueryRow(ctx, `SELECT pin FROM projections.rebuilds WHERE target = $1`, target).Scan(&pin)
	if errors.Is(err, pgx.ErrNoRows) || isUndefinedTable(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("pin of %s: %w", target, err)
	}
	return pin, nil
}

// switchWhenCaughtUp runs fn (a switch) in a transaction, again while it fails with
// ErrServingBehind, for up to wait (default 1m).
func switchWhenCaughtUp(ctx context.Context, pool *pgxpool.Pool, wait time.Duration, fn func(pgx.Tx) error) error {
	if wait <= 0 {
		wait = time.Minute
	}
	deadline := time.Now().Add(wait)
	for {
		err := pgx.BeginFunc(ctx, pool, fn)
		if !errors.Is(err, ErrServingBehind) || time.Now().After(deadline) {
			if errors.Is(err, ErrServingBehind) {
				return fmt.Errorf("%w; waited %s: is the projector running? (the version stays built: switch it with `touchstream rebuild switch` once the projector has caught up)", err, wait)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Rebuilds lists rebuilds, newest first.
func Rebuilds(ctx context.Context, q Querier) ([]RebuildStatus, error) {
	rows, err := q.Query(ctx, `SELECT target, projection, status, coalesce(replaces, ''), from_seq, to_seq, pin, started_at, updated_at,
			finished_at, seq, total, applied, coalesce(error, '')
		FROM projections.rebuilds ORDER BY started_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("list rebuilds: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RebuildStatus, error) {
		var s RebuildStatus
		var from, to, seq, total, applied int64
		err := r.Scan(&s.Target, &s.Projection, &s.Status, &s.Replaces, &from, &to, &s.Pin, &s.StartedAt, &s.UpdatedAt,
			&s.FinishedAt, &seq, &total, &applied, &s.Error)
		s.FromSeq, s.ToSeq, s.Seq, s.Total, s.Applied = uint64(from), uint64(to), uint64(seq), uint64(total), uint64(applied)
		return s, err
	})
}

// RebuildStatus is a row of projections.rebuilds.
type RebuildStatus struct {
	Target, Projection, Status, Replaces string
	Pin                                  string
	FromSeq, ToSeq                       uint64
	StartedAt, UpdatedAt                 time.Time
	FinishedAt                           *time.Time
	Seq, Total, Applied                  uint64
	Error                                string
}

// claimTarget picks the target of a rebuild and records it as running.
func claimTarget(ctx context.Context, pool *pgxpool.Pool, spec RebuildSpec, serving string) (target string, resumed bool, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// Serialise rebuild starts of one projection.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('touchstream.rebuild.' || $1))`, spec.Projection); err != nil {
			return err
		}
		target, resumed = spec.Target, false
		if target == "" {
			err := tx.QueryRow(ctx, `SELECT target FROM projections.rebuilds
				WHERE projection = $1 AND status IN ('running', 'failed') AND from_seq = $2 AND to_seq = $3 AND pin = $4
				ORDER BY started_at DESC LIMIT 1`, spec.Projection, int64(spec.FromSeq), int64(spec.ToSeq), spec.Pin).Scan(&target)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		if target == "" {
			next, err := nextVersion(ctx, tx, spec.Projection, serving)
			if err != nil {
				return err
			}
			target = fmt.Sprintf("%s_v%d", spec.Projection, next)
		}
		if p, _, ok := TargetVersion(target); !ok || p != spec.Projection {
			return fmt.Errorf("rebuild: target %q must be %s_v<N>", target, spec.Projection)
		}
		if target == serving {
			return fmt.Errorf("rebuild: %s is the serving version: %w", target, ErrAlreadyBuilt)
		}
		var status, pin string
		var from, to int64
		err := tx.QueryRow(ctx, `SELECT status, from_seq, to_seq, pin FROM projections.rebuilds WHERE target = $1`, target).Scan(&status, &from, &to, &pin)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			_, err = tx.Exec(ctx, `INSERT INTO projections.rebuilds (target, projection, status, replaces, from_seq, to_seq, pin)
				VALUES ($1, $2, 'running', nullif($3, ''), $4, $5, $6)`, target, spec.Projection, serving, int64(spec.FromSeq), int64(spec.ToSeq), spec.Pin)
			return err
		case err != nil:
			return err
		case status != "running" && status != "failed":
			return fmt.Errorf("rebuild: %s is %s: %w", target, status, ErrAlreadyBuilt)
		case uint64(from) != spec.FromSeq || uint64(to) != spec.ToSeq:
			return fmt.Errorf("rebuild: %s was started for range %d-%d, not %d-%d", target, from, to, spec.FromSeq, spec.ToSeq)
		case pin != spec.Pin:
			return fmt.Errorf("rebuild: %s was started pinned to %q, not %q", target, pin, spec.Pin)
		}
		resumed = true
		_, err = tx.Exec(ctx, `UPDATE projections.rebuilds SET status = 'running', error = NULL, updated_at = now() WHERE target = $1`, target)
		return err
	})
	return target, resumed, err
}

// nextVersion is one above every version of the projection seen: serving, rebuilt,
// dropped or present as a schema.
func nextVersion(ctx context.Context, tx pgx.Tx, projection, serving string) (int, error) {
	next := 1
	consider := func(t string) {
		if p, v, ok := TargetVersion(t); ok && p == projection && v >= next {
			next = v + 1
		}
	}
	consider(serving)
	rows, err := tx.Query(ctx, `SELECT target FROM projections.rebuilds WHERE projection = $1
		UNION SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 || '\_v%'
		UNION SELECT DISTINCT target FROM projections.checkpoints WHERE target LIKE $1 || '\_v%'`, projection)
	if err != nil {
		return 0, err
	}
	var t string
	_, err = pgx.ForEachRow(rows, []any{&t}, func() error { consider(t); return nil })
	return next, err
}

func recordProgress(ctx context.Context, pool *pgxpool.Pool, p RebuildProgress, status, errText string) {
	// applied counts every event the version consumed, over all its runs: the sum of
	// its checkpoints' counters.
	_, _ = pool.Exec(ctx, `UPDATE projections.rebuilds SET status = $2, seq = greatest(seq, $3), total = greatest(total, $4),
			applied = coalesce((SELECT sum(applied) FROM projections.checkpoints WHERE target = $1), 0), updated_at = now(),
			finished_at = CASE WHEN $2 <> 'running' THEN now() END, error = nullif($5, '')
		WHERE target = $1`, p.Target, status, int64(p.Seq), int64(p.Last), errText)
}

// tracker turns the runner's per-batch callbacks into progress.
type tracker struct {
	mu     sync.Mutex
	target string
	to     uint64
	began  time.Time
	seq    uint64
	last   uint64
	read   uint64
}

func newTracker(target string, to uint64) *tracker {
	return &tracker{target: target, to: to, began: time.Now()}
}

func (t *tracker) observe(seq, pending uint64, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.read += uint64(n)
	t.seq = max(t.seq, seq)
	t.last = max(t.last, seq+pending, t.seq)
	if t.to > 0 {
		t.last = min(t.last, t.to)
	}
}

func (t *tracker) snapshot() RebuildProgress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := RebuildProgress{Target: t.target, Seq: t.seq, Last: t.last, Read: t.read, Elapsed: time.Since(t.began)}
	if s := p.Elapsed.Seconds(); s > 0 {
		p.Rate = float64(t.read) / s
	}
	if p.Rate > 0 && p.Last > p.Seq {
		p.ETA = time.Duration(float64(p.Last-p.Seq) / p.Rate * float64(time.Second))
	}
	return p
}

// SeqAtTime is the stream sequence of the first message stored at or after t (for
// replays given in time), or the last sequence + 1 when none is.
func SeqAtTime(ctx context.Context, js jetstream.JetStream, stream string, t time.Time) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return info.State.LastSeq + 1, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t})
	if err != nil {
		return 0, fmt.Errorf("stream %s: consumer at %s: %w", stream, t.Format(time.RFC3339), err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	if ci.NumPending == 0 {
		return info.State.LastSeq + 1, nil
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		return 0, fmt.Errorf("stream %s: first message at %s: %w", stream, t.Format(time.RFC3339), err)
	}
	md, err := msg.Metadata()
	if err != nil {
		return 0, err
	}
	return md.Sequence.Stream, nil
}
