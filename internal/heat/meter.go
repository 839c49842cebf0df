package heat

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"
)

// A Meter tells, on the serving path, whether a key is hot at this node:
// whether its request rate over the last window reaches a threshold. It is
// the data plane's fast half of heat tracking (the Tracker's top-k feeds
// the leader about once a report interval; the Meter answers on every
// request, in nanoseconds, with no lock and no allocation).
//
// It is a fixed array of slots indexed by key hash, each counting the
// requests of its current window and of the one before; the rate over the
// last window is the sliding-window estimate
//
//	count(this window) + count(previous window) × (part of it still inside).
//
// Keys that share a slot are counted together, so a key may read hotter than
// it is, never cooler: the cost of a false positive is a near copy of a
// lukewarm key, bounded by the store's near-copy budget. Memory is fixed at
// NewMeter.
type Meter struct {
	win   int64   // window, nanoseconds
	need  float64 // requests per window that make a key hot
	slots []meterSlot
	mask  uint64
}

type meterSlot struct {
	window atomic.Int64 // index of the window count belongs to (unix nanos / win)
	count  atomic.Int64 // requests in that window
	prev   atomic.Int64 // requests in the window before it
	_      [40]byte     // one cache line per slot
}

// NewMeter returns a Meter with at least slots slots (rounded up to a power
// of two) that calls a key hot at rate requests per second over window.
func NewMeter(slots int, window time.Duration, rate float64) (*Meter, error) {
	if slots < 1 || slots > 1<<20 {
		return nil, fmt.Errorf("heat: meter slots %d not in [1, %d]", slots, 1<<20)
	}
	if window < time.Millisecond {
		return nil, fmt.Errorf("heat: meter window %v below 1ms", window)
	}
	if rate <= 0 {
		return nil, fmt.Errorf("heat: meter rate %v must be positive", rate)
	}
	n := 1 << bits.Len(uint(slots-1))
	return &Meter{
		win:   int64(window),
		need:  rate * window.Seconds(),
		slots: make([]meterSlot, n),
		mask:  uint64(n - 1),
	}, nil
}

// Observe counts one request for the key with this hash at now (unix
// nanoseconds, from the caller's clock) and reports whether the key is hot,
// and whether this very request made it so (crossed: true about once per
// warming, for an immediate heat report).
func (m *Meter) Observe(hash uint64, now int64) (hot, crossed bool) {
	s := &m.slots[hash&m.mask]
	w := now / m.win
	m.roll(s, w)
	c := s.count.Add(1)
	est := m.estimate(c, s.prev.Load(), now)
	return est >= m.need, est >= m.need && est-1 < m.need
}

// Hot reports whether the key with this hash is hot at now, without
// counting a request.
func (m *Meter) Hot(hash uint64, now int64) bool {
	s := &m.slots[hash&m.mask]
	w := now / m.win
	switch cur := s.window.Load(); {
	case cur == w:
		return m.estimate(s.count.Load(), s.prev.Load(), now) >= m.need
	case cur == w-1:
		return m.estimate(0, s.count.Load(), now) >= m.need
	}
	return false
}

// roll moves slot s into window w if it is behind. Of several requests
// that see the move, one makes it; the others count into the new window.
func (m *Meter) roll(s *meterSlot, w int64) {
	cur := s.window.Load()
	if cur >= w || !s.window.CompareAndSwap(cur, w) {
		return
	}
	old := s.count.Swap(0)
	if w == cur+1 {
		s.prev.Store(old)
	} else {
		s.prev.Store(0)
	}
}

func (m *Meter) estimate(count, prev int64, now int64) float64 {
	left := m.win - now%m.win // part of the previous window still inside
	return float64(count) + float64(prev)*float64(left)/float64(m.win)
}
