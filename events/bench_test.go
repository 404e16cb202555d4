package events_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/events/streams"
	"github.com/touchstream/touchstream/testkit"
)

// The benchmarks mirror the ingest suite of `touchstream bench` (services/internal/bench):
// batches of 1,000 events, recharges for the plain runs, and a mix where half the events
// carry personal fields for the sealed ones. Use them with -cpuprofile to iterate on the
// door; the bench command is the measure that counts.

const benchBatch = 1000

func benchEvent(rng *rand.Rand, customer int, at time.Time, p events.Payload) *events.Event {
	e, err := events.NewEvent(fmt.Sprintf("C%09d", customer), at, p)
	if err != nil {
		panic(err)
	}
	e.Source = "urn:touchstream:channel:crm-import"
	return e
}

func benchDigits(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + rng.IntN(10))
	}
	return string(b)
}

// rechargeBatch is n recharge.completed events over 100,000 customers.
func rechargeBatch(n int) []*events.Event {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]*events.Event, n)
	for i := range out {
		c, at, id := rng.IntN(100_000), testNow.Add(-time.Duration(n-i)*time.Second), "R-"+benchDigits(rng, 12)
		amount := events.CNY(int64(1000 * (1 + rng.IntN(20))))
		out[i] = benchEvent(rng, c, at, events.RechargeCompleted{RechargeID: id, Amount: amount, Credited: amount, Method: "wechat_pay"})
	}
	return out
}

// personalBatch is n events: 30% customer.registered (four personal fields), 20%
// customer.updated (one), the rest recharges.
func personalBatch(n int) []*events.Event {
	rng := rand.New(rand.NewPCG(3, 4))
	out := make([]*events.Event, n)
	for i := range out {
		c, at := rng.IntN(100_000), testNow.Add(-time.Duration(n-i)*time.Second)
		var p events.Payload
		switch r := rng.IntN(10); {
		case r < 3:
			p = events.CustomerRegistered{
				Name: events.Clear("王秀英"), Phone: events.Clear("+8613" + benchDigits(rng, 9)), IDType: "resident_id",
				IDNumber: events.Clear("44030" + benchDigits(rng, 13)), Address: events.Clear("广东省深圳市福田区深南大道" + strconv.Itoa(1+rng.IntN(999)) + "号"),
				CustomerType: "individual", Segment: "consumer", Region: "CN-GD-SZ",
				Plan: events.Plan{ID: "P-58", Name: "畅享58", Kind: "prepaid", MonthlyFee: events.CNY(5800)}, StoreID: "SZ-FT-012",
			}
		case r < 5:
			p = events.CustomerUpdated{Phone: events.Clear("+8613" + benchDigits(rng, 9))}
		default:
			p = events.RechargeCompleted{RechargeID: "R-" + benchDigits(rng, 12), Amount: events.CNY(5000), Credited: events.CNY(5000), Method: "cash"}
		}
		out[i] = benchEvent(rng, c, at, p)
	}
	return out
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchPrepare(b *testing.B, evs []*events.Event, door *events.Door) {
	b.Helper()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		_, errs := door.Prepare(ctx, evs)
		for i, err := range errs {
			if err != nil {
				b.Fatalf("event %d: %v", i, err)
			}
		}
		n += len(evs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkDoorPrepare prepares batches of recharges, validated or not.
func BenchmarkDoorPrepare(b *testing.B) {
	evs := rechargeBatch(benchBatch)
	for _, validate := range []bool{false, true} {
		b.Run(fmt.Sprintf("validate=%v", validate), func(b *testing.B) {
			benchPrepare(b, evs, events.NewDoor(events.DefaultLayout(), testValidator(b, events.DefaultLimits()), nil, validate))
		})
	}
}

// BenchmarkDoorPrepareSealed prepares batches where half the events carry personal
// fields, with an in-memory key source: the cost of sealing without the key service.
func BenchmarkDoorPrepareSealed(b *testing.B) {
	evs := personalBatch(benchBatch)
	for _, validate := range []bool{false, true} {
		b.Run(fmt.Sprintf("validate=%v", validate), func(b *testing.B) {
			benchPrepare(b, evs, events.NewDoor(events.DefaultLayout(), testValidator(b, events.DefaultLimits()), newMemKeys(), validate))
		})
	}
}

// BenchmarkCheckInput validates one recharge.
func BenchmarkCheckInput(b *testing.B) {
	v := testValidator(b, events.DefaultLimits())
	e := rechargeBatch(1)[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.CheckInput(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeal seals one personal value.
func BenchmarkSeal(b *testing.B) {
	keys, _ := newMemKeys().CustomerKeys(context.Background(), []string{testCustomer})
	key := keys[testCustomer]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.Seal(key, "/phone", "+8613800138000"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngest is the ingest suite's first table in small: the same recharges
// published raw (messages prepared beforehand, PublishMsgAsync, waiting on each future
// as the bench's raw path does) and through PublishBatch with validation off and on,
// two producers each, every run on a fresh stream of an embedded server. Each
// iteration is one round of the three; the metrics are, for the best run of each, its
// rate, the cores it kept busy (process CPU time over wall time, the server included)
// and the bytes allocated per event, and the SDK's ratios to raw.
func BenchmarkIngest(b *testing.B) {
	const n = 100_000
	evs := rechargeBatch(n)
	ctx := b.Context()
	ns := testkit.StartNATS(b)
	nc, js := ns.JetStream(b)
	def := streams.Default()
	layout := events.DefaultLayout()
	door := events.NewDoor(layout, testValidator(b, events.DefaultLimits()), nil, false)
	fresh := func(round int) {
		for _, s := range layout.Streams {
			_ = js.DeleteStream(ctx, s.Name)
		}
		if _, err := streams.Apply(ctx, js, def); err != nil {
			b.Fatal(err)
		}
		for _, e := range evs {
			e.ID = e.ID[:36] + "-" + strconv.Itoa(round)
		}
	}
	shardOf := func(subject string) int { return events.Partition(subject, 64) % 2 }
	rjs, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	var shards [][]*nats.Msg // prepared for the next raw run, outside its measure
	prepareRaw := func() {
		var msgs []*events.Message
		for chunk := range slices.Chunk(evs, benchBatch) {
			m, _ := door.Prepare(ctx, chunk)
			msgs = append(msgs, m...)
		}
		shards = make([][]*nats.Msg, 2)
		for _, m := range msgs {
			s := shardOf(m.Event.Subject)
			shards[s] = append(shards[s], m.NatsMsg())
		}
	}
	raw := func() time.Duration {
		sem := make(chan struct{}, 4096)
		t0 := time.Now()
		var wg sync.WaitGroup
		for _, shard := range shards {
			wg.Go(func() {
				queue := make(chan jetstream.PubAckFuture, 4096)
				done := make(chan struct{})
				go func() {
					defer close(done)
					for f := range queue {
						select {
						case <-f.Ok():
						case err := <-f.Err():
							b.Error(err)
						}
						<-sem
					}
				}()
				for _, m := range shard {
					sem <- struct{}{}
					f, err := rjs.PublishMsgAsync(m)
					if err != nil {
						b.Error(err)
						<-sem
						continue
					}
					queue <- f
				}
				close(queue)
				<-done
			})
		}
		wg.Wait()
		return time.Since(t0)
	}
	sdk := func(validate bool) time.Duration {
		p, err := events.NewPublisher(ctx, nc, events.WithLayout(layout), events.WithValidation(validate),
			events.WithClock(func() time.Time { return testNow }))
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		shards := make([][]*events.Event, 2)
		for _, e := range evs {
			s := shardOf(e.Subject)
			shards[s] = append(shards[s], e)
		}
		t0 := time.Now()
		var wg sync.WaitGroup
		for _, shard := range shards {
			wg.Go(func() {
				for chunk := range slices.Chunk(shard, benchBatch) {
					for _, r := range p.PublishBatch(ctx, chunk) {
						if r.Err != nil || r.Duplicate {
							b.Errorf("err=%v duplicate=%v", r.Err, r.Duplicate)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		return time.Since(t0)
	}
	var bestRaw, bestOff, bestOn time.Duration
	var cpuRaw, cpuOff, cpuOn float64
	var allocRaw, allocOff, allocOn float64
	alloc := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.TotalAlloc
	}
	better := func(best *time.Duration, cpu, allocated *float64, run func() time.Duration) {
		c0, a0 := cpuTime(), alloc()
		d := run()
		if *best == 0 || d < *best {
			*best, *cpu = d, (cpuTime()-c0).Seconds()/d.Seconds()
			*allocated = float64(alloc()-a0) / n
		}
	}
	round := 0
	for b.Loop() {
		fresh(round)
		round++
		prepareRaw()
		better(&bestRaw, &cpuRaw, &allocRaw, raw)
		fresh(round)
		round++
		better(&bestOff, &cpuOff, &allocOff, func() time.Duration { return sdk(false) })
		fresh(round)
		round++
		better(&bestOn, &cpuOn, &allocOn, func() time.Duration { return sdk(true) })
	}
	b.ReportMetric(allocRaw, "raw-B/event")
	b.ReportMetric(allocOff, "off-B/event")
	b.ReportMetric(allocOn, "on-B/event")
	b.ReportMetric(cpuRaw, "raw-cores")
	b.ReportMetric(cpuOff, "off-cores")
	b.ReportMetric(cpuOn, "on-cores")
	rate := func(d time.Duration) float64 { return n / d.Seconds() }
	b.ReportMetric(rate(bestRaw), "raw/s")
	b.ReportMetric(rate(bestOff), "off/s")
	b.ReportMetric(rate(bestOn), "on/s")
	b.ReportMetric(rate(bestOff)/rate(bestRaw), "off/raw")
	b.ReportMetric(rate(bestOn)/rate(bestRaw), "on/raw")
	b.ReportMetric(0, "ns/op")
}
