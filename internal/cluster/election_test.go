package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

type candidate struct {
	id     string
	client *clientv3.Client
	el     *Election
	run    *testwait.Runner
	terms  chan Fence // a fence per term won
	ended  chan Fence // a fence per term whose OnElected ctx ended
}

func newCandidate(t *testing.T, e *Embedded, id string) *candidate {
	t.Helper()
	return newSealedCandidate(t, e, id, nil)
}

// newSealedCandidate is a candidate whose key records seals (nil: none).
func newSealedCandidate(t *testing.T, e *Embedded, id string, records *Records) *candidate {
	t.Helper()
	c := &candidate{id: id, client: newTestClient(t, e), terms: make(chan Fence, 8), ended: make(chan Fence, 8)}
	el, err := NewElection(ElectionConfig{
		Client:  c.client,
		Cluster: "test",
		ID:      id,
		Value:   id + "-admin",
		TTL:     testTTL,
		Logger:  testLogger(t),
		Records: records,
		OnElected: func(ctx context.Context, f Fence) {
			c.terms <- f
			<-ctx.Done()
			c.ended <- f
		},
	})
	if err != nil {
		t.Fatalf("NewElection: %v", err)
	}
	c.el = el
	c.run = testwait.Go(t, el.Run)
	return c
}

func recv(t *testing.T, ch chan Fence, what string) Fence {
	t.Helper()
	select {
	case f := <-ch:
		return f
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return Fence{}
	}
}

func fencedPut(t *testing.T, c *clientv3.Client, f Fence, key, val string) bool {
	t.Helper()
	resp, err := c.Txn(t.Context()).If(f.Cmp().cmp).Then(clientv3.OpPut(key, val)).Commit()
	if err != nil {
		t.Fatalf("fenced txn: %v", err)
	}
	return resp.Succeeded
}

// onlyOneLeader waits until exactly one candidate leads, failing if both
// ever do, and returns (leader, follower).
func onlyOneLeader(t *testing.T, timeout time.Duration, a, b *candidate) (*candidate, *candidate) {
	t.Helper()
	var leader, follower *candidate
	testwait.Eventually(t, timeout, "exactly one leader", func() bool {
		la, lb := a.el.IsLeader(), b.el.IsLeader()
		if la && lb {
			t.Fatal("both candidates lead")
		}
		switch {
		case la:
			leader, follower = a, b
		case lb:
			leader, follower = b, a
		}
		return la != lb
	})
	return leader, follower
}

func TestElectionFailover(t *testing.T) {
	tests := []struct {
		name string
		// stop takes the leader down; within is how soon the other must lead.
		stop   func(t *testing.T, c *candidate)
		within time.Duration
	}{
		{"resign on cancel", func(t *testing.T, c *candidate) { c.run.Stop(t) }, testTTL},
		// A crash leaves the key until its lease expires (TTL, plus etcd's
		// 500ms expiry scan, plus slack for a loaded machine).
		{"crash", func(t *testing.T, c *candidate) { _ = c.client.Close() }, testTTL + expirySlack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := startEtcd(t, t.TempDir(), "", "")
			a, b := newCandidate(t, e, "a"), newCandidate(t, e, "b")
			leader, follower := onlyOneLeader(t, 10*time.Second, a, b)
			f1 := recv(t, leader.terms, "first term")

			id, val, err := follower.el.Leader(t.Context())
			if err != nil || id != leader.id || val != leader.id+"-admin" {
				t.Fatalf("Leader() = %q, %q, %v; want %q", id, val, err, leader.id)
			}
			if !fencedPut(t, follower.client, f1, "/crowdpilot/test/replicas/k", "1") {
				t.Fatal("write fenced by the current leader's fence failed")
			}

			start := time.Now()
			tt.stop(t, leader)
			testwait.Eventually(t, tt.within, "the other candidate to lead", follower.el.IsLeader)
			t.Logf("failover took %v", time.Since(start))
			f2 := recv(t, follower.terms, "second term")
			if f2 == f1 {
				t.Fatalf("new term has the old fence %+v", f1)
			}
			recv(t, leader.ended, "old term's OnElected ctx to end")
			if leader.el.IsLeader() {
				t.Error("old leader still claims leadership")
			}

			if fencedPut(t, follower.client, f1, "/crowdpilot/test/replicas/k", "stale") {
				t.Error("write fenced by the deposed leader's fence succeeded")
			}
			if !fencedPut(t, follower.client, f2, "/crowdpilot/test/replicas/k", "2") {
				t.Error("write fenced by the new leader's fence failed")
			}
			id, _, err = follower.el.Leader(t.Context())
			if err != nil || id != follower.id {
				t.Errorf("Leader() after failover = %q, %v; want %q", id, err, follower.id)
			}

			// The last candidate resigns on cancel: no leader remains.
			follower.run.Stop(t)
			if follower.el.IsLeader() {
				t.Error("IsLeader after Run returned")
			}
			if _, _, err := follower.el.Leader(t.Context()); !errors.Is(err, ErrNoLeader) {
				t.Errorf("Leader() after everyone left = %v, want ErrNoLeader", err)
			}
		})
	}
}

func TestNewElectionValidates(t *testing.T) {
	c, err := NewClient(ClientConfig{Endpoints: []string{"127.0.0.1:1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ok := ElectionConfig{Client: c, Cluster: "c", ID: "n1"}
	tests := []struct {
		name   string
		mutate func(*ElectionConfig)
		ok     bool
	}{
		{"valid", func(*ElectionConfig) {}, true},
		{"no client", func(c *ElectionConfig) { c.Client = nil }, false},
		{"no cluster", func(c *ElectionConfig) { c.Cluster = "" }, false},
		{"no id", func(c *ElectionConfig) { c.ID = "" }, false},
		{"ttl below minimum", func(c *ElectionConfig) { c.TTL = 500 * time.Millisecond }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			if _, err := NewElection(cfg); (err == nil) != tt.ok {
				t.Errorf("NewElection err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
