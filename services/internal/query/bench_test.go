package query_test

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkProfileRead reads one profile over real HTTP from real PostgreSQL
// (freshness, profile, key lookup, masking), one request at a time, and reports the
// latency percentiles.
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

func benchmarkGet(b *testing.B, f *fixture, path string) {
	client := f.srv.Client()
	url := f.srv.URL + path
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		res, err := client.Get(url)
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
