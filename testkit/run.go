package testkit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Go runs a long-running component (a Run(ctx) error) until the returned stop is
// called or the test ends; stop cancels it and fails the test if it returns an error
// or does not return within wait.
func Go(t testing.TB, name string, wait time.Duration, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: Run: %v, want nil on cancellation", name, err)
				}
			case <-time.After(wait):
				t.Errorf("%s: Run did not return %v after cancellation", name, wait)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
