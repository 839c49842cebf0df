package httpcache

import (
	"runtime"
	"strconv"
	"testing"
)

// TestStoreMemoryBound streams 200,000 distinct 4 KiB objects (800 MB)
// through a 64 MiB store and checks that both its weighted size and the Go
// heap stay bounded.
func TestStoreMemoryBound(t *testing.T) {
	const (
		maxBytes = 64 << 20
		batch    = 10_000
	)
	keys := 200_000
	if testing.Short() || raceEnabled {
		keys = 60_000 // still about four times the store's capacity
	}
	s, clk := newTestStore(t, StoreConfig{MaxBytes: maxBytes})
	h := hdr("Cache-Control", "max-age=3600", "Content-Type", "application/octet-stream", "Etag", `"x"`)
	now := clk.Now()

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseline := ms.HeapInuse
	heapLimit := baseline + maxBytes*3/2

	for i := range keys {
		base := "example.com/objects/" + strconv.Itoa(i)
		s.Put(NewEntry(base, "", nil, 200, h, make([]byte, 4096), now, now, Defaults{}))
		if (i+1)%batch != 0 {
			continue
		}
		if b := s.Bytes(); b > maxBytes*105/100 {
			t.Fatalf("after %d puts: Bytes = %d, over %d", i+1, b, maxBytes*105/100)
		}
		if (i+1)%(5*batch) == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > heapLimit {
				t.Fatalf("after %d puts: heap in use %d MiB, over %d MiB (baseline %d MiB)",
					i+1, ms.HeapInuse>>20, heapLimit>>20, baseline>>20)
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("%d puts: %d entries, %d MiB weighted, heap in use %d MiB over a %d MiB baseline",
		keys, s.Len(), s.Bytes()>>20, (ms.HeapInuse-baseline)>>20, baseline>>20)
	if ms.HeapInuse > heapLimit {
		t.Fatalf("heap in use %d MiB, over %d MiB", ms.HeapInuse>>20, heapLimit>>20)
	}
	if s.Len() < maxBytes/8192 {
		t.Errorf("only %d entries kept: the store evicts far below its bound", s.Len())
	}
}
