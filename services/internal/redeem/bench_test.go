package redeem_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
)

// BenchmarkRedeem measures a redemption end to end (HTTP, the member's lock and
// reservation in PostgreSQL, the publication acknowledged by JetStream), with parallel
// clients spread over 64 members, so members' locks rarely meet.
func BenchmarkRedeem(b *testing.B) {
	f := newFixture(b)
	for i := range 64 {
		f.setBalance(b, fmt.Sprintf("C-B%02d", i), 1<<40)
	}
	f.doc = nil // measure the server, not the conformance check
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			r := f.post(b, redemptionsPath(fmt.Sprintf("C-B%02d", i%64)), redeemBody(fmt.Sprintf("b-%d", i), 1), nil)
			if r.status != http.StatusCreated {
				b.Errorf("%d %s", r.status, r.body)
				return
			}
		}
	})
}
