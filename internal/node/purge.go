package node

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/purge"
)

// purgeApplier applies the invalidation log to the node's store.
type purgeApplier struct{ n *Node }

var _ purge.Applier = purgeApplier{}

// ApplyPurge drops (or softens) what one log entry names.
func (a purgeApplier) ApplyPurge(e purge.Entry) {
	if e.Rev > a.n.lastPurge.Load() {
		a.n.lastPurge.Store(e.Rev) // only the follower's goroutine writes it
	}
	s := a.n.store
	switch e.Kind {
	case purge.KindKey:
		keys, err := a.n.siteKeys(e.Value, true)
		if err != nil {
			a.n.cfg.Logger.Warn("purge of an unusable key ignored", "rev", e.Rev, "key", e.Value, "err", err)
			return
		}
		for _, base := range keys {
			s.PurgeKey(base, e.Soft)
		}
	case purge.KindTag:
		s.PurgeTag(e.Value, e.Soft)
	case purge.KindPrefix:
		prefixes, _ := a.n.siteKeys(e.Value, false) // never an error
		for _, p := range prefixes {
			s.PurgePrefix(p, e.Soft)
		}
	case purge.KindAll:
		s.PurgeAll(e.Soft)
	}
}

// Flush drops everything: the node fell behind a compaction of the log.
func (a purgeApplier) Flush() {
	a.n.store.PurgeAll(false)
}

// keyOfURL turns a purge's key (a path, or a full URL) into a cache key
// under the origin's host.
func (n *Node) keyOfURL(v string) (string, error) { return n.keyOfURLOn(n.origin.Host, v) }

// keyOfURLOn is keyOfURL for a request with Host host (which only KeyHost
// keeps in the key).
func (n *Node) keyOfURLOn(host, v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil {
		return "", err
	}
	if u.Path == "" {
		return "", errors.New("no path")
	}
	return n.baseKey(&http.Request{Method: http.MethodGet, URL: u, Host: host})
}

// onPurgeApplied runs on the follower's goroutine: remember the revision and
// wake the publisher and anyone waiting for it. It never blocks.
func (n *Node) onPurgeApplied(rev int64) {
	n.purgeRev.Store(rev)
	n.kickPublisher()
	close(*n.appliedSignal.Swap(newSignal()))
}

func newSignal() *chan struct{} {
	c := make(chan struct{})
	return &c
}

// kickPublisher wakes publishRecord without waiting.
func (n *Node) kickPublisher() {
	select {
	case n.publishRev <- struct{}{}:
	default:
	}
}

// publishRecord writes the latest applied purge revision into this node's
// member record, so "purged everywhere" is observable, and with it what the
// node has owned (publishOwned). Only the latest state matters: a slow etcd
// write coalesces many purges.
func (n *Node) publishRecord(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.publishRev:
		}
		rev := n.purgeRev.Load()
		if err := n.members.Update(ctx, func(m *cluster.Member) { m.PurgeRev = rev; n.publishOwned(m) }); err != nil && ctx.Err() == nil {
			n.cfg.Logger.Debug("publish purge revision", "rev", rev, "err", err)
		}
	}
}

// waitPurged waits, at most d, until this node has applied the log up to
// rev. A replica filling from this node sends the revision it has applied,
// so it never refills a purged object from a copy this node has not purged
// yet.
func (n *Node) waitPurged(ctx context.Context, rev int64, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		sig := *n.appliedSignal.Load()
		if n.follower.Applied() >= rev {
			return true
		}
		select {
		case <-sig:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// invalidate drops base here at once and appends it to the purge log so
// every node (replicas included) drops it too. The append runs in the
// background, coalesced and rate-bounded (invalidator); the serving path
// never waits on etcd.
func (n *Node) invalidate(base, path string) {
	n.store.PurgeKey(base, false)
	if n.cfg.KeyHost {
		path = base // the key names its site ("news.example/a"), as siteKeys reads it
	}
	n.inv.add(path)
}

// trustedFresh reports whether a fresh entry may be served as fresh: when
// the node has lost the purge log for longer than the bound, an entry older
// than the bound may hide a purge it missed, so it is served only as stale
// while it is revalidated.
func (n *Node) trustedFresh(respTime, now time.Time) bool {
	return n.follower.Connected() || now.Sub(respTime) <= n.cfg.PurgeMaxDisconnect
}

// atomicSignal is a broadcast: closed and replaced on every applied purge.
type atomicSignal = atomic.Pointer[chan struct{}]
