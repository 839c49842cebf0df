package heat

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// benchKeys returns n key hashes and names, already tracked by tr.
func benchKeys(tr *Tracker, n int) ([]uint64, []string) {
	hashes, names := make([]uint64, n), make([]string, n)
	for i := range n {
		hashes[i], names[i] = mix(uint64(i)), keyName(i)
		tr.Observe(hashes[i], names[i])
	}
	return hashes, names
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "obs/s")
}

func benchTracker(b *testing.B) *Tracker {
	tr, err := New(Config{Now: newClock().Now})
	if err != nil {
		b.Fatal(err)
	}
	return tr
}

// BenchmarkObserve is the serving-path cost: 512 tracked keys.
func BenchmarkObserve(b *testing.B) {
	tr := benchTracker(b)
	hashes, names := benchKeys(tr, 512)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		j := i & 511
		tr.Observe(hashes[j], names[j])
	}
	reportRate(b)
}

// BenchmarkObserveParallel is BenchmarkObserve from every core at once.
func BenchmarkObserveParallel(b *testing.B) {
	tr := benchTracker(b)
	hashes, names := benchKeys(tr, 512)
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(97))
		for pb.Next() {
			j := i & 511
			tr.Observe(hashes[j], names[j])
			i++
		}
	})
	reportRate(b)
}

// BenchmarkObserveZipf draws from 100,000 keys by a Zipf law (s=1.1), so
// most observations hit tracked keys and the tail churns the slots; Tick
// runs every 10,000 observations.
func BenchmarkObserveZipf(b *testing.B) {
	tr := benchTracker(b)
	const n = 1 << 16
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, 100_000)
	seq := make([]uint64, n)
	names := make([]string, 100_001)
	for i := range seq {
		seq[i] = z.Uint64()
	}
	for i := range names {
		names[i] = keyName(i)
	}
	clk := newClock()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := seq[i&(n-1)]
		tr.Observe(mix(k), names[k])
		if i%10_000 == 0 {
			tr.Tick(clk.Advance(time.Millisecond))
		}
	}
	reportRate(b)
	st := tr.Stats()
	b.ReportMetric(float64(st.Evictions)/float64(b.N), "evictions/op")
}

// BenchmarkObserveDistinct is the worst case: every key is new and evicts.
func BenchmarkObserveDistinct(b *testing.B) {
	tr := benchTracker(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tr.Observe(mix(uint64(i)), "/one-off")
	}
	reportRate(b)
}

// BenchmarkObserveHotKeyParallel is one key from every core: all cores add
// to one counter, the contention a flash crowd causes.
func BenchmarkObserveHotKeyParallel(b *testing.B) {
	tr := benchTracker(b)
	hashes, names := benchKeys(tr, 1)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.Observe(hashes[0], names[0])
		}
	})
	reportRate(b)
}

func BenchmarkTop(b *testing.B) {
	tr := benchTracker(b)
	benchKeys(tr, 4096)
	b.ResetTimer()
	for b.Loop() {
		tr.Top(64)
	}
}
