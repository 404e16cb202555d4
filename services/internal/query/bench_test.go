package query_test

import (
	"io"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"
)

// BenchmarkProfileRead reads one profile over real HTTP from real PostgreSQL
// (freshness, profile, key lookup, masking, the access record committed before the
// answer), one request at a time, and reports the latency percentiles.
func BenchmarkProfileRead(b *testing.B) {
	f := newFixture(b)
	benchmarkGet(b, f, "/v1/customers/"+alice)
}

// BenchmarkSearchByTier lists a page of two customers, each of whose name and phone
// is opened.
func BenchmarkSearchByTier(b *testing.B) {
	f := newFixture(b)
	benchmarkGet(b, f, "/v1/customers?tier=gold")
}

// BenchmarkTimelinePage reads a page of 20 timeline entries.
func BenchmarkTimelinePage(b *testing.B) {
	f := newFixture(b)
	benchmarkGet(b, f, "/v1/customers/"+alice+"/timeline?limit=20")
}

// BenchmarkProfileReadParallel reads profiles from 32 clients at once: the access
// records of concurrent reads share group commits.
func BenchmarkProfileReadParallel(b *testing.B) {
	f := newFixture(b)
	client := f.srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	b.SetParallelism(32 / max(1, runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/customers/"+alice, nil)
			authorize(req, nil)
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
}

func benchmarkGet(b *testing.B, f *fixture, path string) {
	client := f.srv.Client()
	url := f.srv.URL + path
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		authorize(req, nil)
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d", res.StatusCode)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
