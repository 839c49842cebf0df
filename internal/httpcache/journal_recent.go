package httpcache

import "strings"

// PurgedRecently reports whether one of the last n purges applied to the
// store (n at most the journal's size) dropped base: a purge of the key, of
// a prefix of it, or of everything. Tag purges are not matched, since a
// key's tags are unknown without its entry. A node that just dropped a key
// itself (an unsafe request, before the purge log has it) uses it to go to
// the origin instead of asking peers that may not have dropped it yet.
func (s *Store) PurgedRecently(base string, n int) bool {
	s.journal.mu.RLock()
	defer s.journal.mu.RUnlock()
	to := s.journal.seq.Load()
	n = min(n, journalSize-1)
	for seq := to; seq > 0 && to-seq < uint64(n); seq-- {
		rec := &s.journal.ring[seq%journalSize]
		if rec.seq != seq {
			return true // forgotten: assume the worst
		}
		switch rec.kind {
		case purgeKey:
			if rec.value == base {
				return true
			}
		case purgePrefix:
			if strings.HasPrefix(base, rec.value) {
				return true
			}
		case purgeTag:
		default:
			return true
		}
	}
	return false
}
