package node

import (
	"sync/atomic"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// Which peers a miss need not peek. An owner that misses a key peeks the
// key's next rendezvous candidates because one of them may have owned it
// before this node joined (or came back from a drain). Under a stampede
// those peers are as busy as this node, and two peeks in a row put tens of
// milliseconds before the origin fetch that every waiter needs. Most of
// the time no candidate can hold such a copy, and each node's member record
// says so: Owned is how far its membership view had reached when it first
// acted as any key's owner. A candidate whose first act as an owner came
// after it saw this node's current term as a live member (Owned at or past
// the term's start), or that never acted as one (Unowned), never owned a
// key this node outranks it for; unless it took over for a suspected owner
// (TookOver), which holds copies regardless, it is not asked. A record
// that says neither (a node from before these fields, during a rolling
// upgrade) is asked.
//
// This covers the default tenant without tenant records only: a tenant's
// node set changes without a membership change, and its past owners are
// peeked as before. A record reaches etcd a moment after the act it
// reports, so for peekSettle after this node's term starts every candidate
// is peeked, as before.

// peekSettle is how long after this node's term as an owner starts (its
// registration, or the end of its drain, seen in its own view) every
// candidate is still peeked: a candidate's record may not yet say that it
// acted as an owner just before it saw this node. What it covers is a
// candidate's watch seeing this node's record plus one write of its own
// record, milliseconds on a healthy etcd; a candidate whose first act as
// an owner fell in that moment and whose write took longer than this would
// not be asked, and that key would cost the origin one fetch.
const peekSettle = 500 * time.Millisecond

// ownerTerm is this node's current term as a live, undrained member as its
// own membership view shows it. Set from onMembers.
type ownerTerm struct {
	since atomic.Int64 // etcd revision the term started at; 0: no term (not in the view, or draining)
	at    atomic.Int64 // unix nanos this node saw the term start

	// Guarded by Node.membersMu.
	joined   int64 // the own record's create revision last seen
	draining bool  // the own record was draining when last seen

	owned    atomic.Int64 // this boot's Owned (0: not yet), as published
	tookOver atomic.Bool  // this boot's TookOver, as published
}

// observe updates the term from the own record in a snapshot.
func (t *ownerTerm) observe(ms []cluster.Member, self string, now time.Time) {
	var rec *cluster.Member
	for i := range ms {
		if ms[i].ID == self {
			rec = &ms[i]
			break
		}
	}
	switch {
	case rec == nil || rec.Draining:
		t.since.Store(0)
	case rec.Joined != t.joined:
		t.start(rec.Joined, now) // a new registration: joined, or back after a lapsed lease
	case t.draining:
		t.start(rec.Mod, now) // undrained: the write that ended the drain
	}
	if rec == nil {
		t.joined, t.draining = 0, false
		return
	}
	t.joined, t.draining = rec.Joined, rec.Draining
}

func (t *ownerTerm) start(rev int64, now time.Time) {
	t.since.Store(rev)
	t.at.Store(now.UnixNano())
}

// actedAsOwner notes that this node acts as a key's owner (a miss filled as
// the owner, a copy adopted as one, a takeover), publishing Owned the first
// time. Never waits: the record publisher (publishRecord) writes it.
func (n *Node) actedAsOwner() {
	if n.term.owned.Load() != 0 {
		return
	}
	var rev int64 = 1 // no view (not started): as early as can be
	if n.members != nil {
		rev = max(rev, n.members.ViewRevision())
	}
	if n.term.owned.CompareAndSwap(0, rev) {
		n.kickPublisher()
	}
}

// tookOver notes a fetch from the origin in place of a suspected owner.
func (n *Node) tookOver() {
	n.m.ownerTakeovers.Inc()
	n.actedAsOwner()
	if !n.term.tookOver.Swap(true) {
		n.kickPublisher()
	}
}

// publishOwned puts this boot's Owned and TookOver into the record m.
func (n *Node) publishOwned(m *cluster.Member) {
	if o := n.term.owned.Load(); o != 0 {
		if m.Owned == 0 {
			m.Owned = o
		}
		m.Unowned = false
	}
	m.TookOver = m.TookOver || n.term.tookOver.Load()
}

// needsPeek reports whether a miss of a default-tenant key should peek the
// candidate p (see the comment at the top of this file).
func (n *Node) needsPeek(p route.Peer, ms []cluster.Member) bool {
	since := n.term.since.Load()
	if n.cfg.Tenants != nil || since == 0 || n.cfg.Now().Sub(time.Unix(0, n.term.at.Load())) < peekSettle {
		return true
	}
	for _, m := range ms {
		if m.ID == p.ID {
			return m.TookOver || !(m.Unowned || (m.Owned != 0 && m.Owned >= since))
		}
	}
	return true
}
