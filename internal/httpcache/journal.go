package httpcache

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// journalSize is how many recent purges the store remembers for fills in
// flight. A fill that started more purges ago than this is treated as
// crossed by a matching one (it is not stored): the bound costs at most a
// refetch, never a stale object.
const journalSize = 4096

// Purge kinds as the journal records them.
const (
	purgeKey uint8 = iota + 1
	purgeTag
	purgePrefix
	purgeAll
)

// journal remembers the most recent purges, so that a fill that ran while
// purges were applied can tell whether one of them was for its object. Only
// such a fill is discarded: unrelated purges and writes to other URLs leave
// every other fill alone.
type journal struct {
	seq atomic.Uint64 // purges recorded so far; the sequence number of the newest
	// mu orders purges against guarded Puts: a purge is recorded under the
	// write lock before it touches the cache, and PutUnlessPurged checks
	// and stores under the read lock, so a purge either is seen by the
	// check or runs after the Put (and then removes what was put).
	mu   sync.RWMutex
	ring [journalSize]purgeRecord // guarded by mu; seq s lives at s % journalSize
}

type purgeRecord struct {
	seq   uint64
	kind  uint8
	value string // base key, tag or prefix
}

func (j *journal) record(kind uint8, value string) {
	j.mu.Lock()
	s := j.seq.Load() + 1
	j.ring[s%journalSize] = purgeRecord{seq: s, kind: kind, value: value}
	j.seq.Store(s)
	j.mu.Unlock()
}

// crossed reports whether a purge with a sequence number in (from, to]
// matches e, or whether that span is no longer fully remembered. The caller
// holds mu (read or write).
func (j *journal) crossed(e *Entry, from, to uint64) bool {
	if to <= from {
		return false
	}
	if to-from > journalSize-1 {
		return true // forgotten: assume the worst
	}
	for s := from + 1; s <= to; s++ {
		rec := &j.ring[s%journalSize]
		if rec.seq != s {
			return true
		}
		if rec.matches(e) {
			return true
		}
	}
	return false
}

func (r *purgeRecord) matches(e *Entry) bool {
	switch r.kind {
	case purgeKey:
		return e.BaseKey == r.value
	case purgeTag:
		return slices.Contains(e.Tags, r.value)
	case purgePrefix:
		return strings.HasPrefix(e.BaseKey, r.value)
	}
	return true // purgeAll, and anything unknown
}

// PurgeSeq is the sequence number of the newest purge applied to the store.
// A fill reads it before it asks upstream and passes it to PutUnlessPurged.
func (s *Store) PurgeSeq() uint64 { return s.journal.seq.Load() }

// PutUnlessPurged stores e (see Put) unless a purge that matches it (its
// key, a prefix of it, one of its tags, or everything) was applied after
// sequence number since: the response may predate what the purge was for.
// It reports whether e was stored; a refused entry is counted in
// crowdpilot_store_rejected_total{reason="purged_in_flight"}.
func (s *Store) PutUnlessPurged(e *Entry, since uint64) bool {
	s.journal.mu.RLock()
	defer s.journal.mu.RUnlock()
	if s.journal.crossed(e, since, s.journal.seq.Load()) {
		s.m.rejected("purged_in_flight")
		return false
	}
	return s.Put(e)
}

// PurgedBetween reports whether a purge that matches e was applied with a
// sequence number in (from, to]: a caller that arrived at to must not be
// handed e, fetched at from.
func (s *Store) PurgedBetween(e *Entry, from, to uint64) bool {
	s.journal.mu.RLock()
	defer s.journal.mu.RUnlock()
	return s.journal.crossed(e, from, to)
}
