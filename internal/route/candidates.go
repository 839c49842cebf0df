package route

// Candidates appends to dst, best first, up to cap(dst) (at most 8) live
// peers for hash in rendezvous order, skipping suspected peers unless all
// are: the owner, then where the key goes if the owner leaves. It is how a
// new owner finds the previous one (warm handoff). It does not allocate
// when dst has room.
func (r *Router) Candidates(hash uint64, dst []Peer) []Peer {
	var buf [8]*peer
	n := min(cap(dst)-len(dst), len(buf))
	if n <= 0 {
		return dst
	}
	for _, p := range r.tab.Load().rank(hash, buf[:0:n], r.cfg.Now().UnixNano()) {
		dst = append(dst, p.Peer)
	}
	return dst
}

// Outranks reports whether the node a has a higher rendezvous score for
// hash than the node b: whether a would own the key if both were live.
func Outranks(a, b string, hash uint64) bool {
	return score(seedOf(a), hash) > score(seedOf(b), hash)
}
