package autopilot

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// decideKey settles one key's replicas: releases for health and caps, then
// scale-in, scale-out candidacy, and renewals.
func (p *Policy) decideKey(t *tick, kv *keyView) {
	c := &p.cfg
	p.syncState(t, kv)
	p.classify(t, kv)
	kv.floor, kv.ceil = c.bounds(kv.limits)

	// A lowered cap: release the newest replicas beyond it at once.
	if over := kv.members - kv.ceil; over > 0 && len(kv.active) > 0 {
		reason := fmt.Sprintf("%d members > max %d per object", kv.members, c.MaxReplicas)
		if kv.ceil < c.MaxReplicas {
			reason = fmt.Sprintf("%d members > %d under the %s", kv.members, kv.ceil, kv.limits.capText())
		}
		p.release(t, kv, min(over, len(kv.active)), reason, kv.members-over, false)
	}

	if len(t.fresh) > 0 {
		p.scaleIn(t, kv)
		p.scaleOut(t, kv)
	} else if kv.st != nil {
		kv.st.belowSince = time.Time{} // a hold must be seen whole
	}
	p.pin(t, kv)
	t.extra += kv.members - 1

	for _, r := range kv.active {
		left := r.Expires.Sub(t.now)
		if left >= time.Duration(renewFraction*float64(c.ReplicaTTL)) {
			continue
		}
		t.renews = append(t.renews, Action{
			Kind: Renew, Key: kv.key, Hash: kv.hash, Node: r.Node,
			Reason:  p.renewReason(t, kv, left),
			Desired: kv.members, Current: kv.members,
		})
		p.stats.Renews++
	}
}

func (p *Policy) renewReason(t *tick, kv *keyView, left time.Duration) string {
	c := &p.cfg
	r := fmt.Sprintf("lease expires in %v, under 25%% of %v ttl; rate %s/s over %d members",
		left.Round(time.Millisecond), c.ReplicaTTL, fmtRate(kv.rate), kv.members)
	switch {
	case len(t.fresh) == 0:
		r += "; no fresh heat reports, holding"
	case kv.st != nil && !kv.st.belowSince.IsZero():
		r += fmt.Sprintf("; under the low watermark for %v of the %v hold", t.now.Sub(kv.st.belowSince), c.ScaleInHold)
	}
	if kv.floor > 1 && kv.members <= kv.floor {
		r += "; held by the " + kv.limits.pinText()
	}
	return r
}

// syncState reconciles the key's memory with the replicas seen: replicas
// asked for that have appeared or timed out, released ones that are gone.
func (p *Policy) syncState(t *tick, kv *keyView) {
	st := kv.st
	if st == nil {
		return
	}
	present := make(map[string]bool, len(kv.replicas))
	for _, r := range kv.replicas {
		present[r.Node] = true
	}
	for node, at := range st.pending {
		if present[node] {
			delete(st.pending, node)
		} else if t.now.Sub(at) >= p.cfg.ActuationTimeout {
			delete(st.pending, node)
			p.stats.ActuationTimeouts++
		}
	}
	for node := range st.released {
		if !present[node] {
			delete(st.released, node)
		}
	}
}

// classify sorts the key's replicas into active ones and ones to release
// because their node is gone, draining or failing, and counts the members.
func (p *Policy) classify(t *tick, kv *keyView) {
	var seen map[string]bool
	if len(kv.replicas) > 0 {
		seen = make(map[string]bool, len(kv.replicas))
	}
	var sick []Replica
	var why []string
	for _, r := range kv.replicas {
		if seen[r.Node] || r.Node == kv.owner || (kv.st != nil && kv.st.released[r.Node]) {
			continue
		}
		seen[r.Node] = true
		n, ok := t.nodes[r.Node]
		switch {
		case len(t.nodes) == 0:
			kv.active = append(kv.active, r) // membership unknown: judge no node
		case !ok:
			sick, why = append(sick, r), append(why, "is not a member")
		case n.Failing:
			sick, why = append(sick, r), append(why, "is failing")
		case n.Draining:
			sick, why = append(sick, r), append(why, "is draining")
		default:
			kv.active = append(kv.active, r)
		}
	}
	// Newest first: the order replicas are released in.
	slices.SortFunc(kv.active, func(a, b Replica) int {
		if c := b.Since.Compare(a.Since); c != 0 {
			return c
		}
		return cmp.Compare(a.Node, b.Node)
	})
	pending := 0
	if kv.st != nil {
		pending = len(kv.st.pending)
	}
	kv.members = 1 + len(kv.active) + pending
	before := kv.members + len(sick)
	for i, r := range sick {
		p.emitRelease(t, kv, r.Node, fmt.Sprintf("node %s %s", r.Node, why[i]), kv.members, before, true)
	}
}

// release lets go of the n newest active replicas.
func (p *Policy) release(t *tick, kv *keyView, n int, reason string, desired int, forLoad bool) {
	current := kv.members
	for _, r := range kv.active[:n] {
		p.emitRelease(t, kv, r.Node, reason, desired, current, !forLoad)
	}
	kv.active = kv.active[n:]
	kv.members -= n
	if forLoad {
		kv.st.lastIn = t.now
	}
}

func (p *Policy) emitRelease(t *tick, kv *keyView, node, reason string, desired, current int, forced bool) {
	st := p.state(kv)
	if st.released == nil {
		st.released = make(map[string]bool)
	}
	st.released[node] = true
	t.ins = append(t.ins, Action{
		Kind: ScaleIn, Key: kv.key, Hash: kv.hash, Node: node,
		Reason: reason, Desired: desired, Current: current,
	})
	p.stats.ScaleIns++
	if forced {
		p.stats.Released++
	}
}

// scaleIn releases replicas once the rate has stayed below the low
// watermark for the hold, outside the cooldown.
func (p *Policy) scaleIn(t *tick, kv *keyView) {
	c := &p.cfg
	low := float64(kv.members-1) * c.TargetRPS * c.LowWatermark
	if len(kv.active) == 0 || !(kv.rate < low) || kv.members <= kv.floor {
		if kv.st != nil {
			kv.st.belowSince = time.Time{}
		}
		return
	}
	st := p.state(kv)
	if st.belowSince.IsZero() {
		st.belowSince = t.now
	}
	if t.now.Sub(st.belowSince) < c.ScaleInHold || t.now.Sub(st.lastAction()) < c.Cooldown {
		return
	}
	// Keep enough members that the rate is under the high watermark, so
	// the release is not undone by the next scale-out.
	keep := max(1, ceilDiv(kv.rate, c.TargetRPS, kv.ceil), ceilDiv(kv.rate, c.TargetRPS*c.HighWatermark, kv.ceil))
	pinned := kv.floor > keep
	keep = max(keep, kv.floor)
	n := min(kv.members-keep, len(kv.active))
	if n <= 0 {
		return
	}
	reason := fmt.Sprintf("rate %s/s < %d × %s/s low watermark for %v; want %d",
		fmtRate(kv.rate), kv.members-1, fmtRate(c.TargetRPS*c.LowWatermark), t.now.Sub(st.belowSince), keep)
	if pinned {
		reason += ", held by the " + kv.limits.pinText()
	}
	p.release(t, kv, n, reason, keep, true)
	st.belowSince = time.Time{}
}

// risingFactor is how far a key's recent rate must exceed its decayed rate
// for a scale-out to be sized on it. Over a 250ms report the recent rate of
// a steady key is within a few percent (Poisson noise at hot-key rates);
// a step shows as about 1/(1−e^(−interval/window)) ≈ 1.6× at the defaults.
const risingFactor = 1.25

// scaleOut makes the key a candidate for new replicas if its rate is above
// the high watermark, or a member breaches an objective, and the timers
// allow it. grant hands out the replicas.
func (p *Policy) scaleOut(t *tick, kv *keyView) {
	c := &p.cfg
	m := kv.members
	high := float64(m) * c.TargetRPS * c.HighWatermark
	above := kv.rate > high
	breach := ""
	if kv.rate >= float64(m)*c.TargetRPS*c.LowWatermark {
		breach = p.breach(t, kv)
	}
	if !above && breach == "" {
		return
	}
	if m >= kv.ceil {
		if kv.ceil < c.MaxReplicas {
			p.stats.CapHeld++ // the operator's cap, not the policy's
		}
		return
	}
	// A key still climbing is sized on its rate over the last report
	// interval: the decayed rate shows only part of a step when it first
	// crosses the watermark, and sizing on it takes several steps, each a
	// MinInterval apart, while the owner drowns. Only a clear rise counts,
	// so the noise of a short interval never adds a replica.
	sizing := kv.rate
	if kv.recent > risingFactor*kv.rate {
		sizing, kv.rising = kv.recent, true
	}
	want := ceilDiv(sizing, c.TargetRPS, kv.ceil)
	if breach != "" {
		want++ // one step more while an objective is breached
	}
	want = min(max(want, m+1), kv.ceil)

	st := kv.st
	if st != nil {
		if t.now.Sub(st.lastIn) < c.Cooldown {
			return
		}
		if t.now.Sub(st.lastOut) < c.MinInterval {
			if st.unmet <= m {
				return
			}
			want = min(want, st.unmet) // finish the cut-short scale-out only
		}
	}
	if kv.owner == "" {
		p.stats.UnknownOwner++
		return
	}
	kv.want, kv.need = want, want-m
	kv.above, kv.breach = above, breach
	t.candidates = append(t.candidates, kv)
}

// scaleOutReason says why the key scales out; built only for keys granted
// a replica.
func (kv *keyView) scaleOutReason(c *Config) string {
	if kv.reason != "" {
		return kv.reason
	}
	r := kv.breach
	if kv.above {
		r = fmt.Sprintf("rate %s/s > %d × %s/s high watermark", fmtRate(kv.rate), kv.members, fmtRate(c.TargetRPS*c.HighWatermark))
		if kv.rising {
			r += fmt.Sprintf(", rising: %s/s over the last report", fmtRate(kv.recent))
		}
		if kv.breach != "" {
			r += "; " + kv.breach
		}
	}
	if kv.pinned {
		pin := fmt.Sprintf("%s, %d held", kv.limits.pinText(), kv.members-1)
		if r == "" {
			r = pin
		} else {
			r += "; " + pin
		}
	}
	if kv.ceil < c.MaxReplicas && kv.want == kv.ceil {
		r += "; at the " + kv.limits.capText()
	}
	kv.reason = fmt.Sprintf("%s; want %d", r, kv.want)
	return kv.reason
}

// saturatedCPU is the share of its CPU limit at which a member counts as
// saturated.
const saturatedCPU = 0.9

// breach returns why a member of the key breaches an objective, or "". A
// member at its CPU limit always does: a saturated node counts only the
// requests it gets to, so the key's rate understates its demand, and
// scaling on the rate alone would grow the set one counted step at a time
// while the owner drowns.
func (p *Policy) breach(t *tick, kv *keyView) string {
	c := &p.cfg
	members := make([]string, 0, 1+len(kv.active))
	if kv.owner != "" {
		members = append(members, kv.owner)
	}
	for _, r := range kv.active {
		members = append(members, r.Node)
	}
	slices.Sort(members)
	for _, n := range members {
		r := t.fresh[n]
		if r == nil {
			continue
		}
		if c.P99Objective > 0 && r.P99 > c.P99Objective {
			return fmt.Sprintf("p99 %v on %s > %v objective", r.P99, n, c.P99Objective)
		}
		if c.ErrorObjective > 0 && r.ErrorRate > c.ErrorObjective {
			return fmt.Sprintf("error rate %.1f%% on %s > %.1f%% objective", 100*r.ErrorRate, n, 100*c.ErrorObjective)
		}
		if r.CPULimit > 0 && r.CPU >= saturatedCPU*r.CPULimit {
			return fmt.Sprintf("%s at its CPU limit (%.2f of %.2f cores)", n, r.CPU, r.CPULimit)
		}
	}
	return ""
}

// ceilDiv returns ceil(rate/per), at most limit.
func ceilDiv(rate, per float64, limit int) int {
	q := math.Ceil(rate / per)
	if !(q < float64(limit)) {
		return limit
	}
	return int(q)
}

func fmtRate(r float64) string {
	if r >= 100 || r == math.Trunc(r) {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.3g", r)
}
