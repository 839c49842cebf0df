package node

// Members lost without a drain. etcd deletes a member's record when its
// lease lapses, which happens both when the node dies and when etcd itself
// is too slow to renew leases (a stalled disk, an overloaded etcd): then
// every node's record can vanish at once while every node is alive and
// serving. Routing on that view would make each node the owner of every
// key, and a cold crowd would cost the origin a fetch per node. So a member
// whose record vanishes without having drained is held in the routing view
// for one member TTL: if it re-registers within it (etcd recovered), no
// key ever moved; if it is dead, forwards to it fail fast and the routers'
// suspicion skips it (route.Admit), and once the hold ends its keys move
// to the next owners, which warm-hand them over as on any leave. A node
// that drains (Shutdown) is dropped at once.

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
)

// lostPeers remembers the last snapshot's members and the ones that left
// it without a drain, for at most hold each. Bounded by the cluster's size:
// only members of the previous snapshot can be lost.
type lostPeers struct {
	hold time.Duration

	mu      sync.Mutex // guards the fields below
	prev    map[string]cluster.Member
	lost    map[string]lostPeer
	timer   *time.Timer
	stopped bool
}

type lostPeer struct {
	m     cluster.Member
	since time.Time
}

func newLostPeers(hold time.Duration, reg prometheus.Registerer) *lostPeers {
	l := &lostPeers{hold: hold, prev: map[string]cluster.Member{}, lost: map[string]lostPeer{}}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crowdpilot_members_held",
		Help: "Members whose etcd record vanished without a drain (a lapsed lease) that this node still routes to, for one member TTL: etcd trouble must not move every key.",
	}, func() float64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return float64(len(l.lost))
	}))
	return l
}

// view returns ms plus the members still held, and how long until the
// first hold ends (0: none held). self is never held (it is always routed).
func (l *lostPeers) view(ms []cluster.Member, self string, now time.Time) (out []cluster.Member, gone []string, next time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := make(map[string]cluster.Member, len(ms))
	for _, m := range ms {
		cur[m.ID] = m
		delete(l.lost, m.ID) // back (or never gone)
	}
	for id, m := range l.prev {
		if _, ok := cur[id]; !ok && !m.Draining && id != self {
			if _, held := l.lost[id]; !held {
				l.lost[id] = lostPeer{m: m, since: now}
			}
		}
	}
	l.prev = cur
	out = ms
	for id, lp := range l.lost {
		left := lp.since.Add(l.hold).Sub(now)
		if left <= 0 {
			delete(l.lost, id)
			gone = append(gone, id)
			continue
		}
		out = append(out, lp.m)
		if next == 0 || left < next {
			next = left
		}
	}
	return out, gone, next
}

// after runs f once d has passed, replacing an earlier wait; never after
// stop.
func (l *lostPeers) after(d time.Duration, f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	l.timer = time.AfterFunc(d, f)
}

func (l *lostPeers) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
	}
}
