package cluster

import (
	"context"
	"math/rand/v2"
	"time"
)

// Retry pacing while etcd is unreachable.
const (
	retryBase = 100 * time.Millisecond
	retryMax  = 2 * time.Second
)

// backoff is capped exponential backoff with jitter. It is owned by one
// goroutine and not safe for concurrent use.
type backoff struct {
	base, max time.Duration
	attempt   int
}

func newBackoff() *backoff { return &backoff{base: retryBase, max: retryMax} }

// next returns the wait before the next attempt: base·2^attempt capped at max,
// jittered uniformly into [d/2, d].
func (b *backoff) next() time.Duration {
	d := b.max
	if b.attempt < 30 {
		if e := b.base << b.attempt; e > 0 && e < b.max {
			d = e
		}
	}
	b.attempt++
	half := d / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.attempt = 0 }

// sleepCtx waits for d or until ctx is done; it reports whether the full
// wait elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
