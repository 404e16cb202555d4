package notify_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/services/internal/notify"
)

const n = 50

// A webhook that answers 503 to the first three attempts of every signal, then 200:
// each signal is accepted exactly once, at attempt 4, in stream order, signed.
func TestTransientFailuresAreRetried(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, func(_ string, prior int) int {
		if prior < 3 {
			return 503
		}
		return 200
	})
	e.start(t, testConfig(hook("desk", r)))
	ids := e.publish(t, n)
	eventually(t, 30*time.Second, "every signal accepted", func() bool { a, _, _ := r.snapshot(); return a == n })
	time.Sleep(100 * time.Millisecond) // nothing more should come
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if got := r.accepted[id]; got != 1 {
			t.Errorf("signal %s accepted %d times, want 1", id, got)
		}
		if got := r.requests[id]; got != 4 {
			t.Errorf("signal %s: %d requests, want 4", id, got)
		}
		if got := r.attempts[id]; got != "4" {
			t.Errorf("signal %s accepted at attempt %q, want 4", id, got)
		}
	}
	if diff := cmp.Diff(ids, r.order); diff != "" {
		t.Errorf("acceptance order differs from stream order (-stream +accepted):\n%s", diff)
	}
	if r.badSig != 0 {
		t.Errorf("%d requests failed signature or header checks", r.badSig)
	}
	if ps := parked(t, e.pool, ""); len(ps) != 0 {
		t.Errorf("%d parked, want none", len(ps))
	}
}

// Two webhooks, one always 500: the healthy one gets everything, the failing one's
// signals are parked after the retries; once it recovers, Redeliver empties the table.
func TestFailingWebhookIsIsolatedAndParked(t *testing.T) {
	e := newEnv(t)
	good := newReceiver(t, always(200))
	bad := newReceiver(t, always(500))
	cfg := testConfig(hook("good", good), hook("bad", bad))
	cfg.MaxRetries = 2
	nt, _ := e.start(t, cfg)
	ids := e.publish(t, n)
	start := time.Now()
	eventually(t, 10*time.Second, "healthy webhook gets every signal", func() bool { a, _, _ := good.snapshot(); return a == n })
	t.Logf("healthy webhook had all %d signals after %s", n, time.Since(start).Round(time.Millisecond))
	eventually(t, 30*time.Second, "failing webhook's signals all parked", func() bool { return len(parked(t, e.pool, "bad")) == n })

	ps := parked(t, e.pool, "bad")
	got := map[string]bool{}
	for _, p := range ps {
		got[p.SignalID] = true
		if p.Attempts != 3 || p.LastError == "" || p.SignalType == "" || p.Body == "" {
			t.Errorf("parked %s: attempts %d (want 3), last_error %q, type %q", p.SignalID, p.Attempts, p.LastError, p.SignalType)
		}
	}
	for _, id := range ids {
		if !got[id] {
			t.Errorf("signal %s not parked", id)
		}
	}
	if _, reqs, _ := bad.snapshot(); reqs != 3*n {
		t.Errorf("failing webhook got %d requests, want %d (3 attempts each)", reqs, 3*n)
	}
	if ps := parked(t, e.pool, "good"); len(ps) != 0 {
		t.Errorf("healthy webhook has %d parked", len(ps))
	}

	bad.setStatus(always(204))
	for _, p := range ps {
		if err := nt.Redeliver(t.Context(), "bad", p.SignalID); err != nil {
			t.Fatalf("redeliver %s: %v", p.SignalID, err)
		}
	}
	if ps := parked(t, e.pool, "bad"); len(ps) != 0 {
		t.Errorf("%d still parked after redelivery", len(ps))
	}
	if a, _, bs := bad.snapshot(); a != n || bs != 0 {
		t.Errorf("after redelivery: %d accepted (want %d), %d bad signatures", a, n, bs)
	}
	bad.mu.Lock()
	if got := bad.attempts[ids[0]]; got != "4" {
		t.Errorf("redelivery attempt header %q, want 4", got)
	}
	bad.mu.Unlock()
	if err := nt.Redeliver(t.Context(), "bad", ids[0]); !errors.Is(err, notify.ErrNotParked) {
		t.Errorf("second redeliver: %v, want ErrNotParked", err)
	}
}

// A 400 parks at once: one request per signal, no retries. Discard removes a row.
func TestRefusalParksWithoutRetry(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, always(400))
	e.start(t, testConfig(hook("strict", r)))
	ids := e.publish(t, 5)
	eventually(t, 10*time.Second, "every refused signal parked", func() bool { return len(parked(t, e.pool, "strict")) == 5 })
	time.Sleep(200 * time.Millisecond)
	if _, reqs, _ := r.snapshot(); reqs != 5 {
		t.Errorf("%d requests, want 5 (no retries of a 400)", reqs)
	}
	for _, p := range parked(t, e.pool, "strict") {
		if p.Attempts != 1 {
			t.Errorf("parked %s after %d attempts, want 1", p.SignalID, p.Attempts)
		}
	}
	if err := notify.Discard(t.Context(), e.pool, "strict", ids[0]); err != nil {
		t.Fatalf("discard: %v", err)
	}
	if err := notify.Discard(t.Context(), e.pool, "strict", ids[0]); !errors.Is(err, notify.ErrNotParked) {
		t.Errorf("second discard: %v, want ErrNotParked", err)
	}
	if got := len(parked(t, e.pool, "strict")); got != 4 {
		t.Errorf("%d parked after a discard, want 4", got)
	}
}

// Stopping the notifier mid-stream and starting it again loses nothing: every signal
// is accepted; a repeat is possible only for the one in flight at the stop.
func TestRestartLosesNothing(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, always(200))
	r.delay = 10 * time.Millisecond
	cfg := testConfig(hook("desk", r))
	cfg.MaxRetries = 1
	cfg.AckWait = 2 * time.Second
	_, stop := e.start(t, cfg)
	ids := e.publish(t, n)
	eventually(t, 10*time.Second, "a third delivered", func() bool { a, _, _ := r.snapshot(); return a >= n/3 })
	stop()
	before, _, _ := r.snapshot()
	if before == n {
		t.Fatalf("all %d delivered before the stop; the test needs a slower receiver", n)
	}
	e.start(t, cfg)
	eventually(t, 20*time.Second, "every signal accepted after the restart", func() bool { a, _, _ := r.snapshot(); return a == n })
	time.Sleep(100 * time.Millisecond)
	accepted, requests, bad := r.snapshot()
	t.Logf("%d delivered before the stop, %d distinct in all, %d requests", before, accepted, requests)
	if accepted != n || bad != 0 {
		t.Errorf("%d distinct accepted (want %d), %d bad signatures", accepted, n, bad)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	dups := 0
	for _, id := range ids {
		dups += r.accepted[id] - 1
	}
	if dups > 1 {
		t.Errorf("%d repeated deliveries, want at most 1 (the one in flight at the stop)", dups)
	}
}

// A 429 with Retry-After waits that long (capped at MaxInterval) before the retry.
func TestRetryAfterIsHonoured(t *testing.T) {
	e := newEnv(t)
	var first time.Time
	var gap time.Duration
	r := newReceiver(t, nil)
	r.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if first.IsZero() {
			first = time.Now()
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		if gap == 0 {
			gap = time.Since(first)
		}
		w.WriteHeader(http.StatusOK)
	})
	cfg := testConfig(hook("desk", r))
	cfg.MaxInterval = 400 * time.Millisecond // caps the 30s
	e.start(t, cfg)
	e.publish(t, 1)
	eventually(t, 10*time.Second, "the retry", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return gap > 0 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if gap < 350*time.Millisecond || gap > 5*time.Second {
		t.Errorf("retry %s after the 429, want about MaxInterval (400ms): Retry-After honoured and capped", gap)
	}
}

// Types filter the signals a webhook receives.
func TestTypesFilter(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, always(200))
	h := hook("churn-only", r)
	h.Types = []string{"churn"}
	e.start(t, testConfig(h))
	ids := e.publish(t, 10) // odd ones are churn.alert_raised
	eventually(t, 10*time.Second, "the churn signals", func() bool { a, _, _ := r.snapshot(); return a == 5 })
	time.Sleep(200 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, id := range ids {
		if got, want := r.accepted[id], i%2; got != want {
			t.Errorf("signal %d (%s) delivered %d times, want %d", i, id, got, want)
		}
	}
}

// Each signal's first answer decides: 408, 429, 5xx and a timeout are retried (and
// then accepted); 3xx and other 4xx are parked at once.
func TestClassification(t *testing.T) {
	e := newEnv(t)
	first := []int{408, 429, 500, 502, 503, 0 /* timeout */, 301, 400, 404, 422}
	transient := map[int]bool{408: true, 429: true, 500: true, 502: true, 503: true, 0: true}
	index := map[string]int{}
	r := newReceiver(t, func(id string, prior int) int {
		code := first[index[id]]
		if prior > 0 {
			return 200
		}
		if code == 0 {
			time.Sleep(700 * time.Millisecond) // past the webhook's 500ms timeout
			return 504                         // (unseen: the notifier gave up)
		}
		return code
	})
	ids := e.publish(t, len(first))
	r.mu.Lock()
	for i, id := range ids {
		index[id] = i
	}
	r.mu.Unlock()
	e.start(t, testConfig(hook("desk", r)))
	eventually(t, 15*time.Second, "every signal accepted or parked", func() bool {
		a, _, _ := r.snapshot()
		return a+len(parked(t, e.pool, "desk")) == len(first)
	})
	isParked := map[string]bool{}
	for _, p := range parked(t, e.pool, "desk") {
		isParked[p.SignalID] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, id := range ids {
		code := first[i]
		switch {
		case transient[code] && (r.accepted[id] != 1 || r.attempts[id] != "2"):
			t.Errorf("first answer %d: accepted %d times, at attempt %q; want once at attempt 2", code, r.accepted[id], r.attempts[id])
		case !transient[code] && (!isParked[id] || r.requests[id] != 1):
			t.Errorf("first answer %d: parked %v after %d requests; want parked after 1", code, isParked[id], r.requests[id])
		}
	}
}
