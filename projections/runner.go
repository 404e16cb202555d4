package projections

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections/migrate"
)

//go:embed migrations/*.sql
var runtimeMigrations embed.FS

// Migrate creates or upgrades the runtime's own tables (schema "projections").
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrate.Apply(ctx, pool, "runtime", "projections", runtimeMigrations, "migrations")
}

// Config tunes a Runner. Zero values take the defaults.
type Config struct {
	// Group names the lease group: every instance running the same set of targets
	// shares one group. Default: the targets joined with "+".
	Group string
	// Instance identifies this process in the group. Default: host-pid-random.
	Instance string
	// BatchSize is the most events folded in one transaction (default 1000).
	BatchSize int
	// Linger is how long to wait for more events after the first of a batch, so that
	// a quiet log is not committed one event at a time (default 5ms).
	Linger time.Duration
	// LeaseTTL is how long a lease outlives its owner's last heartbeat (default 5s);
	// Heartbeat is the renewal interval (default LeaseTTL/5).
	LeaseTTL  time.Duration
	Heartbeat time.Duration
	// MaxAttempts: a batch failing with a non-transient error this many times is
	// applied event by event, parking the events that fail (default 3).
	MaxAttempts int
	// RetryMin and RetryMax bound the backoff between retries (100ms, 10s).
	RetryMin, RetryMax time.Duration
	// LagInterval is how often lag is measured and recorded (default 5s).
	LagInterval time.Duration
	// DrainTimeout bounds the final commit on shutdown (default 10s).
	DrainTimeout time.Duration
	// DurableCommit waits for each batch's commit to reach disk (synchronous_commit
	// on). Off by default: a lost commit loses its checkpoint with it and is folded
	// again from the log, so only the signals' outbox rows could be delayed (ADR 20).
	DurableCommit bool
	// NoSignals: the runner's batches never emit derived signals (Batch.Emitting is
	// always false). Rebuilds and replays set it.
	NoSignals bool
	// Workers is how many consumers this instance runs over its partitions, each on a
	// disjoint subset with its own transactions, so that decoding, folding and the
	// database work of several batches overlap (default 2).
	Workers int
	// GatherFrom: a catch-up read (CatchUp, a rebuild or replay) at least this many
	// events behind the log gathers a window of it and folds it partition by
	// partition, so that a customer's events of the window are folded and written once
	// (see gather.go, ADR 35). Default 50,000; negative: never.
	GatherFrom int
	// GatherBytes bounds a window's messages in memory. Default: a quarter of the
	// process's memory budget (GOMEMLIMIT, at most half the machine's or cgroup's
	// memory), at least 256 MiB and at most 8 GiB; two windows can be in memory at
	// once, one folded while the next is read.
	GatherBytes int64
	// GatherBatch is the most events of a partition folded in one transaction of a
	// window (default 50,000).
	GatherBatch int
}

func (c *Config) defaults(targets []string) {
	if c.Group == "" {
		c.Group = strings.Join(targets, "+")
	}
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.IntN(0x10000))
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 5 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = c.LeaseTTL / 5
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.LagInterval <= 0 {
		c.LagInterval = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.GatherFrom == 0 {
		c.GatherFrom = 50_000
	}
	if c.GatherBytes <= 0 {
		c.GatherBytes = DefaultGatherBytes()
	}
	if c.GatherBatch <= 0 {
		c.GatherBatch = 50_000
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Workers > 64 {
		errs = append(errs, fmt.Errorf("workers %d: at most 64", c.Workers))
	}
	if c.BatchSize > 100_000 {
		errs = append(errs, fmt.Errorf("batch size %d: at most 100000", c.BatchSize))
	}
	if c.GatherBatch > 100_000 {
		errs = append(errs, fmt.Errorf("gather batch %d: at most 100000", c.GatherBatch))
	}
	if c.Heartbeat >= c.LeaseTTL {
		errs = append(errs, fmt.Errorf("heartbeat %s must be shorter than the lease TTL %s", c.Heartbeat, c.LeaseTTL))
	}
	if c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("retry min %s above retry max %s", c.RetryMin, c.RetryMax))
	}
	return errors.Join(errs...)
}

// Deps are a Runner's collaborators.
type Deps struct {
	Pool     *pgxpool.Pool
	JS       jetstream.JetStream
	Layout   events.Layout
	Catalog  *events.Catalog
	History  History // may be nil: projections then cannot recompute a customer
	Log      *slog.Logger
	Registry prometheus.Registerer
}

// Runner folds the log into a group of projection targets. See the package
// documentation for its guarantees.
type Runner struct {
	cfg     Config
	deps    Deps
	projs   []Projection
	targets []string
	decoder *Decoder
	leaser  *leaser
	m       *metrics
	log     *slog.Logger
}

// NewRunner returns a runner of the given projections. They share one consumer and
// one transaction per batch; each keeps its own checkpoints.
func NewRunner(cfg Config, deps Deps, projs ...Projection) (*Runner, error) {
	if len(projs) == 0 {
		return nil, errors.New("projections: runner needs at least one projection")
	}
	if deps.Pool == nil || deps.JS == nil || deps.Catalog == nil {
		return nil, errors.New("projections: runner needs a pool, a JetStream context and a catalog")
	}
	if err := deps.Layout.Validate(); err != nil {
		return nil, err
	}
	var targets []string
	for _, p := range projs {
		if slices.Contains(targets, p.Target()) {
			return nil, fmt.Errorf("projections: target %s listed twice", p.Target())
		}
		targets = append(targets, p.Target())
	}
	cfg.defaults(targets)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("projections: %w", err)
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{
		cfg: cfg, deps: deps, projs: projs, targets: targets,
		decoder: NewDecoder(deps.Layout, deps.Catalog),
		m:       newMetrics(deps.Registry),
		log:     deps.Log.With("group", cfg.Group, "instance", cfg.Instance),
	}
	r.leaser = &leaser{pool: deps.Pool, group: cfg.Group, instance: cfg.Instance, partitions: deps.Layout.Partitions, ttl: cfg.LeaseTTL}
	return r, nil
}

// Instance is this runner's instance id.
func (r *Runner) Instance() string { return r.cfg.Instance }

// Prepare applies the runtime's and the projections' migrations and creates the
// checkpoint and lease rows. Run calls it; it is exported for tools that need the
// tables without running.
func (r *Runner) Prepare(ctx context.Context) error {
	if err := Migrate(ctx, r.deps.Pool); err != nil {
		return err
	}
	streams := make(map[int]string, r.deps.Layout.Partitions)
	for p := 0; p < r.deps.Layout.Partitions; p++ {
		streams[p] = r.deps.Layout.Stream(p)
	}
	for _, p := range r.projs {
		if err := p.Migrate(ctx, r.deps.Pool); err != nil {
			return fmt.Errorf("migrate %s: %w", p.Target(), err)
		}
		if err := ensureCheckpoints(ctx, r.deps.Pool, p.Target(), streams); err != nil {
			return err
		}
	}
	return r.leaser.ensure(ctx)
}

// Run folds the log until ctx is cancelled, then finishes the batch in hand, gives
// its leases back and returns nil. It retries transient failures (database or NATS
// unavailable) with backoff for as long as it runs.
func (r *Runner) Run(ctx context.Context) error {
	for {
		err := r.Prepare(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("runner not ready, retrying", "error", err)
		if !sleep(ctx, r.cfg.RetryMax) {
			return nil
		}
	}
	r.log.Info("runner started", "targets", r.targets)
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.DrainTimeout)
		defer cancel()
		if err := r.leaser.release(ctx); err != nil {
			r.log.Warn("could not give leases back; they lapse on their own", "error", err)
		}
		r.m.owned.WithLabelValues(r.cfg.Group, r.cfg.Instance).Set(0)
		r.log.Info("runner stopped")
	}()

	ownedCh := make(chan []int, 1)
	go r.heartbeat(ctx, ownedCh)
	var owned []int
	var running *consumption
	for {
		select {
		case <-ctx.Done():
			running.stop()
			return nil
		case next := <-ownedCh:
			if running != nil && slices.Equal(next, owned) {
				continue
			}
			running.stop()
			running, owned = nil, next
			if len(owned) > 0 {
				running = r.startConsuming(ctx, owned)
			}
		}
	}
}

// consumption is the consumers of one set of owned partitions.
type consumption struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *Runner) startConsuming(ctx context.Context, parts []int) *consumption {
	ctx, cancel := context.WithCancel(ctx)
	c := &consumption{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		r.consumeAll(ctx, parts)
	}()
	return c
}

// stop cancels the consumers and waits for their last batch to commit.
func (c *consumption) stop() {
	if c == nil {
		return
	}
	c.cancel()
	<-c.done
}

// heartbeat renews leases every Heartbeat and publishes the owned set when it changes.
func (r *Runner) heartbeat(ctx context.Context, out chan []int) {
	var last []int
	first := true
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	lag := time.NewTicker(r.cfg.LagInterval)
	defer lag.Stop()
	for {
		owned, err := r.leaser.tick(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("lease heartbeat failed; keeping current partitions", "error", err)
		} else if first || !slices.Equal(owned, last) {
			first = false
			r.log.Info("partitions assigned", "count", len(owned), "partitions", FormatPartitions(owned))
			r.m.owned.WithLabelValues(r.cfg.Group, r.cfg.Instance).Set(float64(len(owned)))
			last = owned
			select {
			case <-out:
			default:
			}
			out <- owned
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-lag.C:
			if err := r.measureLag(ctx, last); err != nil && ctx.Err() == nil {
				r.log.Warn("measuring lag failed", "error", err)
			}
		}
	}
}

// consumeAll reads each stream holding owned partitions.
func (r *Runner) consumeAll(ctx context.Context, owned []int) {
	shares := r.shares(owned)
	done := make(chan struct{}, len(shares))
	for _, sh := range shares {
		go func() {
			defer func() { done <- struct{}{} }()
			r.consumeStream(ctx, sh.stream, sh.parts)
		}()
	}
	for range shares {
		<-done
	}
}

// share is one worker's partitions of one stream.
type share struct {
	stream string
	parts  []int
}

// shares splits partitions by stream: one reader per stream, which fans out to the
// workers.
func (r *Runner) shares(parts []int) []share {
	byStream := map[string][]int{}
	var order []string
	for _, p := range parts {
		s := r.deps.Layout.Stream(p)
		if _, ok := byStream[s]; !ok {
			order = append(order, s)
		}
		byStream[s] = append(byStream[s], p)
	}
	var out []share
	for _, s := range order {
		out = append(out, share{stream: s, parts: byStream[s]})
	}
	return out
}

// consumeStream reads the stream for the given partitions from their checkpoints and
// commits batch after batch. Any failure it cannot handle in place restarts it from the
// checkpoints after a backoff.
func (r *Runner) consumeStream(ctx context.Context, stream string, parts []int) {
	backoff := r.cfg.RetryMin
	for ctx.Err() == nil {
		err := r.session(ctx, stream, parts)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errFenced) {
			r.m.retries.WithLabelValues(r.cfg.Group, "fenced").Inc()
			r.log.Info("checkpoint moved under us; reloading", "stream", stream, "error", err)
			backoff = r.cfg.RetryMin
			continue
		}
		r.m.retries.WithLabelValues(r.cfg.Group, "transient").Inc()
		r.log.Warn("consumer session failed; resuming from checkpoints", "stream", stream, "error", err, "retry_in", backoff)
		if !sleep(ctx, jitter(backoff)) {
			return
		}
		backoff = min(backoff*2, r.cfg.RetryMax)
	}
}

// state is what a session knows of each target's checkpoints.
type state map[string]map[int]Checkpoint

func (r *Runner) session(ctx context.Context, stream string, parts []int) error {
	return r.read(ctx, stream, parts, readOptions{})
}

// readOptions make a read stop: catch-up mode reads until nothing is pending.
type readOptions struct {
	catchUp  bool
	from     uint64 // first sequence to read; 0: from the checkpoints
	to       uint64 // last sequence to read (catch-up only); 0: to the end
	progress func(seq, pending uint64, n int)
}

func (r *Runner) read(ctx context.Context, stream string, parts []int, opts readOptions) error {
	st := state{}
	start := uint64(0)
	first := true
	for _, t := range r.targets {
		cps, err := LoadCheckpoints(ctx, r.deps.Pool, t, parts)
		if err != nil {
			return err
		}
		st[t] = cps
		for _, p := range parts {
			if first || cps[p].Seq < start {
				start, first = cps[p].Seq, false
			}
		}
	}
	if opts.from > 0 {
		start = opts.from - 1
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: time.Minute}
	if start > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start+1
	}
	if !r.streamHoldsExactly(stream, parts) {
		for _, p := range parts {
			cfg.FilterSubjects = append(cfg.FilterSubjects, r.deps.Layout.PartitionFilter(p))
		}
	}
	cons, err := r.deps.JS.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("ordered consumer on %s: %w", stream, err)
	}
	if opts.catchUp {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer info on %s: %w", stream, err)
		}
		if info.NumPending == 0 {
			return nil
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * r.cfg.BatchSize * r.cfg.Workers))
	if err != nil {
		return fmt.Errorf("consume %s: %w", stream, err)
	}
	defer it.Stop()
	r.log.Debug("consuming", "stream", stream, "partitions", FormatPartitions(parts), "from_seq", start+1, "catch_up", opts.catchUp)

	// One reader fetches the stream (one consumer: the server filters once) and hands
	// each worker the messages of its partitions; each worker decodes, folds and commits
	// its own batches with its own checkpoints, so several batches are in flight at once.
	workers := min(r.cfg.Workers, len(parts))
	workerOf := make(map[int]int, len(parts))
	states := make([]state, workers)
	for i := range states {
		states[i] = state{}
		for _, t := range r.targets {
			states[i][t] = map[int]Checkpoint{}
		}
	}
	for i, p := range parts {
		w := i % workers
		workerOf[p] = w
		for _, t := range r.targets {
			states[w][t][p] = st[t][p]
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inboxes := make([]chan handoff, workers)
	errs := make(chan error, workers+1)
	done := make(chan struct{}, workers)
	for w := range inboxes {
		inboxes[w] = make(chan handoff) // handed over only to a waiting worker: while it folds, fanOut coalesces
		go func() {
			defer func() { done <- struct{}{} }()
			for h := range inboxes[w] {
				d := r.decodeBatch(h.msgs)
				if d.err != nil {
					errs <- d.err
					cancel()
					return
				}
				err := r.process(ctx, states[w], d)
				if err != nil {
					errs <- err
					cancel()
					return
				}
				if opts.progress != nil {
					seq, pending := d.seqs[len(d.seqs)-1], d.pending
					if h.window != nil {
						seq, pending = h.window.applied(len(d.msgs))
					}
					opts.progress(seq, pending, len(d.msgs))
				}
			}
		}()
	}
	readErr := r.fanOut(wctx, it, stream, opts, workerOf, inboxes)
	for _, in := range inboxes {
		close(in)
	}
	for range inboxes {
		<-done
	}
	select {
	case err := <-errs:
		return err
	default:
	}
	if readErr != nil && ctx.Err() == nil {
		return readErr
	}
	return nil
}

// fanOut reads batches (the first message, then up to BatchSize × workers more within
// Linger) and sends each worker the messages of its partitions, in stream order. A
// worker still busy with its previous batch does not make the reader wait: what it
// would have been sent waits in its pending batch, and what the reader reads next is
// added to it, up to BatchSize, so that under load each commit carries more events
// instead of the batches queueing up small. In catch-up mode it returns once nothing
// more is pending and everything read has been handed over.
func (r *Runner) fanOut(ctx context.Context, it jetstream.MessagesContext, stream string, opts readOptions,
	workerOf map[int]int, inboxes []chan handoff) (err error) {
	catchUp := opts.catchUp
	limit := r.cfg.BatchSize * len(inboxes)
	pending := make([][]jetstream.Msg, len(inboxes))
	waiting := 0 // messages in pending
	// feeding, while not nil, waits until the last gathered window is all handed over:
	// its feeders run while the reader reads on.
	var feeding func() error
	fed := func() error {
		if feeding == nil {
			return nil
		}
		err := feeding()
		feeding = nil
		return err
	}
	defer func() {
		if ferr := fed(); err == nil {
			err = ferr
		}
	}()
	// hand sends each worker its pending batch: at once if it is free, else only if
	// block or the batch is full (then waiting for the worker).
	hand := func(block bool) error {
		for w, msgs := range pending {
			if len(msgs) == 0 {
				continue
			}
			if block || len(msgs) >= r.cfg.BatchSize {
				select {
				case inboxes[w] <- handoff{msgs: msgs}:
				case <-ctx.Done():
					return ctx.Err()
				}
			} else {
				select {
				case inboxes[w] <- handoff{msgs: msgs}:
				default:
					continue
				}
			}
			waiting -= len(msgs)
			pending[w] = nil
		}
		return nil
	}
	for {
		var m jetstream.Msg
		var err error
		if waiting > 0 {
			// Something waits for a busy worker: look for more, but come back to it.
			m, err = it.Next(jetstream.NextMaxWait(r.cfg.Linger))
			if err != nil {
				if errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
					if err := hand(false); err != nil {
						return err
					}
					continue
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("next message from %s: %w", stream, err)
			}
		} else if m, err = it.Next(jetstream.NextContext(ctx)); err != nil {
			return fmt.Errorf("next message from %s: %w", stream, err)
		}
		m = parsed(m)
		if catchUp && r.cfg.GatherFrom > 0 && pendingOf(m) >= uint64(r.cfg.GatherFrom) {
			// Far behind the log: what is waiting goes first (a partition's events stay in
			// order), then a window is gathered and folded partition by partition.
			if err := hand(true); err != nil {
				return err
			}
			done, wait, err := r.gather(ctx, it, stream, opts, m, workerOf, inboxes, fed)
			feeding = wait
			if err != nil || done {
				return err
			}
			continue
		}
		if err := fed(); err != nil { // a window's events go before what is read after it
			return err
		}
		n, behind := 0, uint64(0)
		add := func(m jetstream.Msg) {
			m = parsed(m)
			if md, err := m.Metadata(); err == nil && opts.to > 0 && md.Sequence.Stream > opts.to {
				behind = 0 // past the end of the range: caught up
				return
			}
			n++
			behind = pendingOf(m)
			w := 0
			if p, _, err := r.deps.Layout.ParseSubject(m.Subject()); err == nil {
				w = workerOf[p]
			}
			pending[w] = append(pending[w], m)
			waiting++
		}
		add(m)
		deadline := time.Now().Add(r.cfg.Linger)
		for n < limit && !(catchUp && behind == 0) {
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			m, err := it.Next(jetstream.NextMaxWait(wait))
			if err != nil {
				if errors.Is(err, nats.ErrTimeout) || ctx.Err() != nil {
					break
				}
				return fmt.Errorf("next message from %s: %w", stream, err)
			}
			add(m)
		}
		done := catchUp && behind == 0
		if err := hand(done); err != nil {
			return err
		}
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// decoded is a batch read from the log and decoded, ready to fold.
type decoded struct {
	msgs    []jetstream.Msg
	envs    []*Envelope    // nil where decoding failed
	bad     []*DecodeError // set where decoding failed
	seqs    []uint64
	pending uint64 // matching messages not yet delivered after the last one
	err     error
}

// decodeBatch decodes and validates a batch of messages.
func (r *Runner) decodeBatch(msgs []jetstream.Msg) *decoded {
	began := time.Now()
	d := &decoded{msgs: msgs, envs: make([]*Envelope, len(msgs)), bad: make([]*DecodeError, len(msgs)), seqs: make([]uint64, len(msgs))}
	for i, m := range msgs {
		env, seq, err := r.decoder.DecodeMsg(m)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				d.err = err // no metadata: not a JetStream message at all
				return d
			}
			d.bad[i] = de
		}
		d.envs[i], d.seqs[i] = env, seq
	}
	d.pending = pendingOf(msgs[len(msgs)-1])
	r.stage("decode", began)
	return d
}

func pendingOf(m jetstream.Msg) uint64 {
	md, err := m.Metadata()
	if err != nil {
		return 1
	}
	return md.NumPending
}

// CatchUp folds every partition of the layout from its checkpoints until nothing is
// pending, then returns. It takes no leases: use it where this process is the only
// writer of the targets (tests, benchmarks, building a new version); the checkpoint
// fence still refuses a conflicting commit. progress, if not nil, is called after each
// batch with the last sequence read and how many matching messages remain.
func (r *Runner) CatchUp(ctx context.Context, progress func(seq, pending uint64, n int)) error {
	if err := r.Prepare(ctx); err != nil {
		return err
	}
	return r.readAll(ctx, readOptions{catchUp: true, progress: progress})
}

// CatchUpTo is CatchUp that stops at stream sequence to (0: the end of the log).
func (r *Runner) CatchUpTo(ctx context.Context, to uint64, progress func(seq, pending uint64, n int)) error {
	if err := r.Prepare(ctx); err != nil {
		return err
	}
	return r.readAll(ctx, readOptions{catchUp: true, to: to, progress: progress})
}

// readAll reads every partition with the workers concurrently until each is caught up.
func (r *Runner) readAll(ctx context.Context, opts readOptions) error {
	var all []int
	for p := 0; p < r.deps.Layout.Partitions; p++ {
		all = append(all, p)
	}
	shares := r.shares(all)
	errs := make(chan error, len(shares))
	for _, sh := range shares {
		go func() { errs <- r.read(ctx, sh.stream, sh.parts, opts) }()
	}
	var first error
	for range shares {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Reread reads the log again from sequence from (1: the beginning) to its end, as a
// redelivery would: events at or below a target's checkpoint are skipped. It exists
// for tests that show that applying an event twice equals applying it once.
func (r *Runner) Reread(ctx context.Context, from uint64) error {
	return r.readAll(ctx, readOptions{catchUp: true, from: from})
}

func (r *Runner) streamHoldsExactly(stream string, parts []int) bool {
	for _, s := range r.deps.Layout.Streams {
		if s.Name == stream {
			return len(parts) == s.Last-s.First+1
		}
	}
	return false
}

// work is one target's share of a batch.
type work struct {
	proj   Projection
	from   map[int]Checkpoint // checkpoints before the batch (partitions touched)
	to     map[int]Checkpoint // after
	events []*Envelope
	parked []parkedEvent
	counts struct{ applied, skipped int }
}

// process decodes a batch and commits it for every target, retrying as needed.
// runCtx is the runner's context: while it lives, transient failures are retried.
// Each attempt gets DrainTimeout of its own, detached from runCtx so that a batch in
// hand at shutdown still commits (the drain); a deadline shared by every attempt
// would leave a batch that once retried past it failing forever.
func (r *Runner) process(runCtx context.Context, st state, d *decoded) error {
	began := time.Now()
	msgs, envs, bad, seqs := d.msgs, d.envs, d.bad, d.seqs
	works := make([]*work, 0, len(r.projs))
	for _, p := range r.projs {
		w := &work{proj: p, from: map[int]Checkpoint{}, to: map[int]Checkpoint{}}
		cps := st[p.Target()]
		for i := range msgs {
			part := -1
			var stored time.Time
			var evTime time.Time
			switch {
			case envs[i] != nil:
				part, stored, evTime = envs[i].Partition, envs[i].StoredAt, envs[i].Time
			case bad[i] != nil:
				part = bad[i].Partition
				if md, err := msgs[i].Metadata(); err == nil {
					stored = md.Timestamp
				}
			}
			if part < 0 {
				continue // not a partition subject of this layout: ignore
			}
			cp, ok := w.to[part]
			if !ok {
				cp = cps[part]
				w.from[part] = cp
			}
			if seqs[i] <= cp.Seq {
				w.counts.skipped++
				continue
			}
			cp.Seq, cp.Applied, cp.LastStoredAt = seqs[i], cp.Applied+1, stored
			if envs[i] != nil {
				if evTime.After(cp.PartitionTime) {
					cp.PartitionTime = evTime
				}
				w.events = append(w.events, envs[i])
			} else {
				w.parked = append(w.parked, parkDecodeError(bad[i]))
			}
			w.to[part] = cp
		}
		if len(w.to) > 0 {
			works = append(works, w)
		} else if w.counts.skipped > 0 {
			r.m.events.WithLabelValues(p.Target(), "skipped").Add(float64(w.counts.skipped))
		}
	}
	if len(works) == 0 {
		return nil
	}
	attempt := 0
	isolate := false
	backoff := r.cfg.RetryMin
	for {
		actx, cancel := context.WithTimeout(context.WithoutCancel(runCtx), r.cfg.DrainTimeout)
		err := r.commit(actx, works, isolate, attempt+1)
		cancel()
		if err == nil {
			break
		}
		var pe *PoisonError
		switch {
		case errors.Is(err, errFenced):
			return err
		case errors.As(err, &pe):
			r.parkPoison(works, pe, poisonTarget(err), attempt+1)
			continue
		}
		if runCtx.Err() != nil {
			return fmt.Errorf("batch abandoned at shutdown (it will be re-read from the checkpoint): %w", err)
		}
		if !isTransient(err) {
			attempt++
			if attempt >= r.cfg.MaxAttempts && !isolate {
				r.m.retries.WithLabelValues(r.cfg.Group, "isolated").Inc()
				r.log.Warn("batch keeps failing; applying it event by event to park the culprits", "error", err, "attempts", attempt)
				isolate = true
				continue
			}
		}
		r.m.retries.WithLabelValues(r.cfg.Group, "transient").Inc()
		r.log.Warn("batch failed; retrying", "error", err, "attempt", attempt, "retry_in", backoff)
		if !sleep(runCtx, jitter(backoff)) {
			return fmt.Errorf("batch abandoned at shutdown (it will be re-read from the checkpoint): %w", err)
		}
		backoff = min(backoff*2, r.cfg.RetryMax)
	}
	for _, w := range works {
		st[w.proj.Target()] = mergeCheckpoints(st[w.proj.Target()], w.to)
		r.m.events.WithLabelValues(w.proj.Target(), "applied").Add(float64(len(w.events)))
		r.m.events.WithLabelValues(w.proj.Target(), "skipped").Add(float64(w.counts.skipped))
		if len(w.parked) > 0 {
			r.m.events.WithLabelValues(w.proj.Target(), "parked").Add(float64(len(w.parked)))
			for _, p := range w.parked {
				r.log.Warn("event parked", "target", w.proj.Target(), "partition", p.partition, "stream_seq", p.seq,
					"event_id", p.id, "event_type", p.typ, "error", p.err)
			}
		}
	}
	r.m.batches.WithLabelValues(r.cfg.Group).Inc()
	r.m.batchSize.WithLabelValues(r.cfg.Group).Observe(float64(len(msgs)))
	r.m.batchDur.WithLabelValues(r.cfg.Group).Observe(time.Since(began).Seconds())
	return nil
}

// parkPoison moves the events named by a PoisonError out of their target's batch
// (every target's when target is ""): the other targets of the group still apply them.
func (r *Runner) parkPoison(works []*work, pe *PoisonError, target string, attempts int) {
	for _, w := range works {
		if target != "" && w.proj.Target() != target {
			continue
		}
		var keep []*Envelope
		for _, e := range w.events {
			if slices.Contains(pe.Events, e) {
				w.parked = append(w.parked, parkEnvelope(e, pe.Err, attempts))
				continue
			}
			keep = append(keep, e)
		}
		w.events = keep
	}
}

func mergeCheckpoints(into, from map[int]Checkpoint) map[int]Checkpoint {
	for p, c := range from {
		into[p] = c
	}
	return into
}

// commit writes one batch for every target in one transaction: fence the
// checkpoints, fold, park, commit. In isolate mode each event is applied in its own
// savepoint and the ones that fail are parked.
func (r *Runner) commit(ctx context.Context, works []*work, isolate bool, attempts int) error {
	tx, err := r.deps.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	t0 := time.Now()
	if !r.cfg.DurableCommit {
		// A read model is derived from the log and its checkpoint commits with it: a
		// commit lost in a crash loses its checkpoint too, and the batch is folded
		// again from the log. Waiting for the WAL flush buys nothing (ADR 20).
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			return err
		}
	}
	for _, w := range works {
		if err := advance(ctx, tx, w.proj.Target(), w.from, w.to); err != nil {
			return err
		}
	}
	r.stage("fence", t0)
	for _, w := range works {
		if len(w.events) == 0 {
			continue
		}
		target := w.proj.Target()
		b := &Batch{Events: w.events, partitionTime: partitionTimes(w.from), history: r.deps.History, tx: tx,
			stage: func(name string, start time.Time) { r.stage(target+"/"+name, start) }, emission: r.emission(w.proj)}
		if !isolate {
			t := time.Now()
			if err := w.proj.Apply(ctx, tx, b); err != nil {
				var pe *PoisonError
				if errors.As(err, &pe) {
					return &targetPoison{target: w.proj.Target(), pe: pe}
				}
				return fmt.Errorf("apply %s: %w", w.proj.Target(), err)
			}
			r.stage("apply:"+w.proj.Target(), t)
			continue
		}
		var keep []*Envelope
		times := partitionTimes(w.from)
		for _, e := range w.events {
			sp, err := tx.Begin(ctx)
			if err != nil {
				return err
			}
			one := &Batch{Events: []*Envelope{e}, partitionTime: times, history: r.deps.History, tx: sp, emission: r.emission(w.proj)}
			if err := w.proj.Apply(ctx, sp, one); err != nil {
				_ = sp.Rollback(ctx)
				if isTransient(err) {
					return err
				}
				w.parked = append(w.parked, parkEnvelope(e, err, attempts))
				continue
			}
			if err := sp.Commit(ctx); err != nil {
				return err
			}
			if e.Time.After(times[e.Partition]) {
				times[e.Partition] = e.Time
			}
			keep = append(keep, e)
		}
		w.events = keep
	}
	t1 := time.Now()
	for _, w := range works {
		if err := park(ctx, tx, w.proj.Target(), w.parked); err != nil {
			return err
		}
	}
	r.stage("park", t1)
	t2 := time.Now()
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	r.stage("commit", t2)
	return nil
}

// stage adds the time since start to a stage's counter.
func (r *Runner) stage(name string, start time.Time) {
	r.m.stages.WithLabelValues(r.cfg.Group, name).Add(time.Since(start).Seconds())
}

func partitionTimes(cps map[int]Checkpoint) map[int]time.Time {
	out := make(map[int]time.Time, len(cps))
	for p, c := range cps {
		out[p] = c.PartitionTime
	}
	return out
}

// isTransient reports errors worth retrying without counting an attempt: the
// database or NATS unavailable, a serialization conflict, the index behind.
func isTransient(err error) bool {
	if errors.Is(err, ErrIndexBehind) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"),          // insufficient resources
			strings.HasPrefix(pgErr.Code, "57"),          // operator intervention (shutdown)
			pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock
			return true
		}
		return false
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	// Network errors and closed connections surface as plain errors from pgx.
	msg := err.Error()
	return strings.Contains(msg, "connection") || strings.Contains(msg, "conn closed") || strings.Contains(msg, "EOF")
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)/2+1))
}

// FormatPartitions renders a set of partitions as ranges: "0-15,32".
func FormatPartitions(ps []int) string {
	ps = slices.Clone(ps)
	slices.Sort(ps)
	var b strings.Builder
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(ps[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(ps[j]))
		}
		i = j + 1
	}
	return b.String()
}
