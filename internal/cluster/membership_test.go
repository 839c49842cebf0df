package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

const testTTL = 2 * time.Second

// expirySlack is allowed beyond the TTL for an abandoned lease to expire:
// etcd scans for expired leases every 500ms, and a loaded test machine adds
// scheduling delay. Tests log the actual time.
const expirySlack = 4 * time.Second

func newTestMember(t *testing.T, c *clientv3.Client, id string, onChange func([]Member)) *Membership {
	t.Helper()
	m, err := NewMembership(MembershipConfig{
		Client:   c,
		Cluster:  "test",
		Self:     Member{ID: id, Addr: "127.0.0.1:80" + id[1:], Admin: "127.0.0.1:90" + id[1:], Zone: "z1"},
		TTL:      testTTL,
		Logger:   testLogger(t),
		OnChange: onChange,
	})
	if err != nil {
		t.Fatalf("NewMembership(%s): %v", id, err)
	}
	return m
}

func ids(ms []Member) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.ID
	}
	return strings.Join(s, ",")
}

func sees(m *Membership, want string) func() bool {
	return func() bool { return ids(m.Members()) == want }
}

// currentLease reads the lease the member is registered under.
func (m *Membership) currentLease() clientv3.LeaseID {
	if err := m.lock(context.Background()); err != nil {
		return clientv3.NoLease
	}
	defer m.unlock()
	return m.lease
}

func TestMembershipJoinDeregisterCrash(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	var (
		clients [3]*clientv3.Client
		ms      [3]*Membership
		runs    [3]*testwait.Runner
		last    atomic.Pointer[[]Member] // n1's latest OnChange snapshot
	)
	for i := range ms {
		clients[i] = newTestClient(t, e)
		var onChange func([]Member)
		if i == 1 {
			onChange = func(s []Member) { last.Store(&s) }
		}
		ms[i] = newTestMember(t, clients[i], fmt.Sprintf("n%d", i), onChange)
		runs[i] = testwait.Go(t, ms[i].Run)
	}

	for _, m := range ms {
		testwait.Eventually(t, 10*time.Second, "all three members", func() bool { return m.Ready() && ids(m.Members()) == "n0,n1,n2" })
	}
	got := ms[1].Members()[2]
	if got.Joined <= 0 || got.Mod < got.Joined || ms[1].ViewRevision() < got.Mod {
		t.Errorf("n2's record as n1 sees it: created at %d, written at %d, n1's view at %d; want 0 < created <= written <= view", got.Joined, got.Mod, ms[1].ViewRevision())
	}
	got.Joined, got.Mod = 0, 0 // from etcd, checked above
	if got != (Member{ID: "n2", Addr: "127.0.0.1:802", Admin: "127.0.0.1:902", Zone: "z1"}) {
		t.Errorf("n2's record as n1 sees it = %+v", got)
	}
	testwait.Eventually(t, 5*time.Second, "OnChange with three members", func() bool {
		p := last.Load()
		return p != nil && ids(*p) == "n0,n1,n2"
	})

	// Deregister: the record goes at once, well before the TTL.
	ctx := t.Context()
	start := time.Now()
	if err := ms[0].Deregister(ctx); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	for _, m := range ms {
		testwait.Eventually(t, testTTL/2, "n0 gone after Deregister", sees(m, "n1,n2"))
	}
	t.Logf("deregistration seen by all in %v", time.Since(start))
	if err := ms[0].Update(ctx, func(m *Member) { m.Draining = true }); !errors.Is(err, ErrDeregistered) {
		t.Errorf("Update after Deregister = %v, want ErrDeregistered", err)
	}

	// Crash: stop n2's Run and close its client without revoking.
	lease := ms[2].currentLease()
	runs[2].Stop(t)
	_ = clients[2].Close()
	start = time.Now()
	ttl, err := clients[1].TimeToLive(ctx, lease)
	if err != nil {
		t.Fatalf("TimeToLive: %v", err)
	}
	if ttl.TTL <= 0 {
		t.Errorf("crashed member's lease was revoked (TTL %d), want it left to expire", ttl.TTL)
	}
	testwait.Eventually(t, testTTL+expirySlack, "n2 expired after crash", sees(ms[1], "n1"))
	t.Logf("crash seen after %v (TTL %v)", time.Since(start), testTTL)
	testwait.Eventually(t, time.Second, "n0 (still watching) sees n1 only", sees(ms[0], "n1"))
}

func TestMembershipUpdate(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	a := newTestMember(t, newTestClient(t, e), "n1", nil)
	b := newTestMember(t, newTestClient(t, e), "n2", nil)

	ctx := t.Context()
	// Before registration the change is kept and reported as unpublished.
	if err := a.Update(ctx, func(m *Member) { m.Zone = "z9" }); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("Update before Run = %v, want ErrNotRegistered", err)
	}
	testwait.Go(t, a.Run)
	testwait.Go(t, b.Run)
	testwait.Eventually(t, 10*time.Second, "both members", func() bool { return a.Ready() && b.Ready() && ids(b.Members()) == "n1,n2" })
	if got := b.Members()[0].Zone; got != "z9" {
		t.Errorf("zone set before Run = %q, want z9", got)
	}

	if err := a.Update(ctx, func(m *Member) { m.PurgeRev = 42; m.Draining = true }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	testwait.Eventually(t, 5*time.Second, "PurgeRev 42 visible to n2", func() bool {
		m := b.Members()
		return len(m) == 2 && m[0].PurgeRev == 42 && m[0].Draining && m[0].Zone == "z9"
	})
	if err := a.Update(ctx, func(m *Member) { m.ID = "other" }); err == nil {
		t.Error("Update changing the ID succeeded")
	}
	if err := a.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
}

func TestMembershipSurvivesEtcdRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e1 := startEtcd(t, dir, "", "")
	clientAddr, peerAddr := hostPort(t, e1.ClientURL()), hostPort(t, e1.PeerURL())
	clients := []*clientv3.Client{newTestClient(t, e1), newTestClient(t, e1)}
	ms := []*Membership{
		newTestMember(t, clients[0], "n1", nil),
		newTestMember(t, clients[1], "n2", nil),
	}
	var runs []*testwait.Runner
	for _, m := range ms {
		runs = append(runs, testwait.Go(t, m.Run))
	}
	for _, m := range ms {
		testwait.Eventually(t, 10*time.Second, "both members", func() bool { return m.Ready() && ids(m.Members()) == "n1,n2" })
	}
	before := slices.Clone(ms[0].Members())
	oldLeases := []clientv3.LeaseID{ms[0].currentLease(), ms[1].currentLease()}

	e1.Close()
	// Wait until both have noticed their leases are lost, then check that
	// the snapshot is untouched.
	for _, m := range ms {
		testwait.Eventually(t, 10*time.Second, "lease loss noticed", func() bool { return m.currentLease() == clientv3.NoLease })
	}
	for _, m := range ms {
		if got := m.Members(); !slices.Equal(got, before) {
			t.Errorf("%s: Members() while etcd is down = %+v, want %+v", m.key, got, before)
		}
	}
	ctx := t.Context()
	if err := ms[0].Update(ctx, func(m *Member) { m.PurgeRev = 7 }); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("Update while etcd is down = %v, want ErrNotRegistered", err)
	}

	e2 := startEtcd(t, dir, clientAddr, peerAddr)
	// Stop the members before e2 closes (cleanups run in reverse), so its
	// Close does not wait out their open streams.
	t.Cleanup(func() {
		for i := range runs {
			runs[i].Stop(t)
			_ = clients[i].Close()
		}
	})
	if e2.ClientURL() != e1.ClientURL() {
		t.Fatalf("restarted at %s, want %s", e2.ClientURL(), e1.ClientURL())
	}
	start := time.Now()
	for _, m := range ms {
		testwait.Eventually(t, 15*time.Second, "re-registration", func() bool {
			got := m.Members()
			return m.currentLease() != clientv3.NoLease && ids(got) == "n1,n2" && got[0].PurgeRev == 7
		})
	}
	t.Logf("converged %v after restart", time.Since(start))

	// The restored old leases expire on their own; the records, now under
	// new leases, must survive that.
	check := newTestClient(t, e2)
	for _, l := range oldLeases {
		testwait.Eventually(t, 3*testTTL, "old lease expiry", func() bool {
			r, err := check.TimeToLive(ctx, l)
			return err == nil && r.TTL == -1
		})
	}
	resp, err := check.Get(ctx, MembersPrefix("test"), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 2 {
		t.Fatalf("member keys after old leases expired: count %v, err %v", resp, err)
	}
	for _, m := range ms {
		if got := ids(m.Members()); got != "n1,n2" {
			t.Errorf("%s sees %s after old leases expired", m.key, got)
		}
	}
}

func TestNewMembershipValidates(t *testing.T) {
	c, err := NewClient(ClientConfig{Endpoints: []string{"127.0.0.1:1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ok := MembershipConfig{Client: c, Cluster: "c", Self: Member{ID: "n1", Addr: "a:1"}}
	tests := []struct {
		name   string
		mutate func(*MembershipConfig)
		ok     bool
	}{
		{"valid", func(*MembershipConfig) {}, true},
		{"no client", func(c *MembershipConfig) { c.Client = nil }, false},
		{"no cluster", func(c *MembershipConfig) { c.Cluster = "" }, false},
		{"slash in cluster", func(c *MembershipConfig) { c.Cluster = "a/b" }, false},
		{"no id", func(c *MembershipConfig) { c.Self.ID = "" }, false},
		{"slash in id", func(c *MembershipConfig) { c.Self.ID = "a/b" }, false},
		{"no addr", func(c *MembershipConfig) { c.Self.Addr = "" }, false},
		{"ttl below minimum", func(c *MembershipConfig) { c.TTL = time.Second }, false},
		{"ttl minimum", func(c *MembershipConfig) { c.TTL = MinTTL }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			_, err := NewMembership(cfg)
			if (err == nil) != tt.ok {
				t.Errorf("NewMembership err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestLeaseSeconds(t *testing.T) {
	for _, tt := range []struct {
		ttl  time.Duration
		want int64
	}{{0, 5}, {2 * time.Second, 2}, {2500 * time.Millisecond, 3}, {time.Minute, 60}} {
		if got, err := leaseSeconds(tt.ttl); err != nil || got != tt.want {
			t.Errorf("leaseSeconds(%v) = %d, %v; want %d", tt.ttl, got, err, tt.want)
		}
	}
}

func TestPrefixes(t *testing.T) {
	if got := Prefix("prod"); got != "/crowdpilot/prod/" {
		t.Errorf("Prefix = %q", got)
	}
	if got := MembersPrefix("prod"); got != "/crowdpilot/prod/members/" {
		t.Errorf("MembersPrefix = %q", got)
	}
	if got := LeaderPrefix("prod"); got != "/crowdpilot/prod/leader" {
		t.Errorf("LeaderPrefix = %q", got)
	}
}
