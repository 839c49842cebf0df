package autopilot

import "fmt"

// Limits are an operator's settings for one object's leased replicas (the
// owner not counted), from the object settings in etcd. They bound what the
// rate asks for: the pin from below, the cap from above. MaxReplicas still
// bounds both, and a cap below the pin wins.
type Limits struct {
	// Pin keeps at least Pin leased replicas while it is set, whatever the
	// key's rate: the policy scales out to it at once, not waiting for the
	// hysteresis timers (but within the budget and MaxExtraReplicas, pins
	// first), and never scales in below it. 0 pins nothing.
	Pin int
	// Cap, if not nil, allows at most *Cap leased replicas: replicas beyond
	// it are released at once, and the rate never asks for more. 0 keeps
	// the key on its owner alone.
	Cap *int
	// Reason is the operator's, quoted in the actions' reasons.
	Reason string
}

// IsZero reports whether l neither pins nor caps.
func (l Limits) IsZero() bool { return l.Pin <= 0 && l.Cap == nil }

// bounds returns the fewest and the most members (owner included) a key
// under l may have.
func (c *Config) bounds(l Limits) (floor, ceil int) {
	ceil = c.MaxReplicas
	if l.Cap != nil {
		ceil = min(ceil, 1+max(0, *l.Cap))
	}
	return min(1+max(0, l.Pin), ceil), ceil
}

// capText says what the operator's cap is, for reasons.
func (l Limits) capText() string {
	return "operator cap of " + replicas(*l.Cap) + l.why()
}

// pinText says what the operator's pin is, for reasons.
func (l Limits) pinText() string {
	return "operator pin of " + replicas(l.Pin) + l.why()
}

func (l Limits) why() string {
	if l.Reason == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", l.Reason)
}

func replicas(n int) string {
	if n == 1 {
		return "1 leased replica"
	}
	return fmt.Sprintf("%d leased replicas", n)
}

// pin makes the key a candidate for the members its operator pin still
// lacks, whatever its rate and ahead of the timers: the operator asked for
// them now. It runs with or without fresh reports, as a pin does not depend
// on the rate.
func (p *Policy) pin(t *tick, kv *keyView) {
	if kv.members >= kv.floor {
		return
	}
	if kv.owner == "" {
		p.stats.UnknownOwner++
		return
	}
	if kv.want == 0 {
		t.candidates = append(t.candidates, kv) // not a candidate for its rate
	}
	kv.want = max(kv.want, kv.floor)
	kv.need, kv.pinned = kv.want-kv.members, true
}
