package node

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/httpcache"
)

// flakyFront stands between a node's data port and its peers: passing
// bytes through, stalling every new connection (accepted, never answered:
// an owner on a machine too busy to run it), resetting every new one at
// once (an owner going away: its exchanges and queued connections cut), or
// closed (nothing listens: a refused connection).
type flakyFront struct {
	ln     net.Listener
	target atomic.Pointer[string]
	reset  atomic.Bool
	stall  atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
}

func newFlakyFront(t *testing.T) *flakyFront {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyFront{ln: ln}
	t.Cleanup(f.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *flakyFront) addr() string { return f.ln.Addr().String() }

func (f *flakyFront) serve(c net.Conn) {
	target := f.target.Load()
	if f.reset.Load() || target == nil {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, not FIN
		}
		c.Close()
		return
	}
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
	if f.stall.Load() {
		io.Copy(io.Discard, c) // read, never answer, until the peer or cut closes it
		c.Close()
		return
	}
	up, err := net.Dial("tcp", *target)
	if err != nil {
		c.Close()
		return
	}
	f.mu.Lock()
	f.conns = append(f.conns, up)
	f.mu.Unlock()
	go func() { copyAll(up, c); up.Close() }()
	copyAll(c, up)
	c.Close()
}

func copyAll(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// dropAll closes the connections already accepted (pooled by peers).
func (f *flakyFront) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

func (f *flakyFront) close() {
	f.ln.Close()
	f.reset.Store(true)
	f.dropAll()
}

// TestAFailingOwnerIsNotBypassed: only the owner fetches from the origin.
// When a router's exchanges with the owner time out, the owner may be
// alive on a busy machine and fetching the object at that moment (a
// busy-machine run once saw exactly that: one dial timeout, two origin
// fetches): the router asks it again, then answers 503 with Retry-After,
// and fetches nothing itself. An owner whose connections are reset is
// going away (a node killed mid-load cuts its exchanges and its queued
// connections before its port refuses; a busy run once saw a 503 from
// that): the router asks until its own failures make the owner suspected,
// then takes the key over with one fetch. One that refuses is gone at once.
func TestAFailingOwnerIsNotBypassed(t *testing.T) {
	slow, gone := newFlakyFront(t), newFlakyFront(t)
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, func(c *Config) {
		// Short timeouts: the stalled phase waits out two of them.
		c.OriginTimeout, c.ForwardTimeout = 300*time.Millisecond, 600*time.Millisecond
		switch c.ID { // peers reach n0 and n2 only through their fronts
		case "n0":
			c.AdvertiseAddr = slow.addr()
		case "n2":
			c.AdvertiseAddr = gone.addr()
		}
	})
	router := tc.nodes[1]
	for i, f := range map[int]*flakyFront{0: slow, 2: gone} {
		addr := tc.nodes[i].DataAddr()
		f.target.Store(&addr)
	}
	// Paths each of n0 and n2 owns.
	owned := func(owner *Node, n int) []string {
		var paths []string
		for i := 0; len(paths) < n; i++ {
			p := "/obj/" + strconv.Itoa(i)
			kr, _ := http.NewRequest(http.MethodGet, "http://x"+p, nil)
			base, _ := router.baseKey(kr)
			if o, _ := router.router.Owner(httpcache.KeyHash(base)); o.ID == owner.ID() {
				paths = append(paths, p)
			}
		}
		return paths
	}
	paths, gonePaths := owned(tc.nodes[0], 2), owned(tc.nodes[2], 1)
	owner := tc.nodes[0]

	// Stalled: every exchange times out.
	slow.stall.Store(true)
	slow.dropAll()
	code, body, h, err := tc.get(tc.url(1, paths[0]))
	if err != nil {
		t.Fatal(err)
	}
	// The fill's own deadline (OriginTimeout) may end it before a second
	// timed-out round: either way a fast 503, and no fetch.
	cs := cacheStatus(h)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" ||
		!strings.Contains(cs, "owner-unreachable") && !strings.Contains(cs, "origin-timeout") {
		t.Errorf("owner stalled: %d, Retry-After %q, Cache-Status %q (%q); want a 503 with Retry-After, detail=owner-unreachable or origin-timeout",
			code, h.Get("Retry-After"), cs, body)
	}
	if got := tc.origin.FetchesOf(paths[0]); got != 0 {
		t.Fatalf("origin fetches while the owner was only slow = %d, want 0: the router fetched in the owner's place", got)
	}
	if router.router.Suspected(owner.ID()) {
		t.Fatal("two timed-out exchanges put the owner under suspicion; it takes EjectAfter (3)")
	}
	held := func() float64 {
		return shedCount(t, router, "owner_unreachable") + shedCount(t, router, "origin_timeout")
	}
	if got := held(); got != 1 {
		t.Errorf(`crowdpilot_shed_total{reason=~"owner_unreachable|origin_timeout"} = %v, want 1`, got)
	}

	// The owner is back: it fetches, once, and the router's answer is its.
	slow.stall.Store(false)
	slow.dropAll()
	code, _, h, err = tc.get(tc.url(1, paths[0]))
	if err != nil || code != http.StatusOK || h.Get("X-Served-By") != owner.ID() {
		t.Fatalf("owner back: %d %v, served by %q; want 200 from %s", code, err, h.Get("X-Served-By"), owner.ID())
	}
	if got := tc.origin.FetchesOf(paths[0]); got != 1 {
		t.Fatalf("origin fetches = %d, want 1 (the owner's)", got)
	}

	// Reset: the owner is going away. No 503: the router's own failures
	// make it suspected, and the key moves with one fetch.
	slow.reset.Store(true)
	slow.dropAll()
	code, _, h, err = tc.get(tc.url(1, paths[1]))
	if err != nil || code != http.StatusOK || h.Get("X-Served-By") == owner.ID() {
		t.Fatalf("owner resetting: %d %v, served by %q; want 200 from another node", code, err, h.Get("X-Served-By"))
	}
	if got := tc.origin.FetchesOf(paths[1]); got != 1 {
		t.Errorf("origin fetches after the owner reset = %d, want 1", got)
	}
	if !router.router.Suspected(owner.ID()) {
		t.Error("the owner reset every exchange, and is not suspected")
	}

	// Refused: the owner is gone; the router takes the key over at once.
	gone.close()
	code, _, h, err = tc.get(tc.url(1, gonePaths[0]))
	if err != nil || code != http.StatusOK || h.Get("X-Served-By") == tc.nodes[2].ID() {
		t.Fatalf("owner gone: %d %v, served by %q; want 200 from another node", code, err, h.Get("X-Served-By"))
	}
	if got := tc.origin.FetchesOf(gonePaths[0]); got != 1 {
		t.Errorf("origin fetches after the owner went = %d, want 1", got)
	}
	// The router takes over, or forwards to the key's successor, which does.
	var takeovers float64
	for _, nd := range tc.nodes {
		takeovers += counter(t, nd, "crowdpilot_owner_takeovers_total", nil)
	}
	if takeovers != 2 {
		t.Errorf("crowdpilot_owner_takeovers_total summed over the nodes = %v, want 2 (reset, refused)", takeovers)
	}
	if got := held(); got != 1 {
		t.Errorf("sheds after the stalled phase: %v, want still 1: a reset or refused owner costs no 503", got)
	}
}
