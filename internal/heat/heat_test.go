package heat

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests advance by hand; safe for concurrent reads.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// mix is splitmix64's finaliser: a stand-in for the xxhash of a key.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func keyName(i int) string { return fmt.Sprintf("/k/%d", i) }

// load feeds rates (requests/s per key index) for d, observing in steps of
// tick and calling Tick after each step if tickEvery is true.
type load struct {
	tr    *Tracker
	clk   *fakeClock
	carry map[int]float64
}

func (l *load) run(rates map[int]float64, d, step time.Duration, tick bool) {
	if l.carry == nil {
		l.carry = map[int]float64{}
	}
	for elapsed := time.Duration(0); elapsed < d; elapsed += step {
		for k := range len(rates) + 1 {
			r, ok := rates[k]
			if !ok {
				continue
			}
			l.carry[k] += r * step.Seconds()
			for l.carry[k] >= 1 {
				l.tr.Observe(mix(uint64(k)), keyName(k))
				l.carry[k]--
			}
		}
		now := l.clk.Advance(step)
		if tick {
			l.tr.Tick(now)
		}
	}
}

func newTracker(t testing.TB, cfg Config, clk *fakeClock) *Tracker {
	t.Helper()
	cfg.Now = clk.Now
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return tr
}

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name         string
		cfg          Config
		wantErr      bool
		wantShards   int
		wantCapacity int
	}{
		{name: "defaults", cfg: Config{}, wantShards: 64, wantCapacity: 1024},
		{name: "small capacity", cfg: Config{Capacity: 100}, wantShards: 4, wantCapacity: 100},
		{name: "tiny capacity", cfg: Config{Capacity: 3}, wantShards: 1, wantCapacity: 3},
		{name: "shards rounded up", cfg: Config{Capacity: 1000, Shards: 3}, wantShards: 4, wantCapacity: 1000},
		{name: "shards capped by capacity", cfg: Config{Capacity: 5, Shards: 64}, wantShards: 4, wantCapacity: 4},
		{name: "one shard", cfg: Config{Capacity: 10, Shards: 1}, wantShards: 1, wantCapacity: 10},
		{name: "negative capacity", cfg: Config{Capacity: -1}, wantErr: true},
		{name: "negative window", cfg: Config{Window: -time.Second}, wantErr: true},
		{name: "negative shards", cfg: Config{Shards: -2}, wantErr: true},
		{name: "too many shards", cfg: Config{Capacity: 1 << 20, Shards: 1 << 20}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := New(tt.cfg)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("New(%+v) = nil error, want one", tt.cfg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.shards) != tt.wantShards {
				t.Errorf("shards = %d, want %d", len(tr.shards), tt.wantShards)
			}
			if st := tr.Stats(); st.Capacity != tt.wantCapacity {
				t.Errorf("capacity = %d, want %d", st.Capacity, tt.wantCapacity)
			}
			// Every hash must map to a shard.
			for _, h := range []uint64{0, 1, math.MaxUint64, 1 << 63} {
				tr.Observe(h, "x")
			}
		})
	}
}

// TestStep checks that a step in rate is seen within one Window and that the
// estimate converges to the true rate, whether folds come from frequent
// Ticks or only from the twice-a-second reads of the report loop.
func TestStep(t *testing.T) {
	tests := []struct {
		name       string
		window     time.Duration
		step       time.Duration // observation granularity
		tick       bool          // Tick after each step; otherwise fold only on reads
		from, to   float64
		at1Window  float64 // minimum estimate one Window after the step
		settledTol float64 // relative error allowed after 5 Windows
	}{
		{name: "100 to 10000, tick 10ms", window: time.Second, step: 10 * time.Millisecond, tick: true, from: 100, to: 10000, at1Window: 5000, settledTol: 0.02},
		{name: "100 to 10000, tick 100ms", window: time.Second, step: 100 * time.Millisecond, tick: true, from: 100, to: 10000, at1Window: 5000, settledTol: 0.02},
		{name: "100 to 10000, reads only", window: time.Second, step: 10 * time.Millisecond, from: 100, to: 10000, at1Window: 5000, settledTol: 0.02},
		{name: "50 to 5000, 500ms window", window: 500 * time.Millisecond, step: 10 * time.Millisecond, tick: true, from: 50, to: 5000, at1Window: 2500, settledTol: 0.02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			tr := newTracker(t, Config{Window: tt.window}, clk)
			l := &load{tr: tr, clk: clk}
			h := mix(0)
			// Settle at the old rate, reading twice a second like the report loop.
			for range 20 {
				l.run(map[int]float64{0: tt.from}, 500*time.Millisecond, tt.step, tt.tick)
				tr.Top(10)
			}
			if got := tr.Rate(h); math.Abs(got-tt.from)/tt.from > 0.05 {
				t.Fatalf("settled rate = %.1f, want %.0f ±5%%", got, tt.from)
			}
			l.run(map[int]float64{0: tt.to}, tt.window/2, tt.step, tt.tick)
			tr.Top(10)
			l.run(map[int]float64{0: tt.to}, tt.window/2, tt.step, tt.tick)
			if got := tr.Rate(h); got < tt.at1Window {
				t.Errorf("rate one window after step = %.0f, want > %.0f", got, tt.at1Window)
			}
			l.run(map[int]float64{0: tt.to}, 4*tt.window, tt.step, tt.tick)
			if got := tr.Rate(h); math.Abs(got-tt.to)/tt.to > tt.settledTol {
				t.Errorf("rate five windows after step = %.0f, want %.0f ±%.0f%%", got, tt.to, 100*tt.settledTol)
			}
		})
	}
}

func TestDecay(t *testing.T) {
	clk := newClock()
	tr := newTracker(t, Config{Capacity: 64}, clk)
	l := &load{tr: tr, clk: clk}
	l.run(map[int]float64{0: 5000, 1: 200}, 5*time.Second, 10*time.Millisecond, true)
	if top := tr.Top(1); len(top) != 1 || top[0].Hash != mix(0) {
		t.Fatalf("Top(1) = %+v, want key 0", top)
	}
	before := tr.Rate(mix(0))

	// Key 0 stops; key 1 continues.
	tests := []struct {
		after    time.Duration
		maxRatio float64 // rate(key 0) / before
	}{
		{after: time.Second, maxRatio: math.Exp(-1) * 1.02},
		{after: 3 * time.Second, maxRatio: math.Exp(-3) * 1.02},
		{after: 10 * time.Second, maxRatio: 1e-4},
	}
	elapsed := time.Duration(0)
	for _, tt := range tests {
		l.run(map[int]float64{1: 200}, tt.after-elapsed, 10*time.Millisecond, true)
		elapsed = tt.after
		if got := tr.Rate(mix(0)) / before; got > tt.maxRatio {
			t.Errorf("%v after stop: rate ratio %.4f, want <= %.4f", tt.after, got, tt.maxRatio)
		}
	}
	if top := tr.Top(1); len(top) != 1 || top[0].Hash != mix(1) {
		t.Errorf("after key 0 stopped, Top(1) = %+v, want key 1", top)
	}
	if got := tr.Rate(mix(1)); math.Abs(got-200) > 10 {
		t.Errorf("steady key rate = %.1f, want 200 ±10", got)
	}
	// Nothing observed at all: everything decays toward zero.
	clk.Advance(time.Minute)
	for _, kr := range tr.Top(100) {
		if kr.Rate > 1e-6 {
			t.Errorf("a minute idle: %s rate %g, want ~0", kr.Key, kr.Rate)
		}
	}
}

func TestTop(t *testing.T) {
	clk := newClock()
	tr := newTracker(t, Config{Capacity: 256}, clk)
	l := &load{tr: tr, clk: clk}
	rates := map[int]float64{}
	for k := range 50 {
		rates[k] = float64(10 * (k + 1)) // key k at 10(k+1)/s
	}
	l.run(rates, 10*time.Second, 10*time.Millisecond, true)

	tests := []struct {
		n, want int
	}{
		{n: -1, want: 0}, {n: 0, want: 0}, {n: 1, want: 1}, {n: 10, want: 10}, {n: 50, want: 50}, {n: 1000, want: 50},
	}
	for _, tt := range tests {
		top := tr.Top(tt.n)
		if len(top) != tt.want {
			t.Errorf("len(Top(%d)) = %d, want %d", tt.n, len(top), tt.want)
		}
		for i, kr := range top {
			wantKey := 49 - i
			if kr.Key != keyName(wantKey) || kr.Hash != mix(uint64(wantKey)) {
				t.Errorf("Top(%d)[%d] = %s, want %s", tt.n, i, kr.Key, keyName(wantKey))
			}
			if i > 0 && kr.Rate > top[i-1].Rate {
				t.Errorf("Top(%d) not sorted at %d: %.1f > %.1f", tt.n, i, kr.Rate, top[i-1].Rate)
			}
			if want := rates[wantKey]; math.Abs(kr.Rate-want) > 0.05*want+1 {
				t.Errorf("%s rate = %.1f, want %.0f", kr.Key, kr.Rate, want)
			}
			if kr.Count == 0 {
				t.Errorf("%s count = 0", kr.Key)
			}
		}
	}
}

// TestBoundedUnderDistinctFlood sends 1e6 distinct keys alongside a few heavy
// ones: memory stays at Capacity and the heavy keys stay on top.
func TestBoundedUnderDistinctFlood(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		shards   int
		distinct int
	}{
		{name: "default", capacity: 0, distinct: 1_000_000},
		{name: "one shard", capacity: 32, shards: 1, distinct: 200_000},
		{name: "small", capacity: 64, distinct: 200_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			tr := newTracker(t, Config{Capacity: tt.capacity, Shards: tt.shards}, clk)
			slots := make([]int, len(tr.shards))
			for i := range tr.shards {
				slots[i] = len(tr.shards[i].table)
			}
			distinct := tt.distinct
			heavy := []uint64{mix(1 << 40), mix(1<<40 + 1), mix(1<<40 + 2)}
			for i := range distinct {
				tr.Observe(mix(uint64(i)), "") // one-off keys
				if i%2 == 0 {
					h := heavy[(i/2)%len(heavy)] // 11% of traffic each
					tr.Observe(h, "heavy")
				}
				if i%10_000 == 0 {
					tr.Tick(clk.Advance(10 * time.Millisecond)) // 1e6 keys/s
				}
			}
			st := tr.Stats()
			if st.Tracked > st.Capacity {
				t.Errorf("tracked %d > capacity %d", st.Tracked, st.Capacity)
			}
			if st.Evictions == 0 || st.Rejected == 0 {
				t.Errorf("stats %+v after %d distinct keys, want evictions and rejections", st, distinct)
			}
			total := 0
			for i := range tr.shards {
				s := &tr.shards[i]
				total += len(s.entries)
				if len(s.table) != slots[i] || cap(s.entries) != s.cap {
					t.Errorf("shard %d grew: table %d->%d, entries cap %d (limit %d)", i, slots[i], len(s.table), cap(s.entries), s.cap)
				}
				checkShard(t, s)
			}
			if total > st.Capacity {
				t.Errorf("entries %d > capacity %d", total, st.Capacity)
			}
			top := tr.Top(len(heavy) + 1)
			for i, kr := range top[:len(heavy)] {
				if kr.Key != "heavy" {
					t.Errorf("Top[%d] = %+v, want a heavy key", i, kr)
				}
				// 1e6 one-off keys/s, each heavy key at half that over 3,
				// seen for distinct/1e6 seconds from zero.
				elapsed := float64(distinct) / 1e6
				if want := 1e6 / 2 / 3 * -math.Expm1(-elapsed); math.Abs(kr.Rate-want) > 0.05*want {
					t.Errorf("heavy rate = %.0f, want %.0f ±10%%", kr.Rate, want)
				}
			}
			// A one-off key reports only its own single request.
			if kr := top[len(heavy)]; kr.Rate > 10 {
				t.Errorf("one-off key reported at %.1f/s, want < 10/s", kr.Rate)
			}
		})
	}
}

// checkShard verifies the index: every entry is found by lookup and the
// table holds exactly the entries.
func checkShard(t *testing.T, s *shard) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := range s.table {
		if s.table[i].Load() != nil {
			n++
		}
	}
	if n != len(s.entries) {
		t.Errorf("table holds %d entries, entries has %d", n, len(s.entries))
	}
	for _, e := range s.entries {
		if s.lookup(e.hash) != e {
			t.Errorf("entry %x not found by lookup", e.hash)
		}
	}
}

// TestIndexChurn exercises backward-shift deletion with colliding hashes.
func TestIndexChurn(t *testing.T) {
	clk := newClock()
	tr := newTracker(t, Config{Capacity: 8, Shards: 1}, clk)
	s := &tr.shards[0]
	for i := range 10_000 {
		// Few distinct low bits: long probe chains that wrap around.
		h := uint64(i%7)<<56 | uint64(i*13%5)
		tr.Observe(h, "")
		if i%97 == 0 {
			checkShard(t, s)
		}
	}
	checkShard(t, s)
}

// TestConcurrent checks exact counts under concurrent Observe, Tick, Top and
// Rate when every key fits (run with -race).
func TestConcurrent(t *testing.T) {
	clk := newClock()
	tr := newTracker(t, Config{Capacity: 1024}, clk)
	const (
		workers = 8
		keys    = 200
		per     = 20_000
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				k := (i*7 + w) % keys
				tr.Observe(mix(uint64(k)), keyName(k))
			}
		})
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			tr.Tick(clk.Advance(time.Millisecond))
			tr.Top(5)
			tr.Rate(mix(3))
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()

	var sum uint64
	for _, kr := range tr.Top(keys) {
		sum += kr.Count
	}
	if want := uint64(workers * per); sum != want {
		t.Errorf("sum of counts = %d, want %d", sum, want)
	}
	if st := tr.Stats(); st.Tracked != keys || st.Evictions != 0 {
		t.Errorf("stats = %+v, want %d tracked, 0 evictions", st, keys)
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	tr := newTracker(t, Config{}, newClock())
	for k := range 100 {
		tr.Observe(mix(uint64(k)), keyName(k))
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		tr.Observe(mix(uint64(i%100)), "ignored for tracked keys")
		i++
	})
	if allocs != 0 {
		t.Errorf("Observe of tracked keys: %.1f allocs/op, want 0", allocs)
	}
}

// Tick tells its owner when the fold's pace matters: once a shard is full.
func TestTickReportsAFullShard(t *testing.T) {
	clk := newClock()
	tr, err := New(Config{Capacity: 4, Shards: 1, Window: time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		tr.Observe(mix(uint64(i)), keyName(i))
		if tr.Tick(clk.Advance(10 * time.Millisecond)) {
			t.Fatalf("Tick reports full with %d of 4 keys", i+1)
		}
	}
	tr.Observe(mix(3), keyName(3))
	if !tr.Tick(clk.Advance(10 * time.Millisecond)) {
		t.Fatal("Tick does not report full with 4 of 4 keys")
	}
	// Rates are as fresh from Top without the ticks: folding is exact
	// whatever its interval.
	for range 100 {
		tr.Observe(mix(0), keyName(0))
	}
	clk.Advance(time.Second)
	if got, want := tr.Rate(mix(0)), 100*(1-math.Exp(-1))/1.0; math.Abs(got-want) > 1 {
		t.Errorf("rate %.2f after 100 observations in one window, want about %.2f", got, want)
	}
}
