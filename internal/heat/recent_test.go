package heat

import (
	"math"
	"testing"
	"time"
)

// TestRecent: one report interval after a step, Recent shows the new rate
// in full while Rate still lags; keys unseen before, or readmitted, are
// unknown (0).
func TestRecent(t *testing.T) {
	clk := newClock()
	tr := newTracker(t, Config{Window: 250 * time.Millisecond}, clk)
	l := &load{tr: tr, clk: clk}
	var rec Recent
	const interval = 250 * time.Millisecond
	report := func() KeyRate {
		t.Helper()
		top := tr.Top(10)
		rec.Fill(clk.Now(), top)
		for _, k := range top {
			if k.Key == keyName(0) {
				return k
			}
		}
		t.Fatal("key 0 not tracked")
		return KeyRate{}
	}
	for range 8 {
		l.run(map[int]float64{0: 100}, interval, 10*time.Millisecond, true)
		report()
	}
	if k := report(); k.Recent != 0 {
		// No time has passed since the previous call: unknown, not infinite.
		t.Errorf("Recent over an empty interval = %v, want 0", k.Recent)
	}
	l.run(map[int]float64{0: 100}, interval, 10*time.Millisecond, true)
	if k := report(); math.Abs(k.Recent-100) > 5 {
		t.Errorf("steady Recent = %.1f, want 100", k.Recent)
	}
	l.run(map[int]float64{0: 5000}, interval, 10*time.Millisecond, true)
	k := report()
	if math.Abs(k.Recent-5000)/5000 > 0.02 {
		t.Errorf("Recent one interval after a step to 5000/s = %.0f, want 5000 ±2%%", k.Recent)
	}
	if k.Rate > 0.7*5000 {
		t.Errorf("Rate one window after the step = %.0f: the decay should still lag (about 63%%)", k.Rate)
	}

	// A key admitted since the previous call: its count over the interval,
	// a lower bound.
	l.run(map[int]float64{0: 5000, 1: 300}, interval, 10*time.Millisecond, true)
	var found bool
	top := tr.Top(10)
	rec.Fill(clk.Now(), top)
	for _, k := range top {
		if k.Key == keyName(1) {
			found = true
			if want := float64(k.Count) / interval.Seconds(); k.Recent != want || k.Recent < 250 || k.Recent > 310 {
				t.Errorf("key admitted in the interval: Recent = %.1f, want its count over the interval (%.1f), about 300", k.Recent, want)
			}
		}
	}
	if !found {
		t.Fatal("key 1 not tracked")
	}
	// A count that went down (evicted and readmitted): the same lower bound.
	keys := []KeyRate{{Key: keyName(1), Hash: mix(1), Count: 10}}
	clk.Advance(interval)
	rec.Fill(clk.Now(), keys)
	if want := 10 / interval.Seconds(); keys[0].Recent != want {
		t.Errorf("count went down: Recent = %v, want %v", keys[0].Recent, want)
	}
	// The first call of a fresh Recent knows nothing.
	var fresh Recent
	keys = []KeyRate{{Key: keyName(0), Hash: mix(0), Count: 1000}}
	fresh.Fill(clk.Now(), keys)
	if keys[0].Recent != 0 {
		t.Errorf("first call: Recent = %v, want 0", keys[0].Recent)
	}
}
