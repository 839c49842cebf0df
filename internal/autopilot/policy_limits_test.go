package autopilot

import (
	"strings"
	"testing"
	"time"
)

func capOf(n int) *int { return &n }

// limitPhase is a run of ticks at fixed rates under the operator's limits.
type limitPhase struct {
	ticks  int
	rates  map[string]float64 // nil: no fresh report at all
	limits map[string]Limits  // the limits from this phase on; nil keeps the previous ones
}

// TestLimits: an operator's pin keeps at least that many leased replicas,
// at once and whatever the rate or the timers, and a cap keeps at most that
// many; MaxReplicas bounds both, and a cap below the pin wins.
func TestLimits(t *testing.T) {
	const key = "/k"
	cold := map[string]float64{"/other": 10} // fresh reports without the key
	hot := map[string]float64{key: 1e5}
	pin := func(n int) map[string]Limits { return map[string]Limits{key: {Pin: n}} }
	capped := func(n int) map[string]Limits { return map[string]Limits{key: {Cap: capOf(n)}} }
	tests := []struct {
		name     string
		cfg      Config
		phases   []limitPhase
		wantLive int // live replicas of key at the end
		// wantKind and wantReason: some action of that kind on key had a
		// reason containing wantReason.
		wantKind   ActionKind
		wantReason string
		// outsLast and insLast are the scale-outs and scale-ins of key in
		// the last phase; -1 means any number.
		outsLast, insLast int
		check             func(t *testing.T, s *sim)
	}{
		{
			name:     "pin gets a cold key its replicas at once",
			phases:   []limitPhase{{1, cold, map[string]Limits{key: {Pin: 2, Reason: "sale"}}}},
			wantLive: 2, wantKind: ScaleOut, wantReason: `operator pin of 2 leased replicas ("sale"), 0 held; want 3`,
			outsLast: 2, insLast: 0,
		},
		{
			name:     "pinned replicas are renewed and never scaled in",
			phases:   []limitPhase{{1, cold, pin(2)}, {120, cold, nil}},
			wantLive: 2, wantKind: Renew, wantReason: "held by the operator pin of 2 leased replicas",
			outsLast: 0, insLast: 0,
		},
		{
			name:     "pin acts without fresh reports",
			phases:   []limitPhase{{1, nil, pin(1)}},
			wantLive: 1, wantKind: ScaleOut, wantReason: "operator pin of 1 leased replica, 0 held; want 2",
			outsLast: 1, insLast: 0,
		},
		{
			name:     "pin ignores the scale-out interval",
			cfg:      Config{MinInterval: 10 * time.Second},
			phases:   []limitPhase{{1, map[string]float64{key: 1500}, nil}, {1, map[string]float64{key: 1500}, pin(4)}},
			wantLive: 4, wantKind: ScaleOut, wantReason: "operator pin of 4 leased replicas, 1 held; want 5",
			outsLast: 3, insLast: 0,
		},
		{
			name: "pin ignores the cooldown of a scale-in",
			cfg:  Config{Cooldown: time.Minute},
			// Hot, then cold: all released a minute after the scale-out;
			// 40s later, still within the cooldown, the pin.
			phases:   []limitPhase{{1, hot, nil}, {200, cold, nil}, {1, cold, pin(2)}},
			wantLive: 2, wantKind: ScaleOut, wantReason: "operator pin of 2 leased replicas, 0 held",
			outsLast: 2, insLast: 0,
			check: func(t *testing.T, s *sim) {
				var lastIn time.Time
				for _, a := range s.log {
					if a.Kind == ScaleIn {
						lastIn = a.at
					}
				}
				if lastIn.IsZero() || s.now.Sub(lastIn) >= time.Minute {
					t.Errorf("last scale-in %v before the pin, want within the 1m cooldown", s.now.Sub(lastIn))
				}
			},
		},
		{
			name:     "pin floors a scale-in",
			phases:   []limitPhase{{1, hot, pin(2)}, {100, cold, nil}},
			wantLive: 2, wantKind: ScaleIn, wantReason: "want 3, held by the operator pin of 2 leased replicas",
			outsLast: 0, insLast: -1,
		},
		{
			name:     "an unpinned key keeps its replicas for the hold",
			phases:   []limitPhase{{1, cold, pin(2)}, {19, cold, map[string]Limits{}}},
			wantLive: 2, outsLast: 0, insLast: 0,
		},
		{
			name:     "an unpinned key is released after the hold",
			phases:   []limitPhase{{1, cold, pin(2)}, {30, cold, map[string]Limits{}}},
			wantLive: 0, wantKind: ScaleIn, wantReason: "low watermark for 10s; want 1",
			outsLast: 0, insLast: 2,
		},
		{
			name:     "cap holds a hot key at the cap",
			phases:   []limitPhase{{60, hot, map[string]Limits{key: {Cap: capOf(1), Reason: "fragile origin"}}}},
			wantLive: 1, wantKind: ScaleOut, wantReason: `rate 100000/s > 1 × 1000/s high watermark; at the operator cap of 1 leased replica ("fragile origin"); want 2`,
			outsLast: 1, insLast: 0,
			check: func(t *testing.T, s *sim) {
				if st := s.p.Stats(); st.CapHeld == 0 {
					t.Errorf("stats %+v: want CapHeld counted", st)
				}
			},
		},
		{
			name:     "cap 0 keeps a hot key on its owner",
			phases:   []limitPhase{{60, hot, capped(0)}},
			wantLive: 0, outsLast: 0, insLast: 0,
		},
		{
			name:     "a lowered cap releases the excess at once",
			phases:   []limitPhase{{1, hot, nil}, {1, hot, capped(2)}},
			wantLive: 2, wantKind: ScaleIn, wantReason: "8 members > 3 under the operator cap of 2 leased replicas",
			outsLast: 0, insLast: 5,
		},
		{
			name:     "a cap below the pin wins",
			phases:   []limitPhase{{10, cold, map[string]Limits{key: {Pin: 3, Cap: capOf(1)}}}},
			wantLive: 1, outsLast: 1, insLast: 0,
		},
		{
			name:     "max replicas bounds the pin",
			cfg:      Config{MaxReplicas: 3},
			phases:   []limitPhase{{10, cold, pin(5)}},
			wantLive: 2, outsLast: 2, insLast: 0,
		},
		{
			name:     "pins go first when the budget is short",
			cfg:      Config{BudgetPerSecond: 1},
			phases:   []limitPhase{{1, map[string]float64{"/hot": 1e5, "/other": 10}, pin(1)}},
			wantLive: 1, outsLast: 1, insLast: 0,
			check: func(t *testing.T, s *sim) {
				if n := s.live("/hot"); n != 0 {
					t.Errorf("/hot got %d replicas before the pinned key's", n)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, tt.cfg, 20)
			var outs, ins int
			for i, ph := range tt.phases {
				if ph.limits != nil {
					s.limits = ph.limits
				}
				before := len(s.log)
				for range ph.ticks {
					var reporters []string
					if ph.rates != nil {
						reporters = []string{"r0"}
					}
					s.stepFrom(period, ph.rates, reporters)
				}
				if i == len(tt.phases)-1 {
					for _, a := range s.log[before:] {
						if a.Key != key {
							continue
						}
						switch a.Kind {
						case ScaleOut:
							outs++
						case ScaleIn:
							ins++
						}
					}
				}
			}
			if got := s.live(key); got != tt.wantLive {
				t.Errorf("live replicas = %d, want %d", got, tt.wantLive)
			}
			if tt.outsLast >= 0 && outs != tt.outsLast {
				t.Errorf("scale-outs in the last phase = %d, want %d", outs, tt.outsLast)
			}
			if tt.insLast >= 0 && ins != tt.insLast {
				t.Errorf("scale-ins in the last phase = %d, want %d", ins, tt.insLast)
			}
			if tt.wantReason != "" {
				var seen []string
				found := false
				for _, a := range s.log {
					if a.Key == key && a.Kind == tt.wantKind {
						found = found || strings.Contains(a.Reason, tt.wantReason)
						if len(seen) < 3 {
							seen = append(seen, a.Reason)
						}
					}
				}
				if !found {
					t.Errorf("no %v of %s with a reason containing %q; some were: %q", tt.wantKind, key, tt.wantReason, seen)
				}
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

// TestBounds: the fewest and most members under an operator's limits.
func TestBounds(t *testing.T) {
	c := Config{MaxReplicas: 5}.withDefaults()
	tests := []struct {
		l           Limits
		floor, ceil int
	}{
		{Limits{}, 1, 5},
		{Limits{Pin: 2}, 3, 5},
		{Limits{Pin: 9}, 5, 5},
		{Limits{Cap: capOf(0)}, 1, 1},
		{Limits{Cap: capOf(2)}, 1, 3},
		{Limits{Cap: capOf(9)}, 1, 5},
		{Limits{Pin: 3, Cap: capOf(1)}, 2, 2},
		{Limits{Pin: -1, Cap: capOf(-1)}, 1, 1},
	}
	for _, tt := range tests {
		if f, c := c.bounds(tt.l); f != tt.floor || c != tt.ceil {
			t.Errorf("bounds(%+v) = %d, %d, want %d, %d", tt.l, f, c, tt.floor, tt.ceil)
		}
	}
}
