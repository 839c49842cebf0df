package httpcache

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	defaultMaxBytes        = 256 << 20
	defaultMaxTagsPerEntry = 32
	defaultRevalidateGrace = 10 * time.Minute
	// forever is the "no expiration" of Vary markers.
	forever = 100 * 365 * 24 * time.Hour
)

// StoreConfig configures a Store. Zero fields mean the documented defaults.
type StoreConfig struct {
	// MaxBytes bounds the sum of Entry.Size of the stored entries.
	// Default 256 MiB.
	MaxBytes int64
	// MaxEntryBytes is the largest Entry.Size accepted; larger entries are
	// rejected (reason "too_large"). Default MaxBytes/16, so that no single
	// object pushes out more than a sixteenth of the cache; at most
	// MaxBytes and 4 GiB.
	MaxEntryBytes int64
	// MaxTagsPerEntry is the most purge tags an entry may carry; an entry
	// with more is rejected ("too_many_tags") rather than stored with tags
	// a purge would miss. Default 32.
	MaxTagsPerEntry int
	// MaxIndexRefs bounds the tag and variant index, in (tag, key) and
	// (base, variant) pairs. An entry whose refs do not fit is rejected
	// ("tag_index_full"). Default MaxBytes/1024, at least 4096.
	MaxIndexRefs int
	// MaxNearBytes bounds the sum of Entry.Size of the near copies stored
	// (entries with Near set, Reserve not), within MaxBytes; one beyond it is
	// rejected ("near_budget"). Zero means no near copies.
	MaxNearBytes int64
	// MaxReserveBytes bounds the sum of Entry.Size of the reserves stored
	// (near copies with Reserve set), within MaxBytes and apart from
	// MaxNearBytes, so that the many cold objects a router relays never
	// crowd out the few hot ones it keeps; a reserve beyond it is rejected
	// ("reserve_budget"). Zero means no reserves.
	MaxReserveBytes int64
	// RevalidateGrace is how long an entry with a validator (ETag or
	// Last-Modified) is kept after it can no longer be served, so that a
	// refresh can be a conditional request. Default 10 minutes; negative
	// keeps none. Entries without validators go when their stale windows
	// end.
	RevalidateGrace time.Duration
	// Registerer receives the store's metrics. Nil means no metrics.
	Registerer prometheus.Registerer
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Store is the bounded in-memory cache of entries, safe for concurrent use.
// It keeps at most MaxBytes of Entry.Size, evicting by otter's W-TinyLFU
// policy and dropping entries once they are of no further use. A response
// with Vary is stored as a marker at its base key, naming the Vary fields,
// and one entry per variant key.
//
// Purges come hard or soft. A hard purge drops entries. A soft purge
// replaces each with a copy whose Lifetime ends now, keeping its stale
// windows and validators: within stale-while-revalidate it is served while
// one refresh runs, and the refresh can be a conditional request. Purge
// counts are of entries, not Vary markers.
//
// Metrics, when StoreConfig.Registerer is set: crowdpilot_store_bytes,
// crowdpilot_store_entries, crowdpilot_store_index_refs (gauges),
// crowdpilot_store_evictions_total{reason="size"|"expired"} and
// crowdpilot_store_rejected_total{reason} (see Put).
type Store struct {
	cache    *otter.Cache[string, *Entry]
	index    *refIndex
	now      func() time.Time
	maxEntry int64
	maxTags  int
	grace    time.Duration
	m        *storeMetrics
	journal  journal // recent purges, for fills in flight (PutUnlessPurged)
	maxNear  int64
	near     leased // near copies stored
	maxRes   int64
	reserve  leased // reserves stored
	close    sync.Once
}

// NewStore returns an empty store configured by cfg, or an error when cfg is
// invalid or its metrics cannot be registered.
func NewStore(cfg StoreConfig) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("httpcache: store config: %w", err)
	}
	s := &Store{
		index:    newRefIndex(cfg.MaxIndexRefs),
		now:      cfg.Now,
		maxEntry: cfg.MaxEntryBytes,
		maxTags:  cfg.MaxTagsPerEntry,
		grace:    cfg.RevalidateGrace,
		maxNear:  cfg.MaxNearBytes,
		maxRes:   cfg.MaxReserveBytes,
		m:        newStoreMetrics(),
	}
	opts := &otter.Options[string, *Entry]{
		MaximumWeight: uint64(cfg.MaxBytes),
		Weigher: func(_ string, e *Entry) uint32 {
			return uint32(min(e.Size(), math.MaxUint32))
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(oe otter.Entry[string, *Entry]) time.Duration {
			return s.keepFor(oe.Value, s.now())
		}),
		OnAtomicDeletion: s.deleted,
	}
	if s.now == nil {
		s.now = time.Now
	} else {
		opts.Clock = clock(s.now)
	}
	cache, err := otter.New(opts)
	if err != nil {
		return nil, fmt.Errorf("httpcache: new otter cache: %w", err)
	}
	s.cache = cache
	if err := s.m.register(cfg.Registerer, s); err != nil {
		cache.StopAllGoroutines()
		return nil, fmt.Errorf("httpcache: register store metrics: %w", err)
	}
	return s, nil
}

// validate checks cfg and fills in defaults.
func (c *StoreConfig) validate() error {
	if c.MaxBytes < 0 || c.MaxEntryBytes < 0 || c.MaxTagsPerEntry < 0 || c.MaxIndexRefs < 0 || c.MaxNearBytes < 0 || c.MaxReserveBytes < 0 {
		return errors.New("negative bound")
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = defaultMaxBytes
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = min(c.MaxBytes/16, math.MaxUint32)
	}
	if c.MaxEntryBytes > c.MaxBytes || c.MaxEntryBytes > math.MaxUint32 {
		return fmt.Errorf("MaxEntryBytes %d above MaxBytes %d or 4 GiB", c.MaxEntryBytes, c.MaxBytes)
	}
	if c.MaxTagsPerEntry == 0 {
		c.MaxTagsPerEntry = defaultMaxTagsPerEntry
	}
	if c.MaxIndexRefs == 0 {
		c.MaxIndexRefs = int(max(c.MaxBytes/1024, 4096))
	}
	if c.RevalidateGrace == 0 {
		c.RevalidateGrace = defaultRevalidateGrace
	}
	return nil
}

// clock adapts StoreConfig.Now to otter. It does not tick: with an injected
// clock, expired entries are hidden from reads and removed by maintenance
// after writes rather than by a periodic sweep.
type clock func() time.Time

func (c clock) NowNano() int64                      { return c().UnixNano() }
func (c clock) Tick(time.Duration) <-chan time.Time { return nil }

// Get returns the entry for base that matches reqHeader: the entry at base,
// or, when base holds a Vary marker, the variant at VariantKey(base, the
// marker's Vary names, reqHeader). Entries are returned whatever their State.
func (s *Store) Get(base string, reqHeader http.Header) (*Entry, bool) {
	e, ok := s.cache.GetIfPresent(base)
	if !ok {
		return nil, false
	}
	if !e.marker {
		return e, true
	}
	return s.cache.GetIfPresent(VariantKey(base, e.Vary, reqHeader))
}

// VariantOf is the key the entry for base matching reqHeader is stored
// under, as far as the store knows: the variant key when base holds a Vary
// marker, else base itself.
func (s *Store) VariantOf(base string, reqHeader http.Header) string {
	if e, ok := s.cache.GetIfPresent(base); ok && e.marker {
		return VariantKey(base, e.Vary, reqHeader)
	}
	return base
}

// Put stores e.Shareable() (e without Set-Cookie), replacing any entry under
// e.Key; e itself is not modified. It rejects, and counts in
// crowdpilot_store_rejected_total{reason}, entries that are larger than
// MaxEntryBytes ("too_large"), carry too many tags ("too_many_tags") or do
// not fit the index ("tag_index_full"), vary on "*" ("vary_star"), were built
// from a HEAD response ("head": their body is not the object; fetch HEAD
// misses with GET), are of no use already ("expired": stale beyond their
// windows, without validators), or are inconsistent ("invalid": no key, or a
// Vary entry stored under its base key, or the reverse). A rejected Put also
// drops the entry previously under e.Key, which the new response supersedes.
// It reports whether e was stored. A fill that ran while purges were applied
// uses PutUnlessPurged instead.
func (s *Store) Put(e *Entry) bool {
	if reason := s.check(e); reason != "" {
		s.m.rejected(reason)
		if reason != "invalid" && reason != "head" {
			s.cache.Invalidate(e.Key)
		}
		return false
	}
	e = e.Shareable()
	if len(e.Vary) > 0 {
		s.putMarker(e)
	}
	var full, wasMarker bool
	s.cache.Compute(e.Key, func(old *Entry, found bool) (*Entry, otter.ComputeOp) {
		wasMarker = found && old.marker
		if indexed(e) && !s.index.add(e) {
			full = true
			return old, otter.InvalidateOp
		}
		if l := s.leasedOf(e); l != nil {
			// Counted under the key's lock, before the deletion listener
			// of the entry it replaces runs.
			l.add(e.Size(), 1)
		}
		return e, otter.WriteOp
	})
	if full {
		s.m.rejected("tag_index_full")
	}
	if wasMarker {
		s.dropVariants(e.BaseKey, "")
	}
	return !full
}

// check returns why e may not be stored, or "".
func (s *Store) check(e *Entry) string {
	switch {
	case e == nil || e.Key == "" || e.marker:
		return "invalid"
	case slices.Contains(e.Vary, "*"):
		return "vary_star"
	case (len(e.Vary) > 0) == (e.Key == e.BaseKey):
		return "invalid"
	case e.head:
		return "head"
	case e.Size() > s.maxEntry:
		return "too_large"
	case len(e.Tags) > s.maxTags:
		return "too_many_tags"
	case s.keepFor(e, s.now()) <= 0:
		return "expired"
	case !e.Near.IsZero() && !e.Reserve && s.near.bytes.Load()+e.Size() > s.maxNear:
		return "near_budget"
	case !e.Near.IsZero() && e.Reserve && s.reserve.bytes.Load()+e.Size() > s.maxRes:
		return "reserve_budget"
	}
	return ""
}

// putMarker makes sure base holds a marker for e's Vary names. When the names
// change, the variants stored under the old names are dropped.
func (s *Store) putMarker(e *Entry) {
	var changed bool
	s.cache.Compute(e.BaseKey, func(old *Entry, found bool) (*Entry, otter.ComputeOp) {
		if found && old.marker && slices.Equal(old.Vary, e.Vary) {
			return old, otter.CancelOp
		}
		changed = found && old.marker
		m := &Entry{Key: e.BaseKey, BaseKey: e.BaseKey, Vary: e.Vary, marker: true}
		m.size = m.computeSize()
		return m, otter.WriteOp
	})
	if changed {
		s.dropVariants(e.BaseKey, e.Key)
	}
}

// dropVariants invalidates the variants of base, except keep, and returns
// how many there were.
func (s *Store) dropVariants(base, keep string) int {
	n := 0
	for _, k := range s.index.variantKeys(base) {
		if k == keep {
			continue
		}
		if _, ok := s.cache.Invalidate(k); ok {
			n++
		}
	}
	return n
}

// keepFor is how long from now e stays useful: its remaining freshness, its
// longer stale window and, with a validator, the revalidation grace.
func (s *Store) keepFor(e *Entry, now time.Time) time.Duration {
	if e.marker {
		return forever
	}
	if !e.Near.IsZero() {
		return min(e.Near.Sub(now), forever) // a near copy lapses with its lease
	}
	d := satAdd(e.TTL(now), max(e.SWR, e.SIE))
	if s.grace > 0 && (e.ETag != "" || e.LastModified != "") {
		d = satAdd(d, s.grace)
	}
	return min(d, forever)
}

// Delete drops base and all its variants, and returns how many entries went.
func (s *Store) Delete(base string) int {
	n := 0
	if e, ok := s.cache.Invalidate(base); ok && !e.marker {
		n++
	}
	return n + s.dropVariants(base, "")
}

// PurgeKey purges base and all its variants and returns how many entries
// there were. A hard purge drops them; a soft one makes them stale now.
func (s *Store) PurgeKey(base string, soft bool) int {
	s.journal.record(purgeKey, base)
	if !soft {
		return s.Delete(base)
	}
	return s.purge(append(s.index.variantKeys(base), base), true)
}

// PurgeTag purges the entries tagged tag, hard or soft, and returns how many
// there were.
func (s *Store) PurgeTag(tag string, soft bool) int {
	s.journal.record(purgeTag, tag)
	return s.purge(s.index.tagKeys(tag), soft)
}

// PurgePrefix purges the entries whose base key starts with prefix, hard or
// soft, and returns how many there were. It scans the whole store.
func (s *Store) PurgePrefix(prefix string, soft bool) int {
	s.journal.record(purgePrefix, prefix)
	var keys []string
	for k, e := range s.cache.All() {
		if strings.HasPrefix(e.BaseKey, prefix) {
			keys = append(keys, k)
		}
	}
	return s.purge(keys, soft)
}

// PurgeAll purges every entry, hard or soft, and returns how many there were.
func (s *Store) PurgeAll(soft bool) int {
	s.journal.record(purgeAll, "")
	var keys []string
	for k := range s.cache.Keys() {
		keys = append(keys, k)
	}
	return s.purge(keys, soft)
}

// purge hard- or soft-purges keys and returns how many entries (not Vary
// markers) it purged. A hard purge also drops markers.
func (s *Store) purge(keys []string, soft bool) int {
	n := 0
	now := s.now()
	for _, k := range keys {
		if soft {
			if s.soften(k, now) {
				n++
			}
		} else if e, ok := s.cache.Invalidate(k); ok && !e.marker {
			n++
		}
	}
	return n
}

// soften replaces the entry at key with a copy that is stale at now but keeps
// its stale windows, so that it is served (within stale-while-revalidate)
// while one refresh runs, and can be revalidated with its validators. It
// reports whether key held an entry.
func (s *Store) soften(key string, now time.Time) bool {
	found := false
	s.cache.ComputeIfPresent(key, func(old *Entry) (*Entry, otter.ComputeOp) {
		if old.marker {
			return old, otter.CancelOp
		}
		found = true
		if !old.Near.IsZero() {
			return old, otter.InvalidateOp // a near copy is refilled from its owner, not softened
		}
		ne := old.stale(now)
		if ne == old {
			return old, otter.CancelOp
		}
		// Re-point the refs old holds; none are new, so this cannot fail.
		if indexed(ne) && !s.index.add(ne) {
			return old, otter.InvalidateOp
		}
		return ne, otter.WriteOp
	})
	return found
}

// deleted is otter's atomic deletion listener: it runs under the bucket lock
// of the key, after a value is removed or replaced.
func (s *Store) deleted(ev otter.DeletionEvent[string, *Entry]) {
	if indexed(ev.Value) {
		s.index.remove(ev.Value)
	}
	if l := s.leasedOf(ev.Value); l != nil {
		l.add(-ev.Value.Size(), -1)
	}
	switch ev.Cause {
	case otter.CauseOverflow:
		s.m.evictedSize.Inc()
	case otter.CauseExpiration:
		s.m.evictedExpired.Inc()
	}
}

// Bytes returns the weighted size of the store (sum of Entry.Size).
func (s *Store) Bytes() int64 { return int64(s.cache.WeightedSize()) }

// NearBytes is the bytes of near copies stored (within MaxNearBytes).
func (s *Store) NearBytes() int64 { return s.near.bytes.Load() }

// NearLen is the number of near copies stored.
func (s *Store) NearLen() int64 { return s.near.n.Load() }

// ReserveBytes is the bytes of reserves stored (within MaxReserveBytes).
func (s *Store) ReserveBytes() int64 { return s.reserve.bytes.Load() }

// ReserveLen is the number of reserves stored.
func (s *Store) ReserveLen() int64 { return s.reserve.n.Load() }

// leased counts the entries of one leased kind (near copies, reserves).
type leased struct{ bytes, n atomic.Int64 }

func (l *leased) add(bytes, n int64) { l.bytes.Add(bytes); l.n.Add(n) }

// leasedOf is the count e belongs to, or nil for an ordinary entry.
func (s *Store) leasedOf(e *Entry) *leased {
	switch {
	case e.Near.IsZero():
		return nil
	case e.Reserve:
		return &s.reserve
	}
	return &s.near
}

// Len returns the approximate number of stored items, Vary markers included.
func (s *Store) Len() int { return s.cache.EstimatedSize() }

// Close stops the store's background work and unregisters its metrics. The
// store stays readable.
func (s *Store) Close() {
	s.close.Do(func() {
		s.cache.StopAllGoroutines()
		s.m.unregister()
	})
}

// satAdd adds durations, saturating instead of overflowing.
func satAdd(a, b time.Duration) time.Duration {
	c := a + b
	switch {
	case a > 0 && b > 0 && c < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && c >= 0:
		return math.MinInt64
	}
	return c
}
