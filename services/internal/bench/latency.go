package bench

import (
	"context"
	"slices"
	"sync"
	"time"
)

// latencies collects latency samples from many goroutines.
type latencies struct {
	mu      sync.Mutex
	samples []time.Duration
	errors  int
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.samples = append(l.samples, d)
	l.mu.Unlock()
}

func (l *latencies) fail() {
	l.mu.Lock()
	l.errors++
	l.mu.Unlock()
}

// summary is the distribution of a set of samples.
type summary struct {
	n                   int
	errors              int
	p50, p90, p99, pMax time.Duration
}

func (l *latencies) summarize() summary {
	l.mu.Lock()
	s := slices.Clone(l.samples)
	errs := l.errors
	l.mu.Unlock()
	slices.Sort(s)
	out := summary{n: len(s), errors: errs}
	if len(s) == 0 {
		return out
	}
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	out.p50, out.p90, out.p99, out.pMax = q(0.50), q(0.90), q(0.99), s[len(s)-1]
	return out
}

// openLoop calls fn at a steady rate for d, each call in its own goroutine, whatever
// the previous calls are doing (an open loop: a slow server does not slow the
// arrivals down, so its queueing shows in the latencies). fn gets its index and the
// time it was due; latencies are measured from that time, so a client that falls
// behind its schedule counts its own delay too. openLoop returns when every call has
// returned, with how many were started and the time the schedule took.
func openLoop(ctx context.Context, rate float64, d time.Duration, fn func(i int, due time.Time)) (int, time.Duration) {
	interval := time.Duration(float64(time.Second) / rate)
	n := int(d / interval)
	var wg sync.WaitGroup
	start := time.Now()
	started := 0
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		started++
		go func() {
			defer wg.Done()
			fn(i, due)
		}()
	}
	elapsed := time.Since(start)
	wg.Wait()
	return started, elapsed
}
