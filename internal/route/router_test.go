package route

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

func peers(n int) []Peer {
	out := make([]Peer, n)
	for i := range out {
		out[i] = Peer{ID: fmt.Sprintf("n%d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 10000+i)}
	}
	return out
}

func TestOwnerBalancedAndStable(t *testing.T) {
	r := NewRouter(Config{Self: "n0"})
	r.SetPeers(peers(5))
	const keys = 50000
	owners := make([]string, keys)
	count := map[string]int{}
	for i := range keys {
		p, ok := r.Owner(xxhash.Sum64String(fmt.Sprint("/k/", i)))
		if !ok {
			t.Fatal("no owner")
		}
		owners[i] = p.ID
		count[p.ID]++
	}
	for id, c := range count {
		// Each of 5 peers should own about 20% of keys.
		if c < keys/5*85/100 || c > keys/5*115/100 {
			t.Errorf("peer %s owns %d of %d keys, want about %d", id, c, keys, keys/5)
		}
	}
	// Adding a sixth peer moves only the keys it wins (about 1/6).
	r.SetPeers(peers(6))
	moved := 0
	for i := range keys {
		p, _ := r.Owner(xxhash.Sum64String(fmt.Sprint("/k/", i)))
		if p.ID != owners[i] {
			if p.ID != "n5" {
				t.Fatalf("key %d moved from %s to %s, not to the new peer", i, owners[i], p.ID)
			}
			moved++
		}
	}
	if moved < keys/6*80/100 || moved > keys/6*120/100 {
		t.Errorf("moved %d keys, want about %d", moved, keys/6)
	}
}

func TestPlan(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	ps := peers(3)
	// Find a key owned by n1 whose second choice is n2, seen from n0.
	var hash uint64
	probe := NewRouter(Config{Self: "n0", Now: clock})
	probe.SetPeers(ps)
	for i := 0; ; i++ {
		h := xxhash.Sum64String(fmt.Sprint(i))
		var buf [3]*peer
		rk := probe.tab.Load().rank(h, buf[:0], 0)
		if rk[0].ID == "n1" && rk[1].ID == "n2" {
			hash = h
			break
		}
	}
	tests := []struct {
		name      string
		self      string
		replicas  []string
		suspect   string
		wantLocal bool
		want      []string
		owner     string
		members   int  // targets in R(k); the rest is the successor
		anyOrder  bool // power-of-two-choices picks the first
	}{
		{name: "owner serves itself", self: "n1", wantLocal: true},
		{name: "router forwards to owner then next candidate", self: "n0", want: []string{"n1", "n2"}, owner: "n1", members: 1},
		{name: "next candidate is self: stop there", self: "n2", want: []string{"n1"}, owner: "n1", members: 1},
		{name: "replica serves itself", self: "n0", replicas: []string{"n0"}, wantLocal: true},
		{name: "replica, owner, no successor outside R(k)", self: "n0", replicas: []string{"n2"}, want: []string{"n1", "n2"}, owner: "n1", members: 2, anyOrder: true},
		{name: "suspected owner: next candidate owns", self: "n0", suspect: "n1", want: []string{"n2"}, owner: "n2", members: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRouter(Config{Self: tt.self, Now: clock})
			r.SetPeers(ps)
			if tt.replicas != nil {
				r.SetReplicas(map[uint64][]string{hash: tt.replicas})
			}
			if tt.suspect != "" {
				r.tab.Load().peers[idx(tt.suspect)].downUntil.Store(now.Add(time.Second).UnixNano())
			}
			plan := r.Plan(hash, nil)
			if plan.Local != tt.wantLocal {
				t.Fatalf("Local = %v, want %v", plan.Local, tt.wantLocal)
			}
			var got []string
			for _, tg := range plan.Targets {
				got = append(got, tg.ID())
			}
			if tt.anyOrder {
				slices.Sort(got)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("targets = %v, want %v", got, tt.want)
			}
			if tt.wantLocal {
				return
			}
			if plan.Owner.ID() != tt.owner || len(plan.Members()) != tt.members || plan.Successor != (tt.members < len(tt.want)) {
				t.Errorf("owner %s, %d members, successor %v; want %s, %d", plan.Owner.ID(), len(plan.Members()), plan.Successor, tt.owner, tt.members)
			}
		})
	}
}

func idx(id string) int { return int(id[1] - '0') }

// TestPickSpreadsAcrossReplicas checks that with replicas every member of
// R(k) receives a share of the forwards, the owner about 1/k.
func TestPickSpreadsAcrossReplicas(t *testing.T) {
	ps := peers(5)
	r := NewRouter(Config{Self: "n0"})
	r.SetPeers(ps)
	var hash uint64
	for i := 0; ; i++ {
		hash = xxhash.Sum64String(fmt.Sprint(i))
		if o, _ := r.Owner(hash); o.ID == "n1" {
			break
		}
	}
	r.SetReplicas(map[uint64][]string{hash: {"n2", "n3", "n4"}})
	count := map[string]int{}
	const n = 40000
	for range n {
		plan := r.Plan(hash, nil)
		count[plan.Targets[0].ID()]++
		if len(plan.Targets) < 4 {
			t.Fatalf("plan has %d targets, want the 4 members of R(k)", len(plan.Targets))
		}
	}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		if c := count[id]; c < n/4*80/100 || c > n/4*120/100 {
			t.Errorf("%s picked %d times of %d, want about %d", id, c, n, n/4)
		}
	}
	// A member with forwards piling up loses its share.
	busy := r.tab.Load().peers[2]
	busy.inflight.Store(100)
	count = map[string]int{}
	for range n {
		count[r.Plan(hash, nil).Targets[0].ID()]++
	}
	if count["n2"] > 0 {
		t.Errorf("busy member picked %d times, want 0 (power of two choices)", count["n2"])
	}
}

func TestForwardFailsOverOnlyBeforeWriting(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HopHeader) != "secret-hop" {
			t.Errorf("hop header = %q", r.Header.Get(HopHeader))
		}
		w.Header().Set("Cache-Status", "crowdpilot; hit; ttl=5")
		w.Header().Set("X-Served-By", "n1")
		w.Write([]byte("hello"))
	}))
	defer up.Close()
	f := NewForwarder(ForwarderConfig{Self: "n0", Hop: func(*http.Request) string { return "secret-hop" }})
	defer f.Close()

	req := httptest.NewRequest("GET", "http://example.com/a?b=1", nil)
	rec := httptest.NewRecorder()
	if err := f.Forward(req.Context(), rec, req, strings.TrimPrefix(up.URL, "http://"), "crowdpilot; fwd=bypass"); err != nil {
		t.Fatal(err)
	}
	if rec.Body.String() != "hello" || rec.Header().Get("X-Served-By") != "n1" {
		t.Errorf("got %q served by %q", rec.Body.String(), rec.Header().Get("X-Served-By"))
	}
	if got := rec.Header().Values("Cache-Status"); len(got) != 2 || got[1] != "crowdpilot; fwd=bypass" {
		t.Errorf("Cache-Status = %q, want the peer's member then ours", got)
	}

	// A dead peer: error wrapping ErrPeer, nothing written.
	dead := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	rec = httptest.NewRecorder()
	err := f.Forward(req.Context(), rec, req, addr, "x")
	if err == nil || !strings.Contains(err.Error(), ErrPeer.Error()) {
		t.Fatalf("err = %v, want ErrPeer", err)
	}
	if rec.Code != 200 || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Errorf("something was written after a failed forward: %d %q", rec.Code, rec.Body.String())
	}
}

func BenchmarkPlan(b *testing.B) {
	r := NewRouter(Config{Self: "n0"})
	r.SetPeers(peers(16))
	hashes := make([]uint64, 1024)
	for i := range hashes {
		hashes[i] = xxhash.Sum64String(fmt.Sprint("/k/", i))
	}
	var buf [4]Target
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Plan(hashes[i%len(hashes)], buf[:0])
	}
}

// TestEjection: a peer is suspected after EjectAfter consecutive failures or
// at once when it refuses connections; a success in between resets the
// count; suspicion ends after Suspicion.
func TestEjection(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	ps := peers(3)
	var hash uint64
	r := NewRouter(Config{Self: "n0", Now: clock, EjectAfter: 3, Suspicion: 2 * time.Second})
	r.SetPeers(ps)
	for i := 0; ; i++ {
		hash = xxhash.Sum64String(fmt.Sprint(i))
		if o, _ := r.Owner(hash); o.ID == "n1" {
			break
		}
	}
	owner := func() string { o, _ := r.Owner(hash); return o.ID }
	forward := func(err error) bool {
		t.Helper()
		plan := r.Plan(hash, nil)
		if len(plan.Targets) == 0 {
			t.Fatal("empty plan")
		}
		return r.Begin(plan.Targets[0])(err)
	}
	timeout := fmt.Errorf("forward: %w: no response headers", ErrPeer)
	// A real refusal, as the forwarder reports it: a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	fwd := NewForwarder(ForwarderConfig{Self: "n0"})
	defer fwd.Close()
	refused := fwd.Forward(t.Context(), httptest.NewRecorder(), httptest.NewRequest("GET", "/k", nil), dead, "")
	if !errors.Is(refused, ErrPeer) || !errors.Is(refused, syscall.ECONNREFUSED) {
		t.Fatalf("forward to a closed port: %v, want ErrPeer and ECONNREFUSED", refused)
	}

	// Two failures, a success, two failures: never three in a row.
	for _, err := range []error{timeout, timeout, nil, timeout, timeout} {
		if forward(err) {
			t.Fatalf("ejected after %v without 3 consecutive failures", err)
		}
	}
	if owner() != "n1" {
		t.Fatalf("owner = %s after scattered failures, want n1 still", owner())
	}
	if r.Suspected("n1") {
		t.Fatal("Suspected before any ejection")
	}
	if !forward(timeout) {
		t.Fatal("third consecutive failure did not eject")
	}
	if !r.Suspected("n1") {
		t.Fatal("Suspected = false after the ejection")
	}
	if owner() == "n1" {
		t.Fatal("suspected peer still owns the key")
	}
	now = now.Add(2*time.Second + time.Nanosecond)
	if owner() != "n1" {
		t.Fatalf("owner = %s after the suspicion ended, want n1", owner())
	}
	if forward(nil) || owner() != "n1" {
		t.Fatal("a success must keep the peer")
	}
	if !forward(refused) {
		t.Fatal("a refused connection did not eject at once")
	}
	if owner() == "n1" {
		t.Fatal("refusing peer still owns the key")
	}

	// Fills from the owner, made outside Begin, count the same way.
	now = now.Add(2*time.Second + time.Nanosecond)
	if r.Observe("n1", nil) || r.Suspected("n1") {
		t.Fatal("a successful fill must clear the suspicion")
	}
	if r.Observe("n1", timeout) || r.Observe("n1", timeout) || r.Suspected("n1") {
		t.Fatal("two failed fills ejected the owner")
	}
	if !r.Observe("n1", timeout) || !r.Suspected("n1") {
		t.Fatal("a third failed fill in a row did not eject")
	}
	if r.Observe("nobody", refused) {
		t.Fatal("an unknown peer was ejected")
	}
}
