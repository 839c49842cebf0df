package autopilot

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const period = 500 * time.Millisecond

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{name: "zero means defaults", mod: func(*Config) {}},
		{name: "defaults", mod: func(c *Config) { *c = DefaultConfig() }},
		{name: "objectives", mod: func(c *Config) { c.P99Objective = 250 * time.Millisecond; c.ErrorObjective = 0.01 }},
		{name: "negative target", mod: func(c *Config) { c.TargetRPS = -1 }, wantErr: "target rps"},
		{name: "negative max replicas", mod: func(c *Config) { c.MaxReplicas = -1 }, wantErr: "max replicas"},
		{name: "low above high", mod: func(c *Config) { c.LowWatermark = 1.2 }, wantErr: "below high watermark"},
		{name: "low equals high", mod: func(c *Config) { c.HighWatermark, c.LowWatermark = 0.8, 0.8 }, wantErr: "below high watermark"},
		{name: "negative low", mod: func(c *Config) { c.LowWatermark = -0.5 }, wantErr: "low watermark -0.5 must be > 0"},
		{name: "negative budget", mod: func(c *Config) { c.BudgetPerSecond = -1 }, wantErr: "budget"},
		{name: "negative extra cap", mod: func(c *Config) { c.MaxExtraReplicas = -1 }, wantErr: "max extra replicas"},
		{name: "negative cooldown", mod: func(c *Config) { c.Cooldown = -time.Second }, wantErr: "cooldown"},
		{name: "error objective 1", mod: func(c *Config) { c.ErrorObjective = 1 }, wantErr: "error objective"},
		{name: "report age past ttl", mod: func(c *Config) { c.ReportMaxAge = time.Minute }, wantErr: "report max age"},
		{name: "several at once", mod: func(c *Config) { c.TargetRPS = -1; c.MaxReplicas = -3 }, wantErr: "max replicas -3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			tt.mod(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := NewPolicy(c); err != nil {
					t.Fatalf("NewPolicy: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
			if _, err := NewPolicy(c); err == nil {
				t.Fatal("NewPolicy accepted an invalid config")
			}
		})
	}
	if got := (Config{}).withDefaults(); got != DefaultConfig() {
		t.Errorf("zero config with defaults = %+v, want %+v", got, DefaultConfig())
	}
}

// TestStep: a step from 100/s to 10,000/s gets the members the target calls
// for at the first tick that sees it, budget permitting.
func TestStep(t *testing.T) {
	tests := []struct {
		name        string
		maxReplicas int
		target      float64
		wantMembers int
	}{
		{name: "clamped to max replicas", maxReplicas: 8, target: 1000, wantMembers: 8},
		{name: "ceil of rate over target", maxReplicas: 16, target: 1000, wantMembers: 10},
		{name: "ceil rounds up", maxReplicas: 16, target: 3000, wantMembers: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, Config{MaxReplicas: tt.maxReplicas, TargetRPS: tt.target, BudgetPerSecond: 100}, 20)
			for range 10 {
				if acts := s.step(period, map[string]float64{"/score": 100}); len(acts) != 0 {
					t.Fatalf("at 100/s: actions %+v, want none", acts)
				}
			}
			acts := s.step(period, map[string]float64{"/score": 10000})
			outs := kinds(acts, ScaleOut)
			if len(outs) != tt.wantMembers-1 {
				t.Fatalf("scale-outs = %d, want %d: %+v", len(outs), tt.wantMembers-1, acts)
			}
			for _, a := range outs {
				if a.Desired != tt.wantMembers || a.Current != 1 {
					t.Errorf("action desired/current = %d/%d, want %d/1", a.Desired, a.Current, tt.wantMembers)
				}
			}
			wantReason := fmt.Sprintf("rate 10000/s > 1 × %.0f/s high watermark; want %d", tt.target, tt.wantMembers)
			if !strings.HasPrefix(outs[0].Reason, wantReason) {
				t.Errorf("reason = %q, want prefix %q", outs[0].Reason, wantReason)
			}
			// Steady: nothing more to do for a long while but renewals.
			for range 100 {
				s.step(period, map[string]float64{"/score": 10000})
			}
			if got := s.live("/score"); got != tt.wantMembers-1 {
				t.Errorf("replicas after a steady minute = %d, want %d", got, tt.wantMembers-1)
			}
			if n := s.count(ScaleOut, ""); n != tt.wantMembers-1 {
				t.Errorf("scale-outs over the run = %d, want %d", n, tt.wantMembers-1)
			}
			if s.count(ScaleIn, "") != 0 {
				t.Errorf("scale-ins at a steady rate: %d", s.count(ScaleIn, ""))
			}
		})
	}
}

// TestBudget: the cluster-wide budget bounds new replicas per second, and a
// key cut short by it is completed as tokens arrive, not a MinInterval later.
func TestBudget(t *testing.T) {
	tests := []struct {
		name   string
		budget float64
		keys   int
		tick   time.Duration
		run    time.Duration
	}{
		{name: "2/s, many keys", budget: 2, keys: 20, tick: 100 * time.Millisecond, run: 10 * time.Second},
		{name: "0.5/s, burst 1", budget: 0.5, keys: 5, tick: 250 * time.Millisecond, run: 20 * time.Second},
		{name: "10/s default, coarse ticks", budget: 0, keys: 30, tick: time.Second, run: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, Config{BudgetPerSecond: tt.budget, MaxExtraReplicas: 1000}, 40)
			budget := s.cfg.BudgetPerSecond
			burst := max(1, budget)
			rates := map[string]float64{}
			for i := range tt.keys {
				rates[fmt.Sprintf("/hot/%d", i)] = 100_000
			}
			start := s.now
			for s.now.Sub(start) < tt.run {
				s.step(tt.tick, rates)
				elapsed := s.now.Sub(start).Seconds()
				got := float64(s.count(ScaleOut, ""))
				if limit := burst + budget*elapsed; got > limit+1e-9 {
					t.Fatalf("after %.2fs: %v scale-outs > burst %v + %v/s", elapsed, got, burst, budget)
				}
				// Demand exceeds the budget: it is spent, not wasted.
				if floor := burst + budget*elapsed - budget*tt.tick.Seconds() - 1; got < floor {
					t.Fatalf("after %.2fs: %v scale-outs, want >= %.1f", elapsed, got, floor)
				}
			}
			if st := s.p.Stats(); st.BudgetDenied == 0 {
				t.Errorf("stats %+v: want budget denials counted", st)
			}
		})
	}

	t.Run("one key completes at budget pace", func(t *testing.T) {
		s := newSim(t, Config{BudgetPerSecond: 3}, 20)
		s.step(100*time.Millisecond, map[string]float64{"/k": 100})
		start := s.now
		var full time.Duration
		for range 30 {
			s.step(100*time.Millisecond, map[string]float64{"/k": 20000})
			if s.live("/k") == 7 && full == 0 {
				full = s.now.Sub(start)
			}
		}
		// Burst 3 at once, then one every 1/3 s: 7 replicas after 4/3 s.
		if full == 0 || full > 1500*time.Millisecond {
			t.Errorf("full replica set after %v, want about 1.33s", full)
		}
	})
}

// TestNoThrash: loads that oscillate around a threshold cause no reversal
// within the cooldown and few actions over a long run.
func TestNoThrash(t *testing.T) {
	tests := []struct {
		name       string
		a, b       float64       // the two rates alternated
		period     time.Duration // time spent at each
		warm       float64       // rate to start from, to begin scaled out
		maxActions int           // scale-outs plus scale-ins over the run
	}{
		{name: "around high band, fast", a: 950, b: 1050, period: period, maxActions: 1},
		{name: "around high band of 3 members", a: 2900, b: 3100, period: period, warm: 2900, maxActions: 1},
		{name: "around low band, faster than hold", a: 900, b: 1100, period: 3 * time.Second, warm: 3000, maxActions: 0},
		{name: "around low band, every tick", a: 990, b: 1010, period: period, warm: 3000, maxActions: 0},
		{name: "big swings, faster than hold", a: 100, b: 8000, period: 4 * time.Second, maxActions: 1},
		// A real crowd that comes and goes every 20s: one scale-out and
		// one scale-in per cycle, no more.
		{name: "big swings, slower than hold", a: 100, b: 8000, period: 20 * time.Second, maxActions: 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, Config{BudgetPerSecond: 100}, 20)
			if tt.warm > 0 {
				for range 4 {
					s.step(period, map[string]float64{"/k": tt.warm})
				}
				s.log = nil
			}
			const run = 10 * time.Minute
			start := s.now
			for s.now.Sub(start) < run {
				rate := tt.a
				if (s.now.Sub(start)/tt.period)%2 == 1 {
					rate = tt.b
				}
				s.step(period, map[string]float64{"/k": rate})
			}
			s.checkNoReversal()
			decisions := map[time.Time]bool{} // one tick's scale-outs are one decision
			for _, a := range s.log {
				if a.Kind != Renew {
					decisions[a.at] = true
				}
			}
			t.Logf("%d scaling decisions, %d scale-outs, %d scale-ins", len(decisions), s.count(ScaleOut, ""), s.count(ScaleIn, ""))
			if len(decisions) > tt.maxActions {
				t.Errorf("%d scaling decisions in %v, want <= %d", len(decisions), run, tt.maxActions)
			}
		})
	}
}

// TestCaps: MaxReplicas per object and MaxExtraReplicas in total hold
// (the sim checks both on every tick), and the policy fills up to them.
func TestCaps(t *testing.T) {
	tests := []struct {
		name        string
		maxReplicas int
		maxExtra    int
		keys        int
		rate        float64
		wantExtra   int
	}{
		{name: "per object", maxReplicas: 4, maxExtra: 64, keys: 1, rate: 1e6, wantExtra: 3},
		{name: "one member only", maxReplicas: 1, maxExtra: 64, keys: 1, rate: 1e6, wantExtra: 0},
		{name: "total", maxReplicas: 8, maxExtra: 12, keys: 10, rate: 1e5, wantExtra: 12},
		{name: "total of one", maxReplicas: 8, maxExtra: 1, keys: 3, rate: 1e5, wantExtra: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, Config{MaxReplicas: tt.maxReplicas, MaxExtraReplicas: tt.maxExtra, BudgetPerSecond: 1000}, 30)
			rates := map[string]float64{}
			for i := range tt.keys {
				rates[fmt.Sprintf("/k/%d", i)] = tt.rate
			}
			for range 200 {
				s.step(period, rates)
			}
			extra := 0
			for key := range rates {
				extra += s.live(key)
			}
			if extra != tt.wantExtra {
				t.Errorf("extra replicas = %d, want %d", extra, tt.wantExtra)
			}
			if tt.keys > 1 && tt.maxExtra >= tt.keys {
				// Under the total cap, the busiest-per-member rule spreads
				// replicas evenly over equally hot keys.
				for key := range rates {
					if n := s.live(key); n < tt.maxExtra/tt.keys-1 || n > tt.maxExtra/tt.keys+1 {
						t.Errorf("%s has %d replicas, want about %d", key, n, tt.maxExtra/tt.keys)
					}
				}
			}
			if st := s.p.Stats(); tt.wantExtra < tt.keys*(tt.maxReplicas-1) && st.CapDenied == 0 {
				t.Errorf("stats %+v: want cap denials counted", st)
			}
		})
	}

	t.Run("lowered cap releases the excess", func(t *testing.T) {
		s := newSim(t, Config{MaxReplicas: 8, BudgetPerSecond: 100}, 20)
		s.step(period, map[string]float64{"/k": 1e5})
		if s.live("/k") != 7 {
			t.Fatalf("replicas = %d, want 7", s.live("/k"))
		}
		p, err := NewPolicy(Config{MaxReplicas: 3, BudgetPerSecond: 100})
		if err != nil {
			t.Fatal(err)
		}
		s.p, s.cfg = p, p.Config() // a new leader with a lower cap
		acts := s.step(period, map[string]float64{"/k": 1e5})
		if ins := kinds(acts, ScaleIn); len(ins) != 5 || !strings.Contains(ins[0].Reason, "max 3 per object") {
			t.Errorf("scale-ins = %+v, want 5 for the cap", ins)
		}
	})
}

// TestCrowdLeaves: when the crowd goes, every extra replica is released
// after the hold, newest first, none is renewed after, and the policy
// forgets the key.
func TestCrowdLeaves(t *testing.T) {
	tests := []struct {
		name  string
		after map[string]float64 // rates once the crowd left; "/other" keeps reports fresh
	}{
		{name: "key gone from reports", after: map[string]float64{"/other": 50}},
		{name: "key still reported, cold", after: map[string]float64{"/k": 20, "/other": 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{BudgetPerSecond: 100, ScaleInHold: 10 * time.Second, ReplicaTTL: 30 * time.Second}
			s := newSim(t, cfg, 20)
			// The crowd grows for a while, so replicas have distinct ages.
			for _, r := range []float64{3000, 6000, 9000} {
				for range 4 {
					s.step(period, map[string]float64{"/k": r, "/other": 50})
				}
			}
			if s.live("/k") != 7 {
				t.Fatalf("replicas during the crowd = %d, want 7", s.live("/k"))
			}
			left := s.now
			var released []Action
			for s.now.Sub(left) < time.Minute {
				acts := s.step(period, tt.after)
				ins := kinds(acts, ScaleIn)
				if len(ins) > 0 {
					if len(released) > 0 {
						t.Fatalf("second scale-in batch at %v", s.now.Sub(left))
					}
					if held := s.now.Sub(left); held < cfg.ScaleInHold {
						t.Errorf("scale-in %v after the crowd left, before the %v hold", held, cfg.ScaleInHold)
					}
					released = ins
				}
			}
			if len(released) != 7 {
				t.Fatalf("released %d replicas, want 7", len(released))
			}
			// Newest first: releases come in descending lease age.
			since := map[string]time.Time{}
			for _, a := range s.log {
				if a.Kind == ScaleOut && a.Key == "/k" {
					since[a.Node] = a.at
				}
			}
			for i := 1; i < len(released); i++ {
				if since[released[i].Node].After(since[released[i-1].Node]) {
					t.Errorf("release %d (%s, since %v) newer than release %d", i, released[i].Node, since[released[i].Node].Sub(epoch), i-1)
				}
			}
			if !strings.Contains(released[0].Reason, "low watermark for") || released[0].Desired != 1 {
				t.Errorf("release = %+v, want a low-watermark reason and desired 1", released[0])
			}
			if o := s.objs[hashOf("/k")]; o != nil && len(o.replicas) != 0 {
				t.Errorf("replicas left a minute later: %d, want 0", len(o.replicas))
			}
			if st := s.p.Stats(); st.Keys != 0 || st.ExtraReplicas != 0 {
				t.Errorf("stats = %+v, want no key state and no extra replicas", st)
			}
		})
	}

	t.Run("reports stop: hold still", func(t *testing.T) {
		s := newSim(t, Config{BudgetPerSecond: 100, ReplicaTTL: 10 * time.Second}, 20)
		s.step(period, map[string]float64{"/k": 5000})
		for range 120 { // a minute with no report at all
			s.stepFrom(period, map[string]float64{}, nil)
		}
		if s.count(ScaleIn, "") != 0 || s.live("/k") != 4 {
			t.Errorf("without reports: %d scale-ins, %d replicas; want 0 and 4", s.count(ScaleIn, ""), s.live("/k"))
		}
		if s.count(Renew, "/k") == 0 {
			t.Error("without reports: no renewals")
		}
		if st := s.p.Stats(); st.NoReportsDecisions != 120 {
			t.Errorf("NoReportsDecisions = %d, want 120", st.NoReportsDecisions)
		}
	})
}

func TestRenew(t *testing.T) {
	ttl := 30 * time.Second
	tests := []struct {
		name      string
		left      time.Duration // lease time left on the replica
		rate      float64
		since     time.Duration // replica age
		nodeState string        // "", "draining", "failing", "gone"
		noReports bool
		want      ActionKind // 0: no action for the replica
	}{
		{name: "far from expiry", left: 20 * time.Second, rate: 2000, want: 0},
		{name: "just above 25%", left: 7600 * time.Millisecond, rate: 2000, want: 0},
		{name: "below 25%", left: 7 * time.Second, rate: 2000, want: Renew},
		{name: "already expired but listed", left: -time.Second, rate: 2000, want: Renew},
		{name: "cooling, hold not over", left: 5 * time.Second, rate: 10, want: Renew},
		{name: "no reports", left: 5 * time.Second, rate: 2000, noReports: true, want: Renew},
		{name: "node draining", left: 5 * time.Second, rate: 2000, nodeState: "draining", want: ScaleIn},
		{name: "node failing", left: 20 * time.Second, rate: 2000, nodeState: "failing", want: ScaleIn},
		{name: "node gone", left: 5 * time.Second, rate: 2000, nodeState: "gone", want: ScaleIn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, Config{ReplicaTTL: ttl, BudgetPerSecond: 100, MinInterval: time.Hour}, 4)
			key := "/k"
			o := s.object(key)
			var node string
			for _, n := range s.nodes {
				if n.ID != o.owner {
					node = n.ID
					break
				}
			}
			o.replicas[node] = &simReplica{since: s.now.Add(-ttl), expires: s.now.Add(tt.left)}
			for i := range s.nodes {
				if s.nodes[i].ID != node {
					continue
				}
				switch tt.nodeState {
				case "draining":
					s.nodes[i].Draining = true
				case "failing":
					s.nodes[i].Failing = true
				case "gone":
					s.nodes = append(s.nodes[:i], s.nodes[i+1:]...)
				}
				break
			}
			o.replicas[node].expires = s.now.Add(tt.left) // step does not advance: d = 0
			reporters := []string{"r0"}
			if tt.noReports {
				reporters = nil
			}
			acts := s.p.Decide(s.now, s.reportsIf(reporters, map[string]float64{key: tt.rate}), s.objects(map[string]float64{key: tt.rate}), s.nodes)
			var got ActionKind
			for _, a := range acts {
				if a.Node == node {
					if got != 0 {
						t.Fatalf("two actions for the replica: %+v", acts)
					}
					got = a.Kind
				}
			}
			if got != tt.want {
				t.Fatalf("action for the replica = %v, want %v (all: %+v)", got, tt.want, acts)
			}
		})
	}

	t.Run("released replicas are not renewed", func(t *testing.T) {
		s := newSim(t, Config{ReplicaTTL: ttl, ScaleInHold: 5 * time.Second, BudgetPerSecond: 100}, 10)
		s.step(period, map[string]float64{"/k": 5000})
		var releasedAt time.Time
		for s.now.Sub(epoch) < 2*time.Minute {
			acts := s.step(period, map[string]float64{"/k": 0, "/other": 1})
			if len(kinds(acts, ScaleIn)) > 0 {
				releasedAt = s.now
			}
		}
		if releasedAt.IsZero() {
			t.Fatal("no scale-in")
		}
		for _, a := range s.log {
			if a.Kind == Renew && !a.at.Before(releasedAt) {
				t.Errorf("renew at %v after release at %v", a.at.Sub(epoch), releasedAt.Sub(epoch))
			}
		}
		// Before the release, the hot replicas were renewed near expiry
		// only: never with more than 25% of the TTL left (the sim logs
		// renewals; each must follow the previous by at least 75% TTL).
		last := map[string]time.Time{}
		for _, a := range s.log {
			switch a.Kind {
			case ScaleOut:
				last[a.Node] = a.at
			case Renew:
				if gap := a.at.Sub(last[a.Node]); gap < ttl*3/4 {
					t.Errorf("renew of %s %v after its lease began, want >= %v", a.Node, gap, ttl*3/4)
				}
				last[a.Node] = a.at
			}
		}
	})
}

func (s *sim) reportsIf(reporters []string, rates map[string]float64) []Report {
	if reporters == nil {
		return nil
	}
	return s.reports(rates, reporters)
}

// TestObjectives: a breached p99 or error objective on a member raises a
// hot key's replicas step by step; a cold key on the same node is left alone.
func TestObjectives(t *testing.T) {
	tests := []struct {
		name       string
		p99        time.Duration
		errRate    float64
		rate       float64
		wantMin    int // members after the run
		wantMax    int
		wantReason string
	}{
		{name: "p99 breached, warm key", p99: 400 * time.Millisecond, rate: 900, wantMin: 2, wantMax: 2, wantReason: "p99 400ms on"},
		// 1800/s wants 2, one more for the breach at once, then one more
		// while 1800/s is at least half the target per member.
		{name: "errors breached, hot key", errRate: 0.2, rate: 1800, wantMin: 4, wantMax: 4, wantReason: "error rate 20.0% on"},
		{name: "p99 breached, cold key", p99: 400 * time.Millisecond, rate: 100, wantMin: 1, wantMax: 1},
		{name: "within objectives", p99: 100 * time.Millisecond, errRate: 0.001, rate: 900, wantMin: 1, wantMax: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, Config{P99Objective: 250 * time.Millisecond, ErrorObjective: 0.05, BudgetPerSecond: 100}, 10)
			key := "/k"
			owner := s.object(key).owner
			var first []Action
			for range 20 {
				s.now = s.now.Add(period)
				s.expire()
				reports := s.reports(map[string]float64{key: tt.rate}, []string{owner})
				reports[0].P99, reports[0].ErrorRate = tt.p99, tt.errRate
				acts := s.p.Decide(s.now, reports, s.objects(map[string]float64{key: tt.rate}), s.nodes)
				if first == nil {
					first = kinds(acts, ScaleOut)
				}
				s.apply(acts)
			}
			if m := s.live(key) + 1; m < tt.wantMin || m > tt.wantMax {
				t.Errorf("members = %d, want [%d, %d]", m, tt.wantMin, tt.wantMax)
			}
			if tt.wantReason != "" && (len(first) == 0 || !strings.Contains(first[0].Reason, tt.wantReason)) {
				t.Errorf("first scale-out = %+v, want reason with %q", first, tt.wantReason)
			}
		})
	}
}

func TestStaleReports(t *testing.T) {
	s := newSim(t, Config{ReportMaxAge: 2 * time.Second}, 10)
	key := "/k"
	for _, age := range []time.Duration{3 * time.Second, 2*time.Second + time.Millisecond} {
		reports := s.reports(map[string]float64{key: 50000}, []string{"r0"})
		reports[0].At = s.now.Add(-age)
		if acts := s.p.Decide(s.now, reports, s.objects(map[string]float64{key: 50000}), s.nodes); len(acts) != 0 {
			t.Errorf("report %v old: actions %+v, want none", age, acts)
		}
	}
	// Two reports from one node: only the newer counts.
	reports := s.reports(map[string]float64{key: 1500}, []string{"r0"})
	old := s.reports(map[string]float64{key: 50000}, []string{"r0"})
	old[0].At = s.now.Add(-time.Second)
	acts := s.p.Decide(s.now, append(reports, old...), s.objects(map[string]float64{key: 1}), s.nodes)
	if outs := kinds(acts, ScaleOut); len(outs) != 1 {
		t.Errorf("with a newer 1500/s report: %d scale-outs, want 1", len(outs))
	}
	if st := s.p.Stats(); st.StaleReports != 2 {
		t.Errorf("StaleReports = %d, want 2", st.StaleReports)
	}
}

// TestInFlight: replicas asked for but not yet visible count as members
// until ActuationTimeout, so a slow actuator does not get duplicate work.
func TestInFlight(t *testing.T) {
	s := newSim(t, Config{BudgetPerSecond: 100, ActuationTimeout: 5 * time.Second, MinInterval: 100 * time.Millisecond}, 10)
	s.ignoreScaleOut = true
	rates := map[string]float64{"/k": 4000}
	if outs := kinds(s.step(period, rates), ScaleOut); len(outs) != 3 {
		t.Fatalf("scale-outs = %d, want 3", len(outs))
	}
	for i := 1; i < 10; i++ { // 4.5s: still in flight
		if acts := s.step(period, rates); len(acts) != 0 {
			t.Fatalf("tick %d: actions %+v while replicas are in flight", i, acts)
		}
	}
	outs := kinds(s.step(period, rates), ScaleOut)
	if len(outs) != 3 {
		t.Errorf("after the actuation timeout: %d scale-outs, want 3 again", len(outs))
	}
	if st := s.p.Stats(); st.ActuationTimeouts != 3 {
		t.Errorf("ActuationTimeouts = %d, want 3", st.ActuationTimeouts)
	}
}

// TestBoundedState: a long stream of keys that get hot once keeps the
// policy's memory within its bound and leaves none behind.
func TestBoundedState(t *testing.T) {
	s := newSim(t, Config{MaxExtraReplicas: 4, BudgetPerSecond: 1000, ReplicaTTL: 5 * time.Second, ScaleInHold: time.Second, Cooldown: time.Second, ReportMaxAge: time.Second}, 10)
	for i := range 1000 {
		rates := map[string]float64{}
		for j := range 20 { // 20 keys hot at once, a new one every tick
			rates[fmt.Sprintf("/k/%d", i+j)] = 3000
		}
		s.step(period, rates)
	}
	for range 100 {
		s.step(period, map[string]float64{"/idle": 1})
	}
	if st := s.p.Stats(); st.Keys != 0 {
		t.Errorf("key states after the stream = %d, want 0", st.Keys)
	}
	if s.count(ScaleOut, "") < 100 {
		t.Errorf("only %d scale-outs: the stream did not exercise the policy", s.count(ScaleOut, ""))
	}
}

func TestActionKindString(t *testing.T) {
	for k, want := range map[ActionKind]string{ScaleOut: "scale-out", ScaleIn: "scale-in", Renew: "renew", 0: "ActionKind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(k), got, want)
		}
	}
}
