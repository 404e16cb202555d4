package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/projections"
	"github.com/touchstream/touchstream/projections/churn"
	"github.com/touchstream/touchstream/projections/churn/features"
	"github.com/touchstream/touchstream/projections/churn/model"
	"github.com/touchstream/touchstream/projections/timeline"
	"github.com/touchstream/touchstream/projections/valuetier"
	"github.com/touchstream/touchstream/services/internal/simulate"
)

// The churn suite's settings.
const (
	churnTarget     = "churn_v1"
	churnTimeline   = "timeline_v91" // beside the projector data set's timeline_v1
	churnRows       = 1_000_000      // snapshot rows the training-time runs fit
	churnSample     = 200_000        // events the in-memory fold (the compute limit) replays
	DefaultChurnPop = 100_000
	// DefaultChurnDays covers January to mid-March: the January snapshots are
	// labelled (their 7-day horizon and 30-day window end before the log does).
	DefaultChurnDays = 75
)

var churnStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))

// churn measures the churn read model on the simulator's population, in the bench's
// log emptied first (it runs last: the other suites' data set is gone after it) and
// its own schemas of the bench database: months of history for
// Options.ChurnCustomers customers published straight to the log with daily clock
// ticks, folded by the timeline index and the churn projection; both models trained
// end to end from the log (snapshots read and labelled, fitted, stored); and both
// fitted on one million snapshot rows. Beside them, the compute limit: the same
// events folded and scored in memory, no I/O.
func (b *bench) churn(ctx context.Context) error {
	if b.o.Simulator == nil || b.d.Churn == nil {
		return fmt.Errorf("churn suite: Options.Simulator and Deps.Churn are required")
	}
	ce := b.e
	b.ds = nil // the log is emptied: the projector's data set goes with it
	if err := ce.resetStream(ctx); err != nil {
		return err
	}
	nc, err := ce.connect("touchstream-bench-churn")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	pool, err := ce.newPool(ctx, 8)
	if err != nil {
		return err
	}
	defer pool.Close()
	load := loadAverage()

	// The history, straight to the log.
	end := churnStart.AddDate(0, 0, b.o.ChurnDays)
	g, err := simulate.NewGenerator(simulate.GeneratorConfig{Params: b.o.Simulator, Channels: b.o.simChannels(), Seed: b.o.Seed,
		Customers: b.o.ChurnCustomers, Start: churnStart, End: end})
	if err != nil {
		return err
	}
	pub, err := events.NewPublisher(ctx, nc, events.WithLayout(ce.layout), events.WithKeys(events.NewKeyClient(nc, events.KeyClientConfig{})),
		events.WithValidation(false), events.WithLimits(events.Limits{MaxSize: 64 << 10}))
	if err != nil {
		return err
	}
	defer pub.Close()
	var sample []*events.Event
	var published atomic.Int64
	stop := every(5*time.Second, func() { b.log.Info("churn history", "published", published.Load()) })
	pubRun, err := timed(0, func() error {
		n, err := simulate.Log(ctx, g, churnStart, end, ce.layout.Partitions, 2000, func(ctx context.Context, evs []*events.Event) error {
			for i, r := range pub.PublishBatch(ctx, evs) {
				if r.Err != nil {
					return fmt.Errorf("publish %s: %w", evs[i].Type, r.Err)
				}
			}
			if len(sample) < churnSample {
				sample = append(sample, evs...)
			}
			published.Add(int64(len(evs)))
			return nil
		})
		published.Store(int64(n))
		return err
	})
	stop()
	if err != nil {
		return fmt.Errorf("churn history: %w", err)
	}
	pubRun.n = int(published.Load())

	// The fold: the timeline index and the churn projection, as the projector runs them.
	cp, err := b.d.Churn(churnTarget)
	if err != nil {
		return err
	}
	r, err := projections.NewRunner(projections.Config{Group: "bench-churn", BatchSize: projectorBatch, Linger: projectorLinger},
		projections.Deps{Pool: pool, JS: js, Layout: ce.layout, Catalog: ce.cat, Log: b.svcLog.With("service", "churn"), Registry: prometheus.NewRegistry(),
			History: &projections.LogHistory{Index: &timeline.Index{Target: churnTimeline, Layout: ce.layout}, JS: js,
				Decoder: projections.NewDecoder(ce.layout, ce.cat)}}, timeline.New(churnTimeline), cp)
	if err != nil {
		return err
	}
	if err := r.Prepare(ctx); err != nil {
		return err
	}
	var applied atomic.Int64
	stop = every(5*time.Second, func() { b.log.Info("churn catch-up", "events", applied.Load(), "of", pubRun.n) })
	var fold measured
	err = b.profile("churn-fold", func() error {
		var err error
		fold, err = timed(pubRun.n, func() error {
			return r.CatchUp(ctx, func(_, _ uint64, n int) { applied.Add(int64(n)) })
		})
		return err
	})
	stop()
	if err != nil {
		return fmt.Errorf("churn catch-up: %w", err)
	}

	// The compute limit: the sample folded and scored in memory, per customer.
	mem, err := foldInMemory(sample, b.o.ChurnRules)
	if err != nil {
		return err
	}

	// Training end to end from the log: the January snapshots.
	var customers, alerts, snapshots int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+churnTarget+`.customers), (SELECT count(*) FROM `+churnTarget+`.alerts), (SELECT count(*) FROM `+churnTarget+`.snapshots)`).
		Scan(&customers, &alerts, &snapshots); err != nil {
		return err
	}
	month := valuetier.Month(churnStart.Year()*12 + int(churnStart.Month()) - 1)
	var ex *churn.Examples
	loadRun, err := timed(0, func() error {
		var err error
		ex, err = churn.LoadExamples(ctx, pool, churnTarget, churn.Period{From: month, To: month}, churn.Labels{})
		return err
	})
	if err != nil {
		return err
	}
	loadRun.n = ex.Rows()
	type fit struct {
		name string
		run  measured
		m    *model.Model
	}
	var fits []fit
	train := func(name string, d model.Dataset) error {
		for _, kind := range []model.Kind{model.KindLogistic, model.KindGBT} {
			var m *model.Model
			run, err := timed(d.Rows(), func() error {
				var err error
				if kind == model.KindLogistic {
					m, err = model.TrainLogistic(d, model.LogisticOptions{})
				} else {
					m, err = model.TrainGBT(d, model.GBTOptions{Seed: b.o.Seed})
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("churn train %s on %s: %w", kind, name, err)
			}
			fits = append(fits, fit{string(kind) + " on " + name, run, m})
		}
		return nil
	}
	if err := ex.Validate(); err != nil {
		return fmt.Errorf("churn: the January snapshots cannot train (%w): give the suite more customers", err)
	}
	if err := train("the log's snapshots", ex.Dataset); err != nil {
		return err
	}
	var saveRun measured
	if saveRun, err = timed(len(fits), func() error {
		for _, f := range fits {
			if _, err := churn.SaveModel(ctx, pool, f.m, map[string]string{"bench": "churn"}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := train("1,000,000 rows", tile(ex.Dataset, churnRows, b.o.Seed)); err != nil {
		return err
	}

	t := newTable("churn: the simulator's population folded from the log, both models trained from it, and fitted on one million snapshot rows",
		"measure", "rows or events", "seconds", "per second", "cpu self/machine", "beside")
	t.note("%s", b.inputs("simulator parameters %s, %s customers from %s for %d days with a clock tick per partition each midnight: %s events; batches of %d",
		b.o.Simulator.Name, count(b.o.ChurnCustomers), churnStart.Format("2006-01-02"), b.o.ChurnDays, count(pubRun.n), projectorBatch))
	t.note("load average at the start of the suite %s; read model after the fold: %s customers, %s alerts, %s monthly snapshots", load, count(customers), count(alerts), count(snapshots))
	t.note("the fold writes the timeline index (which recomputation reads) and the churn read model in one transaction per batch; each event is scored after it is applied (the same log, the same scores, whatever the batches)")
	t.note("training from the log: January's snapshots labelled by the terminations in the log (7-day horizon, 30-day window): %s rows, %s churners, %s left out",
		count(ex.Rows()), count(ex.Positives()), count(ex.TooClose+ex.Unknown))
	t.row("history published (SDK, validation off)", count(pubRun.n), seconds(pubRun.elapsed), perSecond(pubRun.rate()), pubRun.cpu.String(), "")
	t.row("churn fold: timeline index + churn, PostgreSQL", count(fold.n), seconds(fold.elapsed), perSecond(fold.rate()), fold.cpu.String(),
		"in-memory fold "+perSecond(mem.rate())+"/s ("+ratio(fold.rate(), mem.rate())+")")
	t.row("in-memory fold + score of the first events (compute limit, one core)", count(mem.n), seconds(mem.elapsed), perSecond(mem.rate()), mem.cpu.String(), "")
	t.row("snapshots read and labelled from the read model", count(loadRun.n), seconds(loadRun.elapsed), perSecond(loadRun.rate()), loadRun.cpu.String(), "")
	for _, f := range fits {
		beside := ""
		if f.m.Training.Train.N > 0 {
			beside = fmt.Sprintf("train AUC %.3f, lift %.2f", f.m.Training.Train.AUC, f.m.Training.Train.TopDecileLift)
		}
		t.row("fit "+f.name, count(f.run.n), seconds(f.run.elapsed), perSecond(f.run.rate()), f.run.cpu.String(), beside)
	}
	t.row("models stored (content-hashed)", count(saveRun.n), seconds(saveRun.elapsed), "", "", "")
	for _, target := range []string{churnTarget, churnTimeline} {
		if err := projections.DropTarget(ctx, pool, target); err != nil {
			return err
		}
	}
	return t.write(b.out)
}

// foldInMemory folds and scores events per customer in memory, with no database and
// no log: the compute limit of the churn fold on this machine.
func foldInMemory(evs []*events.Event, rules *features.Scorer) (measured, error) {
	sc := churn.Rules(rules)
	states := map[string]*features.State{}
	return timed(len(evs), func() error {
		for _, e := range evs {
			if e.Subject == "" {
				continue
			}
			payload, err := events.Decode(e)
			if err != nil {
				return fmt.Errorf("in-memory fold: %w", err)
			}
			st := states[e.Subject]
			if st == nil {
				st = &features.State{}
				states[e.Subject] = st
			}
			if err := st.Apply(features.FromEnvelope(e, payload)); err != nil {
				continue
			}
			sc.Score(st.Snapshot(st.Now))
		}
		return nil
	})
}

// tile draws n rows from d, with replacement (seeded), for a training-time run of a
// fixed size.
func tile(d model.Dataset, n int, seed uint64) model.Dataset {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := model.Dataset{Names: d.Names, X: make([][]float64, n), Y: make([]float64, n)}
	for i := range n {
		j := rng.IntN(d.Rows())
		out.X[i], out.Y[i] = d.X[j], d.Y[j]
	}
	return out
}
