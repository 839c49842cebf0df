// Package route decides which node serves a key: rendezvous (HRW) hashing over
// the live peers, replica sets, power-of-two-choices picking, and forwarding
// with failover.
//
// route does not know about etcd: the node feeds it peer lists and replica
// sets from its watches, and it answers from immutable snapshots without
// locks on the serving path.
package route

import "github.com/cespare/xxhash/v2"

// Peer is one node as routing sees it.
type Peer struct {
	ID   string
	Addr string // what peers dial: the data listener host:port, or the peer listener's with node-to-node TLS
	Zone string
	// Labels are the node's operator labels in their canonical form (see
	// FormatLabels); tenant isolation keeps a tenant on nodes carrying its
	// labels.
	Labels string
	// Draining nodes are left out of every tenant's node set.
	Draining bool
}

// seedOf is the per-peer half of the rendezvous score, computed once per
// membership change so that ranking a key costs one mix per peer.
func seedOf(id string) uint64 { return xxhash.Sum64String(id) }

// score is the rendezvous weight of a peer (by seed) for a key hash. The
// splitmix64 finaliser spreads the XOR of two good hashes into a uniform
// 64-bit value, so each peer wins an equal share of keys and adding a peer
// moves only the keys it now wins.
func score(seed, keyHash uint64) uint64 {
	z := seed ^ keyHash
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
