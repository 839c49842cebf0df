// Package backoff paces retries: capped exponential backoff with jitter,
// and a sleep that ends early when its context does.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is capped exponential backoff with jitter. It is owned by one
// goroutine and not safe for concurrent use. The zero value uses the
// defaults (Base 100ms, Max 2s).
type Backoff struct {
	Base, Max time.Duration
	attempt   int
}

// Next returns the wait before the next attempt: Base·2^attempt capped at
// Max, jittered uniformly into [d/2, d] so retrying nodes do not line up.
func (b *Backoff) Next() time.Duration {
	base, ceil := b.Base, b.Max
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if ceil <= 0 {
		ceil = 2 * time.Second
	}
	d := ceil
	if b.attempt < 30 {
		if e := base << b.attempt; e > 0 && e < ceil {
			d = e
		}
	}
	b.attempt++
	half := d / 2
	return half + rand.N(half+1)
}

// Reset starts the sequence again after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits for d or until ctx is done; it reports whether the full wait
// elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
