package autopilot

import (
	"cmp"
	"slices"
	"time"
)

// bucket is a token bucket of new replicas.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time // last refill; zero before the first
}

// refill adds the tokens earned since the last refill. The bucket starts
// full; time going backwards earns nothing.
func (b *bucket) refill(now time.Time) {
	if b.last.IsZero() {
		b.tokens, b.last = b.burst, now
		return
	}
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+b.rate*now.Sub(b.last).Seconds())
		b.last = now
	}
}

// grant hands out new replicas to the candidates, one at a time to the key
// with the highest rate per member, while the budget and the cap on extra
// replicas last, placing each on a node.
func (p *Policy) grant(t *tick) {
	room := p.cfg.MaxExtraReplicas - t.extra
	open := slices.Clone(t.candidates)
	for len(open) > 0 {
		i := busiest(open)
		kv := open[i]
		if room <= 0 || p.budget.tokens < 1 {
			break
		}
		node, where := p.place(t, kv)
		if node == "" {
			p.stats.PlacementDenied += uint64(kv.need - kv.granted)
			open = slices.Delete(open, i, i+1)
			continue
		}
		st := p.state(kv)
		if st.pending == nil {
			st.pending = make(map[string]time.Time)
		}
		st.pending[node] = t.now
		t.placed[node]++
		from := source(t, kv)
		if from != "" {
			where += "; copy from " + from
		}
		t.outs = append(t.outs, Action{
			Kind: ScaleOut, Key: kv.key, Hash: kv.hash, Node: node, From: from,
			Reason:  kv.scaleOutReason(&p.cfg) + "; " + where,
			Desired: kv.want, Current: kv.members,
		})
		p.stats.ScaleOuts++
		p.budget.tokens--
		room--
		t.extra++
		kv.granted++
		if kv.granted == kv.need {
			open = slices.Delete(open, i, i+1)
		}
	}
	for _, kv := range open {
		short := uint64(kv.need - kv.granted)
		if room <= 0 {
			p.stats.CapDenied += short
		} else {
			p.stats.BudgetDenied += short
		}
	}
	for _, kv := range t.candidates {
		if kv.granted == 0 {
			continue // no action taken: the key may try again next tick
		}
		kv.st.lastOut = t.now
		kv.st.unmet = 0
		if kv.granted < kv.need {
			kv.st.unmet = kv.want
		}
	}
}

// busiest returns the index of the candidate to grant next: one still
// short of its operator pin first, then the highest rate per member,
// counting replicas granted this tick; ties go to the lower hash.
func busiest(open []*keyView) int {
	best := 0
	short := func(kv *keyView) bool { return kv.pinned && kv.members+kv.granted < kv.floor }
	for i, kv := range open[1:] {
		b := open[best]
		if a, bs := short(kv), short(b); a != bs {
			if a {
				best = i + 1
			}
			continue
		}
		l, r := kv.rate/float64(kv.members+kv.granted), b.rate/float64(b.members+b.granted)
		if l > r || (l == r && cmp.Less(kv.hash, b.hash)) {
			best = i + 1
		}
	}
	return best
}
