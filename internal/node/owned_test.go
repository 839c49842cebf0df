package node

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// noNear turns near copies (and with them reserves) off, so that a miss is
// an owner's miss and peeks count only what the handoff does.
func noNear(c *Config) { c.NearCopy.Disabled = true }

// waitTermSettled waits until nd's term as an owner has lasted peekSettle
// and nd's view shows that each of ids has published acting as an owner.
func waitTermSettled(t *testing.T, nd *Node, ids ...string) {
	t.Helper()
	eventually(t, 15*time.Second, func() string {
		since := nd.term.since.Load()
		if since == 0 {
			return nd.ID() + " has no term as an owner"
		}
		if age := time.Since(time.Unix(0, nd.term.at.Load())); age < peekSettle {
			return fmt.Sprintf("%s's term is %v old", nd.ID(), age)
		}
		for _, id := range ids {
			for _, m := range nd.members.Members() {
				if m.ID == id && m.Owned == 0 {
					return fmt.Sprintf("%s does not see %s's Owned yet", nd.ID(), id)
				}
			}
		}
		return ""
	})
}

// setDrain drains (or undrains) the member id through n0's admin API.
func setDrain(t *testing.T, tc *testCluster, id string, draining bool) {
	t.Helper()
	body := fmt.Sprintf(`{"node": %q, "draining": %v}`, id, draining)
	if code, resp := tc.call(http.MethodPost, tc.admin(0, "/api/v1/drain"), "secret", body); code != http.StatusOK {
		t.Fatalf("drain %s=%v: %d %s", id, draining, code, resp)
	}
}

func sumPeeks(tc *testCluster, results ...string) float64 {
	var sum float64
	for _, nd := range tc.nodes {
		for _, r := range results {
			sum += counterValue(nd.ho.peeks.WithLabelValues(r))
		}
	}
	return sum
}

// TestSettledOwnersSkipPeeks: in a cluster whose members have all been
// there since before any of them owned a key, no candidate can hold a copy
// as a previous owner, and an owner's miss goes to the origin without
// peeking anyone (the peeks would wait behind whatever crowd the peers
// serve). Each miss counts its two skipped candidates.
func TestSettledOwnersSkipPeeks(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: 300 * time.Second}, noNear)
	for _, nd := range tc.nodes {
		waitTermSettled(t, nd)
	}
	const objects = 30
	for i := range objects {
		if s, _, _, err := tc.get(tc.url(i%3, fmt.Sprintf("/obj/%d", i))); err != nil || s != 200 {
			t.Fatalf("/obj/%d: %d %v", i, s, err)
		}
	}
	if got := tc.origin.Fetches(); got != objects {
		t.Fatalf("origin fetches = %d, want %d", got, objects)
	}
	if asked := sumPeeks(tc, "held", "not_held", "error"); asked != 0 {
		t.Errorf("owners peeked %v times, want none", asked)
	}
	if skipped := sumPeeks(tc, "skipped"); skipped != 2*objects {
		t.Errorf("peeks skipped = %v, want %d (two candidates per miss)", skipped, 2*objects)
	}
}

// TestLateJoinerPeeksOldOwners: a node that joins after its peers owned
// keys still peeks them once its term has settled, and takes the keys it
// won without an origin fetch.
func TestLateJoinerPeeksOldOwners(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: 300 * time.Second}, noNear)
	tc.warm()
	nd := tc.addNode("n3", noNear)
	tc.waitMembers(4, tc.nodes...)
	waitTermSettled(t, nd, "n0", "n1", "n2")
	assertTakesWonKeys(t, tc, nd)
}

// TestUndrainedOwnerPeeks: the peers that took a drained node's keys first
// acted as owners while it was draining, after it joined; once it is back,
// its term starts at the undrain, so it still peeks them and takes its keys
// back without an origin fetch.
func TestUndrainedOwnerPeeks(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: 300 * time.Second}, noNear)
	nd := tc.nodes[2]
	setDrain(t, tc, nd.ID(), true)
	tc.waitMembers(2, tc.nodes[0], tc.nodes[1])
	for i := range handoffObjects {
		if s, _, _, err := tc.get(tc.url(i%2, fmt.Sprintf("/obj/%d", i))); err != nil || s != 200 {
			t.Fatalf("/obj/%d: %d %v", i, s, err)
		}
	}
	if got := tc.origin.Fetches(); got != handoffObjects {
		t.Fatalf("origin fetches after warming = %d, want %d", got, handoffObjects)
	}
	setDrain(t, tc, nd.ID(), false)
	tc.waitMembers(3, tc.nodes...)
	waitTermSettled(t, nd, "n0", "n1")
	assertTakesWonKeys(t, tc, nd)
}

// assertTakesWonKeys asks nd for every handoff object and checks that the
// keys nd owns came from a peek, none from the origin.
func assertTakesWonKeys(t *testing.T, tc *testCluster, nd *Node) {
	t.Helper()
	before := tc.origin.Fetches()
	won := 0
	for i := range handoffObjects {
		if _, hash := objectHash(t, nd, i); func() bool { o, _ := nd.router.Owner(hash); return o.ID == nd.ID() }() {
			won++
		}
		if s, _, _, err := tc.get("http://" + nd.DataAddr() + fmt.Sprintf("/obj/%d", i)); err != nil || s != 200 {
			t.Fatalf("/obj/%d via %s: %d %v", i, nd.ID(), s, err)
		}
	}
	if won == 0 {
		t.Fatalf("%s owns none of the %d objects", nd.ID(), handoffObjects)
	}
	if got := tc.origin.Fetches() - before; got != 0 {
		t.Errorf("%s cost %d origin fetches for fresh objects, want 0 (peeks %v, skipped %v)", nd.ID(), got, peekCounts(nd), counterValue(nd.ho.peeks.WithLabelValues("skipped")))
	}
	if held := counterValue(nd.ho.peeks.WithLabelValues("held")); int(held) != won {
		t.Errorf("%s filled %v keys from a previous owner, want the %d it owns", nd.ID(), held, won)
	}
}

// TestTakeoverIsAlwaysPeeked: a node that fetched from the origin in place
// of a suspected owner may hold copies of keys a live member owns, so once
// its record says so every owner's miss peeks it again; its peers are
// still skipped. So is a node whose record predates these fields.
func TestTakeoverIsAlwaysPeeked(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: 300 * time.Second}, noNear)
	n0, n1, n2 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	waitTermSettled(t, n0)
	peer := func(id string) route.Peer {
		p, ok := n0.member(id)
		if !ok {
			t.Fatalf("n0 does not route to %s", id)
		}
		return p
	}
	if n0.needsPeek(peer(n1.ID()), n0.members.Members()) || n0.needsPeek(peer(n2.ID()), n0.members.Members()) {
		t.Fatal("a settled owner peeks peers that never owned a key")
	}
	// A record that says neither Unowned nor Owned (a node from before
	// these fields, in a rolling upgrade) is peeked.
	old := slices.Clone(n0.members.Members())
	for i := range old {
		if old[i].ID == n2.ID() {
			old[i].Unowned, old[i].Owned = false, 0
		}
	}
	if !n0.needsPeek(peer(n2.ID()), old) {
		t.Error("n0 does not peek a peer whose record says nothing of what it owned")
	}
	n1.tookOver()
	eventually(t, 10*time.Second, func() string {
		if !n0.needsPeek(peer(n1.ID()), n0.members.Members()) {
			return "n0 does not peek n1 after its takeover"
		}
		return ""
	})
	if n0.needsPeek(peer(n2.ID()), n0.members.Members()) {
		t.Error("n0 peeks n2, which took nothing over")
	}
	if got := counterValue(n1.m.ownerTakeovers); got != 1 {
		t.Errorf("takeovers counted = %v, want 1", got)
	}
}
