package httpcache

// Range calls fn with every entry stored (variants and near copies
// included) until fn returns false. It does not block writers: entries
// stored or dropped meanwhile may or may not be seen. A draining node
// walks its store with it to hand its objects to their new owners.
func (s *Store) Range(fn func(e *Entry) bool) {
	for _, e := range s.cache.All() {
		if e.marker {
			continue
		}
		if !fn(e) {
			return
		}
	}
}
