// Package httpcache holds RFC 9111 freshness, keys, entries and the bounded store.
//
// The pieces, in the order a response flows through them:
//
//   - [ParseCacheControl] reads Cache-Control into [Directives].
//   - [BaseKey] and [VariantKey] name a response; [KeyHash] hashes a name for
//     routing and heat tracking.
//   - [Storable] decides whether a shared cache may keep a response, and
//     [NewEntry] turns it into an immutable [Entry] with its freshness
//     lifetime, stale windows and purge tags.
//   - [Store] keeps entries within a byte budget and purges them by key,
//     tag or prefix, hard or soft.
//   - [ServeEntry] writes an entry back, answering conditional and range
//     requests.
//
// The store is built on otter (github.com/maypok86/otter/v2) because it
// bounds by weight (our bytes) with lock-free reads and an eviction policy,
// W-TinyLFU with a frequency sketch guarding admission to the main space, that
// keeps the hot set when a crawler or a cache-busting scan streams one-hit
// keys through a node. Its atomic deletion listener lets the tag index drop a
// key under the same bucket lock that removed it, so the index can never point
// at an entry the cache no longer holds, nor miss one it does.
package httpcache
