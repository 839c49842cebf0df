package heat

import (
	"testing"
	"time"
)

func TestMeter(t *testing.T) {
	const win = 100 * time.Millisecond
	m, err := NewMeter(1024, win, 100) // hot at 100/s: 10 requests a window
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	t0 -= t0 % int64(win)
	const key = 42

	// A step: the 10th request within one window makes the key hot, and
	// only that request says it crossed.
	crossings := 0
	for i := range 10 {
		hot, crossed := m.Observe(key, t0+int64(i)*int64(time.Millisecond))
		if crossed {
			crossings++
		}
		if want := i == 9; hot != want {
			t.Fatalf("request %d: hot = %v, want %v", i+1, hot, want)
		}
	}
	if crossings != 1 {
		t.Errorf("crossings = %d, want 1", crossings)
	}
	if !m.Hot(key, t0+int64(10*time.Millisecond)) {
		t.Error("not hot right after the step")
	}
	m.Observe(key, t0+int64(10*time.Millisecond))
	m.Observe(key, t0+int64(11*time.Millisecond)) // 12 in the window
	if m.Hot(key+1, t0) {
		t.Error("another key reads hot")
	}

	// The next window carries the last one's count, fading: just after
	// the boundary the key is still hot, near its end it is not.
	if !m.Hot(key, t0+int64(win)+int64(time.Millisecond)) {
		t.Error("not hot just after the window boundary")
	}
	if m.Hot(key, t0+2*int64(win)-int64(5*time.Millisecond)) {
		t.Error("still hot at the end of the next window with no requests")
	}
	// Two windows later without requests: cold, whatever the slot held.
	if hot, _ := m.Observe(key, t0+3*int64(win)); hot {
		t.Error("hot after two silent windows")
	}

	// A steady rate above the threshold stays hot; one below stays cold.
	for _, tt := range []struct {
		every time.Duration
		hot   bool
	}{{5 * time.Millisecond, true}, {20 * time.Millisecond, false}} {
		m, _ := NewMeter(16, win, 100)
		var hot bool
		for ts := t0; ts < t0+int64(time.Second); ts += int64(tt.every) {
			hot, _ = m.Observe(7, ts)
		}
		if hot != tt.hot {
			t.Errorf("a request every %v: hot = %v, want %v", tt.every, hot, tt.hot)
		}
	}
}

func TestMeterConfig(t *testing.T) {
	for _, tt := range []struct {
		slots int
		win   time.Duration
		rate  float64
	}{{0, time.Second, 1}, {16, 0, 1}, {16, time.Second, 0}, {16, time.Second, -1}} {
		if _, err := NewMeter(tt.slots, tt.win, tt.rate); err == nil {
			t.Errorf("NewMeter(%d, %v, %v): no error", tt.slots, tt.win, tt.rate)
		}
	}
}

func BenchmarkMeterObserve(b *testing.B) {
	m, _ := NewMeter(4096, 250*time.Millisecond, 20)
	now := time.Now().UnixNano()
	b.RunParallel(func(pb *testing.PB) {
		i := uint64(0)
		for pb.Next() {
			i++
			m.Observe(i&7, now+int64(i))
		}
	})
}
