package heat

import "time"

// Recent turns the cumulative counts of successive Top calls into each
// key's plain rate over the interval between them. Rate lags a step (63%
// after one Window); Recent shows it in full one interval after it began,
// at the price of more noise, so a reader can tell a key still climbing
// from one that has settled.
//
// A Recent is owned by one caller (a node's reporter). Pass it every key
// Top returns, not just the few reported: it remembers the keys of its last
// call, so it is bounded by the Tracker's capacity.
type Recent struct {
	at     time.Time
	counts map[uint64]uint64
}

// Fill sets Recent on each of keys, as of now, from the counts seen at the
// previous call. A key admitted since then (not seen, or its count went
// down: evicted and admitted again) gets its count over the whole interval,
// a lower bound, since it was counted only from its admission. On the first
// call, or when no time has passed, Recent is 0: unknown.
func (r *Recent) Fill(now time.Time, keys []KeyRate) {
	dt := now.Sub(r.at).Seconds()
	known := !r.at.IsZero() && dt > 0
	next := make(map[uint64]uint64, len(keys))
	for i := range keys {
		k := &keys[i]
		next[k.Hash] = k.Count
		k.Recent = 0
		if !known {
			continue
		}
		n := k.Count
		if prev, ok := r.counts[k.Hash]; ok && k.Count >= prev {
			n -= prev
		}
		k.Recent = float64(n) / dt
	}
	r.at, r.counts = now, next
}
