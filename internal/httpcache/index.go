package httpcache

import (
	"slices"
	"sync"
)

// refIndex maps purge tags, and base keys that have Vary variants, to the
// stored entries that carry them, so that PurgeTag and Delete need not scan
// the store. Each (tag, key) or (base, variant key) pair is one ref; the
// number of refs is bounded.
//
// A ref points at the entry that created it, and remove drops only refs that
// still point at the entry being removed: when an entry is replaced under the
// same key, the replacement re-points the refs it shares, and the deletion of
// the old value (which otter reports after the write, under the same bucket
// lock) leaves them alone.
type refIndex struct {
	max int // bound on refs, fixed at construction

	mu       sync.Mutex                   // guards tags, variants and refs
	tags     map[string]map[string]*Entry // tag -> key -> entry
	variants map[string]map[string]*Entry // base key -> variant key -> entry
	refs     int                          // pairs in tags and variants
}

func newRefIndex(limit int) *refIndex {
	return &refIndex{
		max:      limit,
		tags:     make(map[string]map[string]*Entry),
		variants: make(map[string]map[string]*Entry),
	}
}

// indexed reports whether e has refs in the index.
func indexed(e *Entry) bool {
	return !e.marker && (len(e.Tags) > 0 || e.Key != e.BaseKey)
}

// add indexes e under its tags and, for a variant, under its base key. It
// adds all of e's refs or, when that would pass the bound, none and returns
// false.
func (x *refIndex) add(e *Entry) bool {
	variant := e.Key != e.BaseKey
	x.mu.Lock()
	defer x.mu.Unlock()
	need := 0
	for i, t := range e.Tags {
		if _, ok := x.tags[t][e.Key]; !ok && !slices.Contains(e.Tags[:i], t) {
			need++
		}
	}
	if _, ok := x.variants[e.BaseKey][e.Key]; variant && !ok {
		need++
	}
	if x.refs+need > x.max {
		return false
	}
	for _, t := range e.Tags {
		link(x.tags, t, e)
	}
	if variant {
		link(x.variants, e.BaseKey, e)
	}
	x.refs += need
	return true
}

func link(m map[string]map[string]*Entry, k string, e *Entry) {
	set := m[k]
	if set == nil {
		set = make(map[string]*Entry, 1)
		m[k] = set
	}
	set[e.Key] = e
}

// remove drops the refs that point at e.
func (x *refIndex) remove(e *Entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, t := range e.Tags {
		x.refs -= unlink(x.tags, t, e)
	}
	if e.Key != e.BaseKey {
		x.refs -= unlink(x.variants, e.BaseKey, e)
	}
}

func unlink(m map[string]map[string]*Entry, k string, e *Entry) int {
	set := m[k]
	if set[e.Key] != e {
		return 0
	}
	delete(set, e.Key)
	if len(set) == 0 {
		delete(m, k)
	}
	return 1
}

// tagKeys returns the keys of the entries tagged tag.
func (x *refIndex) tagKeys(tag string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return keysOf(x.tags[tag])
}

// variantKeys returns the keys of the variants of base.
func (x *refIndex) variantKeys(base string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return keysOf(x.variants[base])
}

func keysOf(set map[string]*Entry) []string {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	return keys
}

// len returns the number of refs.
func (x *refIndex) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.refs
}
