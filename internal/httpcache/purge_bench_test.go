package httpcache

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPurgeTagWhileServing fills a store with 100,000 objects sharing
// a tag, then purges the tag while readers serve hits on other keys. It
// reports the hit latency p99 and max during the purge next to the same
// readers' p99 before it (one run, same machine), and the purge's duration.
func BenchmarkPurgeTagWhileServing(b *testing.B) {
	for range b.N {
		s, clk := newTestStore(b, StoreConfig{MaxBytes: 512 << 20})
		const tagged = 100_000
		for i := range tagged {
			s.Put(spec{base: fmt.Sprintf("h/match/%d", i), tags: "match-1234", body: 256}.entry(clk.Now()))
		}
		for i := range 1000 {
			s.Put(spec{base: fmt.Sprintf("h/other/%d", i), body: 1024}.entry(clk.Now()))
		}
		if got := s.Len(); got < tagged {
			b.Fatalf("only %d entries stored", got)
		}
		var (
			phase   atomic.Int32 // 0 before, 1 during the purge, 2 stop
			mu      sync.Mutex   // guards lat
			lat     = map[int32][]time.Duration{}
			wg      sync.WaitGroup
			started sync.WaitGroup
		)
		for w := range 2 {
			wg.Add(1)
			started.Add(1)
			go func() {
				defer wg.Done()
				local := map[int32][]time.Duration{}
				started.Done()
				for i := w; ; i++ {
					p := phase.Load()
					if p == 2 {
						break
					}
					start := time.Now()
					if _, ok := s.Get(fmt.Sprintf("h/other/%d", i%1000), http.Header{}); !ok {
						b.Error("hit missing")
						return
					}
					local[p] = append(local[p], time.Since(start))
				}
				mu.Lock()
				for p, v := range local {
					lat[p] = append(lat[p], v...)
				}
				mu.Unlock()
			}()
		}
		started.Wait()
		time.Sleep(200 * time.Millisecond) // a baseline window of reads (measurement, not settling)
		phase.Store(1)
		t0 := time.Now()
		n := s.PurgeTag("match-1234", false)
		purgeTook := time.Since(t0)
		phase.Store(2)
		wg.Wait()
		if n != tagged {
			b.Fatalf("purged %d, want %d", n, tagged)
		}
		before, during := pct(lat[0], 0.99), pct(lat[1], 0.99)
		b.ReportMetric(float64(purgeTook.Milliseconds()), "purge-ms")
		b.ReportMetric(float64(before.Nanoseconds()), "hit-p99-before-ns")
		b.ReportMetric(float64(during.Nanoseconds()), "hit-p99-during-ns")
		b.ReportMetric(float64(pct(lat[1], 1).Nanoseconds()), "hit-max-during-ns")
		b.ReportMetric(float64(len(lat[1])), "hits-during")
	}
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(q * float64(len(d)-1))
	return d[i]
}
