package autopilot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/cluster"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

func TestNewActuatorValidates(t *testing.T) {
	s := replicaStore(t, deadClient(t), nil)
	ok := ActuatorConfig{Store: s, Copier: &fakeCopier{}}
	tests := []struct {
		name   string
		mutate func(*ActuatorConfig)
		ok     bool
	}{
		{"valid", func(*ActuatorConfig) {}, true},
		{"no store", func(c *ActuatorConfig) { c.Store = nil }, false},
		{"no copier", func(c *ActuatorConfig) { c.Copier = nil }, false},
		{"ttl under a second", func(c *ActuatorConfig) { c.TTL = 500 * time.Millisecond }, false},
		{"copy timeout past ttl", func(c *ActuatorConfig) { c.TTL = 2 * time.Second; c.CopyTimeout = 3 * time.Second }, false},
		{"negative copies", func(c *ActuatorConfig) { c.MaxCopies = -1 }, false},
		{"negative wait", func(c *ActuatorConfig) { c.ApplyWait = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			if _, err := NewActuator(cfg); (err == nil) != tt.ok {
				t.Errorf("NewActuator err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	a, err := NewActuator(ActuatorConfig{Store: s, Copier: &fakeCopier{}, TTL: 2500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if a.TTL() != 3*time.Second || a.copyTimeout != 1500*time.Millisecond {
		t.Errorf("TTL 2.5s: got TTL %v, copy timeout %v; want 3s, 1.5s", a.TTL(), a.copyTimeout)
	}
}

func scaleOut(key, node string) Action {
	return Action{Kind: ScaleOut, Key: key, Hash: keyHash(key), Node: node, Reason: "test: " + key, Desired: 2, Current: 1}
}

// keyHash is a stand-in for the router's key hash.
func keyHash(key string) uint64 { return hashOf(key) }

// TestScaleOut: a scale-out is a lease, a copy and a fenced registration;
// any failure leaves no record and no lease.
func TestScaleOut(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	w := startRegistry(t, newTestClient(t, e)) // another client, as on another node
	fence := testFence(t, c, "leader")
	copyErr := errors.New("owner unreachable")

	tests := []struct {
		name    string
		key     string
		fail    error         // from the copier
		fence   cluster.Fence // zero means the live fence
		wantErr error
	}{
		{name: "registers", key: "/ok"},
		{name: "copy fails", key: "/copy-fails", fail: copyErr, wantErr: copyErr},
		{name: "stale fence", key: "/stale", fence: cluster.Fence{Key: fence.Key, Rev: fence.Rev - 1}, wantErr: ErrFenced},
		{name: "no fence key", key: "/gone", fence: cluster.Fence{Key: fence.Key + "-gone", Rev: fence.Rev}, wantErr: ErrFenced},
		{name: "already registered", key: "/ok", wantErr: ErrReplicaExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := &fakeCopier{fail: func(string, string) error { return tt.fail }}
			a, reg := newTestActuator(t, c, cp, nil)
			f := tt.fence
			if f == (cluster.Fence{}) {
				f = fence
			}
			leases := leaseCount(t, c)
			act := scaleOut(tt.key, "n1")
			start := time.Now()
			errs := a.Apply(t.Context(), f, []Action{act})
			if len(errs) != 1 || !errors.Is(errs[0], tt.wantErr) || (tt.wantErr == nil) != (errs[0] == nil) {
				t.Fatalf("Apply = %v, want %v", errs, tt.wantErr)
			}
			if got := cp.Calls(); !slices.Equal(got, []string{"n1 " + tt.key}) {
				t.Errorf("copies = %q, want one of %s to n1", got, tt.key)
			}
			if tt.wantErr != nil {
				if n := leaseCount(t, c); n != leases {
					t.Errorf("leases after a failed scale-out: %d, want %d (revoked)", n, leases)
				}
				if got := count(t, reg, "crowdpilot_autopilot_scale_out_failures_total"); got != 1 {
					t.Errorf("scale_out_failures_total = %v, want 1", got)
				}
				if recs := recordsIn(t, c); len(recs) != 1 { // the one of "registers"
					t.Errorf("records after a failed scale-out: %+v", recs)
				}
				return
			}
			testwait.Eventually(t, testTimeout, "the other client's registry to see the replica", func() bool {
				return w.set(act.Hash) == "[n1]"
			})
			t.Logf("registered and seen in %v", time.Since(start))
			recs := w.Records()
			if len(recs) != 1 {
				t.Fatalf("records = %+v", recs)
			}
			r := recs[0]
			if r.Key != "/ok" || r.Node != "n1" || r.Owner != "n0" || r.Reason != act.Reason || r.TTL != 2*time.Second || r.Lease == 0 || time.Since(r.Since) > time.Minute {
				t.Errorf("record = %+v", r)
			}
			ttl, err := c.TimeToLive(t.Context(), clientv3.LeaseID(r.Lease))
			if err != nil || ttl.TTL <= 0 || ttl.GrantedTTL != 2 {
				t.Errorf("record's lease: %+v, %v; want a live 2s lease", ttl, err)
			}
			if n := leaseCount(t, c); n != leases+1 {
				t.Errorf("leases = %d, want %d", n, leases+1)
			}
			if got := count(t, reg, "crowdpilot_autopilot_scale_out_total"); got != 1 {
				t.Errorf("scale_out_total = %v, want 1", got)
			}
		})
	}
}

// TestDeposedLeaderCannotScaleOut: after another candidate is elected, the
// old term's fence writes nothing.
func TestDeposedLeaderCannotScaleOut(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	terms := make(chan cluster.Fence, 4)
	elect := func(id string) *testwait.Runner {
		el, err := cluster.NewElection(cluster.ElectionConfig{
			Client: newTestClient(t, e), Cluster: testCluster, ID: id, TTL: cluster.MinTTL, Logger: testLog(t),
			OnElected: func(ctx context.Context, f cluster.Fence) {
				terms <- f
				<-ctx.Done()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return testwait.Go(t, el.Run)
	}
	recv := func() cluster.Fence {
		select {
		case f := <-terms:
			return f
		case <-time.After(10 * time.Second):
			t.Fatal("no term started")
			return cluster.Fence{}
		}
	}
	first := elect("a")
	old := recv()
	elect("b")
	first.Stop(t) // a resigns; b takes over
	current := recv()

	a, reg := newTestActuator(t, c, &fakeCopier{}, nil)
	leases := leaseCount(t, c)
	errs := a.Apply(t.Context(), old, []Action{scaleOut("/k", "n1")})
	if !errors.Is(errs[0], ErrFenced) {
		t.Fatalf("Apply under the deposed fence = %v, want ErrFenced", errs[0])
	}
	if recs := recordsIn(t, c); len(recs) != 0 {
		t.Fatalf("deposed leader wrote %+v", recs)
	}
	if n := leaseCount(t, c); n != leases {
		t.Errorf("leases = %d, want %d: the failed scale-out's lease is revoked", n, leases)
	}
	if errs := a.Apply(t.Context(), current, []Action{scaleOut("/k", "n1")}); errs[0] != nil {
		t.Fatalf("Apply under the current fence = %v", errs[0])
	}
	if recs := recordsIn(t, c); len(recs) != 1 {
		t.Fatalf("records = %+v, want one", recs)
	}
	if got := count(t, reg, "crowdpilot_autopilot_scale_out_total"); got != 1 {
		t.Errorf("scale_out_total = %v, want 1", got)
	}
}

// renewer plays the policy's part: every few milliseconds it asks for the
// renewal of each wanted replica with less than 25% of its TTL left.
type renewer struct {
	a     *Actuator
	fence cluster.Fence
	mu    sync.Mutex // guards want
	want  map[string]Action
}

func startRenewer(t *testing.T, a *Actuator, fence cluster.Fence, acts []Action) *renewer {
	r := &renewer{a: a, fence: fence, want: map[string]Action{}}
	for _, act := range acts {
		act.Kind = Renew
		r.want[act.Key] = act
	}
	testwait.Go(t, func(ctx context.Context) error {
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			r.tick(ctx)
			select {
			case <-ctx.Done():
				return nil
			case <-tk.C:
			}
		}
	})
	return r
}

func (r *renewer) tick(ctx context.Context) {
	r.mu.Lock()
	var renew []Action
	for _, act := range r.want {
		exp, released, ok := r.a.expiry(act.Hash, act.Node)
		if ok && !released && time.Until(exp) < r.a.TTL()/4 {
			renew = append(renew, act)
		}
	}
	r.mu.Unlock()
	r.a.Apply(ctx, r.fence, renew)
}

func (r *renewer) stop(keys ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		delete(r.want, k)
	}
}

// TestRenewal: renewals keep a record alive over several TTLs; once they
// stop, it expires within the TTL and the registry drops it.
func TestRenewal(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	w := startRegistry(t, newTestClient(t, e))
	fence := testFence(t, c, "leader")
	a, reg := newTestActuator(t, c, &fakeCopier{}, nil)
	testwait.Go(t, a.Run)

	acts := []Action{scaleOut("/kept", "n1"), scaleOut("/dropped", "n2"), scaleOut("/scaled-in", "n3")}
	for i, err := range a.Apply(t.Context(), fence, acts) {
		if err != nil {
			t.Fatalf("scale out %s: %v", acts[i].Key, err)
		}
	}
	created := time.Now()
	r := startRenewer(t, a, fence, acts)
	for _, act := range acts {
		testwait.Eventually(t, testTimeout, act.Key+" seen", func() bool { return w.set(act.Hash) == "["+act.Node+"]" })
	}
	ttl := a.TTL()

	// /dropped is no longer asked for; /scaled-in is released.
	r.stop("/dropped", "/scaled-in")
	in := acts[2]
	in.Kind = ScaleIn
	a.Apply(t.Context(), fence, []Action{in})
	for _, act := range acts[1:] {
		testwait.Eventually(t, ttl+2*time.Second, act.Key+" to expire", func() bool { return w.set(act.Hash) == "[]" })
		if d := time.Since(created); d < ttl-200*time.Millisecond {
			t.Errorf("%s expired %v after creation, before its ttl %v", act.Key, d, ttl)
		}
	}
	t.Logf("unrenewed replicas expired %v after creation (ttl %v)", time.Since(created), ttl)

	// /kept lives on over 3 TTLs.
	testwait.Holds(t, 3*ttl-time.Since(created), "/kept registered", func() bool {
		if got := w.set(acts[0].Hash); got != "[n1]" {
			t.Logf("/kept replicas: %s, %v after creation", got, time.Since(created))
			return false
		}
		return true
	})
	if n := count(t, reg, "crowdpilot_autopilot_lease_renewals_total"); n < 3 {
		t.Errorf("lease_renewals_total = %v after 3 ttls, want >= 3", n)
	}
	if n := count(t, reg, "crowdpilot_autopilot_scale_in_total"); n != 1 {
		t.Errorf("scale_in_total = %v, want 1", n)
	}
	if n := count(t, reg, "crowdpilot_autopilot_lease_renewal_errors_total"); n != 0 {
		t.Errorf("lease_renewal_errors_total = %v, want 0", n)
	}

	r.stop("/kept")
	stopped := time.Now()
	testwait.Eventually(t, ttl+2*time.Second, "/kept to expire", func() bool { return w.set(acts[0].Hash) == "[]" })
	t.Logf("/kept expired %v after renewals stopped", time.Since(stopped))
	if len(w.Records()) != 0 {
		t.Errorf("records left: %+v", w.Records())
	}
}

// TestRenewalJitter: 50 replicas granted together are scheduled for
// renewal spread over the renewal window (from 25% to 10% of the TTL
// left), not at one instant, and each is renewed. The spread is checked on
// the times the actuator chose, asked for right after the grants, long
// before the window opens, rather than on when the renewals ran: a busy
// machine delays and bunches renewals without the schedule being at fault.
func TestRenewalJitter(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	fence := testFence(t, c, "leader")
	const ttl = 5 * time.Second
	a, _ := newTestActuator(t, c, &fakeCopier{}, func(cfg *ActuatorConfig) {
		cfg.TTL = ttl
		cfg.MaxCopies = 64
		cfg.ApplyWait = 10 * time.Second
	})
	var mu sync.Mutex // guards renewed
	renewed := map[string]bool{}
	a.onRenew = func(key string, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		renewed[key] = true
	}

	var acts, renew []Action
	for i := range 50 {
		act := scaleOut(fmt.Sprintf("/k%02d", i), fmt.Sprintf("n%d", i%5+1))
		acts = append(acts, act)
		act.Kind = Renew
		renew = append(renew, act)
	}
	for i, err := range a.Apply(t.Context(), fence, acts) {
		if err != nil {
			t.Fatalf("scale out %s: %v", acts[i].Key, err)
		}
	}
	for i, err := range a.Apply(t.Context(), fence, renew) {
		if err != nil {
			t.Fatalf("renew %s: %v", acts[i].Key, err)
		}
	}

	// The schedule, before Run renews anything.
	var first, last time.Time
	buckets := map[int64]int{}
	a.mu.Lock()
	for _, l := range a.leases {
		lo := l.expires.Add(-time.Duration(renewFraction * float64(ttl)))
		hi := l.expires.Add(-time.Duration(renewLatest * float64(ttl)))
		if l.renewAt.Before(lo) || l.renewAt.After(hi) {
			t.Errorf("%s: renewal at %v, outside its window [%v, %v]", l.key, l.renewAt, lo, hi)
		}
		if first.IsZero() || l.renewAt.Before(first) {
			first = l.renewAt
		}
		if l.renewAt.After(last) {
			last = l.renewAt
		}
		buckets[l.renewAt.UnixMilli()/50]++
	}
	scheduled := len(a.leases)
	a.mu.Unlock()
	if scheduled != 50 {
		t.Fatalf("%d leases scheduled, want 50", scheduled)
	}
	fullest := 0
	for _, n := range buckets {
		fullest = max(fullest, n)
	}
	t.Logf("50 renewals scheduled over %v in %d buckets of 50ms, the fullest holding %d", last.Sub(first), len(buckets), fullest)
	if fullest > 20 {
		t.Errorf("%d of 50 renewals in one 50ms bucket, want at most 40%%", fullest)
	}
	// The window is 15% of the TTL: 750ms wide.
	if spread := last.Sub(first); spread < 250*time.Millisecond {
		t.Errorf("renewals spread over %v, want most of the 750ms window", spread)
	}

	testwait.Go(t, a.Run)
	testwait.Eventually(t, 30*time.Second, "50 renewals", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(renewed) == 50
	})
}

// TestCopyBound: copies beyond MaxCopies are shed and counted; a copy that
// outlasts ApplyWait is reported later.
func TestCopyBound(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	fence := testFence(t, c, "leader")
	release := make(chan struct{})
	cp := CopierFunc(func(ctx context.Context, node, key, _ string) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	a, reg := newTestActuator(t, c, cp, func(cfg *ActuatorConfig) {
		cfg.MaxCopies = 2
		cfg.ApplyWait = 50 * time.Millisecond
	})
	late := make(chan error, 4)
	f := func(act Action, err error) { late <- err }
	a.onLate.Store(&f)

	acts := []Action{scaleOut("/a", "n1"), scaleOut("/b", "n1"), scaleOut("/c", "n1")}
	// The copies are held until release: Apply returns (ErrPending) only
	// because it stops waiting, after ApplyWait (TestApplyWaitBound times
	// that on a fake clock).
	if a.applyWait != 50*time.Millisecond {
		t.Fatalf("Apply waits %v, want ApplyWait's 50ms", a.applyWait)
	}
	errs := a.Apply(t.Context(), fence, acts)
	for i, want := range []error{ErrPending, ErrPending, ErrShed} {
		if !errors.Is(errs[i], want) {
			t.Errorf("errs[%d] = %v, want %v", i, errs[i], want)
		}
	}
	if n := count(t, reg, "crowdpilot_autopilot_copy_shed_total"); n != 1 {
		t.Errorf("copy_shed_total = %v, want 1", n)
	}
	close(release)
	for range 2 {
		select {
		case err := <-late:
			if err != nil {
				t.Errorf("late outcome = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no late outcome")
		}
	}
	if recs := recordsIn(t, c); len(recs) != 2 {
		t.Errorf("records = %+v, want /a and /b", recs)
	}
	// Slots are free again.
	if errs := a.Apply(t.Context(), fence, acts[2:]); errs[0] != nil {
		t.Errorf("scale-out after the copies finished = %v", errs[0])
	}
}

// TestApplyWaitBound: Apply waits for its scale-outs at most ApplyWait,
// less when they finish or its context ends first. On the synctest
// bubble's clock, so the times are exact however busy the machine.
func TestApplyWaitBound(t *testing.T) {
	const wait = 50 * time.Millisecond
	for _, tt := range []struct {
		name         string
		finish, stop time.Duration // when the scale-outs finish, when ctx ends (0: never)
		want         time.Duration
	}{
		{"scale-outs outlast it", 0, 0, wait},
		{"scale-outs finish first", 10 * time.Millisecond, 0, 10 * time.Millisecond},
		{"context ends first", 0, 20 * time.Millisecond, 20 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := &Actuator{applyWait: wait}
				var outcomes sync.WaitGroup
				outcomes.Add(1)
				finish := tt.finish
				if finish == 0 {
					finish = time.Hour // held past every bound under test
				}
				finished := make(chan struct{})
				time.AfterFunc(finish, func() { outcomes.Done(); close(finished) }) // the bubble's clock
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tt.stop > 0 {
					time.AfterFunc(tt.stop, cancel)
				}
				start := time.Now()
				a.waitOutcomes(ctx, &outcomes)
				if got := time.Since(start); got != tt.want {
					t.Errorf("waited %v, want %v", got, tt.want)
				}
				<-finished
			})
		})
	}
}

// TestAdopt: a second actuator takes over renewing the first's replicas.
func TestAdopt(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	fence := testFence(t, c, "leader")
	a1, _ := newTestActuator(t, c, &fakeCopier{}, nil)
	acts := []Action{scaleOut("/a", "n1"), scaleOut("/b", "n2")}
	applyStart := time.Now()
	for _, err := range a1.Apply(t.Context(), fence, acts) {
		if err != nil {
			t.Fatal(err)
		}
	}
	applyTook := time.Since(applyStart)
	putRecord(t, c, Record{Key: "/nolease", Hash: 9, Node: "n3"}) // no lease: not adopted

	a2, _ := newTestActuator(t, newTestClient(t, e), &fakeCopier{}, nil)
	adoptStart := time.Now()
	if err := a2.Adopt(t.Context()); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	adoptTook := time.Since(adoptStart)
	for _, act := range acts {
		exp1, _, ok1 := a1.expiry(act.Hash, act.Node)
		exp2, released, ok2 := a2.expiry(act.Hash, act.Node)
		if !ok1 || !ok2 || released {
			t.Fatalf("%s: held by first %v, adopted %v (released %v)", act.Key, ok1, ok2, released)
		}
		// The first actuator dates its expiry from before its grant, so
		// the real expiry is at most as long after exp1 as Apply took.
		// TimeToLive truncates to seconds and is dated from before the
		// call: the adopted expiry is never past the real one, and at most
		// a second before it plus what Adopt took. Bounds that a slow
		// machine widens with its own slowness, so only a wrong expiry
		// falls outside them.
		if d := exp1.Sub(exp2); d < -applyTook || d > time.Second+adoptTook {
			t.Errorf("%s: adopted expiry %v off the granted %v by %v, want within [-%v, 1s+%v]", act.Key, exp2, exp1, d, applyTook, adoptTook)
		}
	}
	if _, _, ok := a2.expiry(9, "n3"); ok {
		t.Error("record without a lease adopted")
	}
	testwait.Go(t, a2.Run)
	startRenewer(t, a2, fence, acts)
	w := startRegistry(t, c)
	testwait.Holds(t, a2.TTL()+time.Second, "adopted replicas registered", func() bool {
		return w.set(acts[0].Hash) == "[n1]" && w.set(acts[1].Hash) == "[n2]"
	})

	// A record the actuator does not hold is adopted by adoptMissing.
	a3, _ := newTestActuator(t, c, &fakeCopier{}, nil)
	if n := a3.adoptMissing(t.Context(), w.Records(), 1); n != 1 {
		t.Errorf("adoptMissing with limit 1 adopted %d", n)
	}
	if n := a3.adoptMissing(t.Context(), w.Records(), 10); n != 1 {
		t.Errorf("adoptMissing adopted %d more, want the one left", n)
	}
	if n := a3.adoptMissing(t.Context(), w.Records(), 10); n != 0 {
		t.Errorf("adoptMissing again adopted %d, want 0", n)
	}
}

func TestApplyUnknown(t *testing.T) {
	a, reg := newTestActuator(t, deadClient(t), &fakeCopier{}, nil)
	errs := a.Apply(t.Context(), cluster.Fence{}, []Action{
		{Kind: Renew, Key: "/x", Hash: 1, Node: "n1"},
		{Kind: ScaleIn, Key: "/x", Hash: 1, Node: "n1"},
		{Kind: ActionKind(9), Key: "/x"},
	})
	if !errors.Is(errs[0], ErrUnknownReplica) || errs[1] != nil || errs[2] == nil || !strings.Contains(errs[2].Error(), "unknown kind") {
		t.Errorf("errs = %v", errs)
	}
	if n := count(t, reg, "crowdpilot_autopilot_scale_in_total"); n != 1 {
		t.Errorf("scale_in_total = %v", n)
	}
	if err := a.Run(canceled()); err != nil {
		t.Errorf("Run = %v", err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestRenewLostLease: renewing a lease revoked behind the actuator's back
// fails once, is counted, and the lease is forgotten.
func TestRenewLostLease(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	fence := testFence(t, c, "leader")
	a, reg := newTestActuator(t, c, &fakeCopier{}, func(cfg *ActuatorConfig) { cfg.Rand = func() float64 { return 0 } })
	testwait.Go(t, a.Run)
	act := scaleOut("/k", "n1")
	if errs := a.Apply(t.Context(), fence, []Action{act}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	recs := recordsIn(t, c)
	if len(recs) != 1 {
		t.Fatalf("records = %+v", recs)
	}
	if _, err := c.Revoke(t.Context(), clientv3.LeaseID(recs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	// Asked early, the renewal waits for the window: 25% of the TTL left.
	act.Kind = Renew
	asked := time.Now()
	if errs := a.Apply(t.Context(), fence, []Action{act}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	testwait.Eventually(t, testTimeout, "the lost lease forgotten", func() bool {
		_, _, ok := a.expiry(act.Hash, act.Node)
		return !ok
	})
	if d := time.Since(asked); d < a.TTL()/2 {
		t.Errorf("renewal attempted %v after being asked, before the window", d)
	}
	if n := count(t, reg, "crowdpilot_autopilot_lease_renewal_errors_total"); n != 1 {
		t.Errorf("lease_renewal_errors_total = %v, want 1", n)
	}
	if n := count(t, reg, "crowdpilot_autopilot_lease_renewals_total"); n != 0 {
		t.Errorf("lease_renewals_total = %v, want 0", n)
	}
	if errs := a.Apply(t.Context(), fence, []Action{act}); !errors.Is(errs[0], ErrUnknownReplica) {
		t.Errorf("Renew of a forgotten lease = %v, want ErrUnknownReplica", errs[0])
	}
}

// TestScaleOutCanceled: a scale-out whose context ends before it registers
// leaves no record and no lease; one that registered is confirmed as such.
func TestScaleOutCanceled(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	fence := testFence(t, c, "leader")
	ctx, cancel := context.WithCancel(t.Context())
	a, _ := newTestActuator(t, c, CopierFunc(func(context.Context, string, string, string) error {
		cancel() // leadership ends during the copy
		return nil
	}), nil)
	late := make(chan error, 1)
	f := func(_ Action, err error) { late <- err }
	a.onLate.Store(&f)
	// Apply stops waiting when ctx ends; the outcome may come later.
	err := a.Apply(ctx, fence, []Action{scaleOut("/k", "n1")})[0]
	if errors.Is(err, ErrPending) {
		select {
		case err = <-late:
		case <-time.After(5 * time.Second):
			t.Fatal("no outcome")
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("outcome = %v, want context.Canceled", err)
	}
	if recs := recordsIn(t, c); len(recs) != 0 {
		t.Errorf("records = %+v", recs)
	}
	if n := leaseCount(t, c); n != 0 {
		t.Errorf("leases = %d, want 0", n)
	}

	b, _ := newTestActuator(t, c, &fakeCopier{}, nil)
	if errs := b.Apply(t.Context(), fence, []Action{scaleOut("/k", "n1")}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if recs := recordsIn(t, c); len(recs) != 1 {
		t.Errorf("records = %+v, want the one registered", recs)
	}
}
