// Package testwait holds the waiting that tests share: polling a condition
// with a deadline (never a bare sleep), and running a blocking Run(ctx) in
// a goroutine that the test stops and checks.
package testwait

import (
	"context"
	"sync"
	"testing"
	"time"
)

// poll is how often conditions are checked.
const poll = 5 * time.Millisecond

// Eventually polls cond until it holds, failing the test if timeout passes
// first.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(poll)
	}
}

// Holds checks that cond holds on every poll for d.
func Holds(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(poll) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
	}
}

// Runner runs fn(ctx) in a goroutine until stopped.
type Runner struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

// Go starts fn and stops it at the end of the test.
func Go(t testing.TB, fn func(context.Context) error) *Runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = fn(ctx)
	}()
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Stop cancels the run and waits, at most 15s, for it to return nil.
func (r *Runner) Stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
			if r.err != nil {
				t.Errorf("Run returned %v", r.err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
}
