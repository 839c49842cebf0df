package autopilot

import (
	"cmp"
	"slices"
	"time"
)

// keyState is the policy's memory of one key: only keys holding replicas,
// with replicas in flight, or with an action recent enough to matter.
type keyState struct {
	key        string
	lastOut    time.Time // last scale-out
	lastIn     time.Time // last scale-in for load (not for node health)
	belowSince time.Time // since when the rate has been under the scale-in band; zero if it is not
	unmet      int       // members the last scale-out wanted but did not get, 0 if none

	pending  map[string]time.Time // replicas asked for, not yet seen, by node: when asked
	released map[string]bool      // replicas let go but still seen, by node
}

func (st *keyState) lastAction() time.Time {
	if st.lastOut.After(st.lastIn) {
		return st.lastOut
	}
	return st.lastIn
}

// maxKeys bounds the per-key states the policy keeps: keys holding replicas
// are kept regardless (they are bounded by MaxExtraReplicas and by etcd);
// others, which only remember recent actions, are forgotten oldest first
// beyond this bound.
func (p *Policy) maxKeys() int { return 4*p.cfg.MaxExtraReplicas + 64 }

// prune forgets keys that hold no replicas and whose last action no longer
// gates anything, then enforces maxKeys.
func (p *Policy) prune(t *tick) {
	memory := max(p.cfg.Cooldown, p.cfg.MinInterval)
	holding := make(map[uint64]bool)
	for _, kv := range t.keys {
		st := kv.st
		if st == nil {
			continue
		}
		if len(kv.active) > 0 || len(st.pending) > 0 || len(st.released) > 0 {
			holding[kv.hash] = true
			continue
		}
		if t.now.Sub(st.lastAction()) >= memory {
			delete(p.keys, kv.hash)
		}
	}
	over := len(p.keys) - p.maxKeys()
	if over <= 0 {
		return
	}
	type aged struct {
		hash uint64
		last time.Time
	}
	var idle []aged
	for h, st := range p.keys {
		if !holding[h] {
			idle = append(idle, aged{h, st.lastAction()})
		}
	}
	slices.SortFunc(idle, func(a, b aged) int {
		if c := a.last.Compare(b.last); c != 0 {
			return c
		}
		return cmp.Compare(a.hash, b.hash)
	})
	for _, a := range idle[:min(over, len(idle))] {
		delete(p.keys, a.hash)
		p.stats.ForgottenKeys++
	}
}
