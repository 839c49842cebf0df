package node

import (
	"math"
	"testing"
)

// TestMemBeyondStore: the capacity report's memory is what a node uses
// beside its store against the room its limit leaves beside the store's
// bound; a full store alone never reads as hot.
func TestMemBeyondStore(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name                               string
		inUse, limit, storeBytes, storeMax int64
		mem, room                          float64
	}{
		{"full store, little else", 300 * mib, 384 * mib, 256 * mib, 256 * mib, 44 * mib, 128 * mib},
		{"connections piling up", 370 * mib, 384 * mib, 256 * mib, 256 * mib, 114 * mib, 128 * mib},
		{"empty store", 40 * mib, 384 * mib, 0, 256 * mib, 40 * mib, 128 * mib},
		{"no limit", 300 * mib, math.MaxInt64, 256 * mib, 256 * mib, 0, 0},
		{"limit below the store's bound", 300 * mib, 200 * mib, 100 * mib, 256 * mib, 0, 0},
		{"store counted above what is in use", 100 * mib, 384 * mib, 120 * mib, 256 * mib, 0, 128 * mib},
	} {
		mem, room := memBeyondStore(tc.inUse, tc.limit, tc.storeBytes, tc.storeMax)
		if mem != tc.mem || room != tc.room {
			t.Errorf("%s: mem %v room %v, want %v %v", tc.name, mem/mib, room/mib, tc.mem/mib, tc.room/mib)
		}
	}
	if _, limit := memSample(); limit <= 0 {
		t.Errorf("memSample limit %d, want the runtime's soft limit", limit)
	}
}
