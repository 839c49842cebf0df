package node

import (
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
// bytes through, resetting every new connection at once (an owner whose
// accept queue overflowed, or a connection cut by a busy machine: a
// failure, but not proof that nothing listens), or closed (nothing
// listens: a refused connection).
type flakyFront struct {
	ln     net.Listener
	target atomic.Pointer[string]
	reset  atomic.Bool

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
	up, err := net.Dial("tcp", *target)
	if err != nil {
		c.Close()
		return
	}
	f.mu.Lock()
	f.conns = append(f.conns, c, up)
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

// cut resets the connections already passed through (pooled by peers) and
// every new one from now on.
func (f *flakyFront) cut() {
	f.reset.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

func (f *flakyFront) close() {
	f.ln.Close()
	f.cut()
}

// TestAFailingOwnerIsNotBypassed: only the owner fetches from the origin.
// When a router cannot reach the owner but has no proof that it is gone
// (its connections are reset rather than refused), the router asks it
// again, then answers 503 with Retry-After: it does not fetch the object
// itself, since the owner may be fetching it at that moment (a busy-machine
// run once saw exactly that: one dial timeout, two origin fetches). Once
// the owner refuses connections (nothing listens: it is gone) the router
// takes the key over at once, with one fetch.
func TestAFailingOwnerIsNotBypassed(t *testing.T) {
	front := newFlakyFront(t)
	tc := newTestCluster(t, 2, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, func(c *Config) {
		if c.ID == "n0" {
			c.AdvertiseAddr = front.addr() // peers reach n0 only through the front
		}
	})
	owner, router := tc.nodes[0], tc.nodes[1]
	addr := owner.DataAddr()
	front.target.Store(&addr)
	// Paths n0 owns.
	var paths []string
	for i := 0; len(paths) < 2; i++ {
		p := "/obj/" + strconv.Itoa(i)
		kr, _ := http.NewRequest(http.MethodGet, "http://x"+p, nil)
		base, _ := router.baseKey(kr)
		if o, _ := router.router.Owner(httpcache.KeyHash(base)); o.ID == owner.ID() {
			paths = append(paths, p)
		}
	}

	front.cut()
	code, body, h, err := tc.get(tc.url(1, paths[0]))
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(cacheStatus(h), "owner-unreachable") {
		t.Errorf("owner resetting connections: %d, Retry-After %q, Cache-Status %q (%q); want a 503 with Retry-After, detail=owner-unreachable",
			code, h.Get("Retry-After"), cacheStatus(h), body)
	}
	if got := tc.origin.FetchesOf(paths[0]); got != 0 {
		t.Fatalf("origin fetches while the owner was only failing = %d, want 0: the router fetched in the owner's place", got)
	}
	if router.router.Suspected(owner.ID()) {
		t.Fatal("two failed exchanges put the owner under suspicion; it takes EjectAfter (3)")
	}

	// The owner is back: it fetches, once, and the router's answer is its.
	front.reset.Store(false)
	code, _, h, err = tc.get(tc.url(1, paths[0]))
	if err != nil || code != http.StatusOK || h.Get("X-Served-By") != owner.ID() {
		t.Fatalf("owner back: %d %v, served by %q; want 200 from %s", code, err, h.Get("X-Served-By"), owner.ID())
	}
	if got := tc.origin.FetchesOf(paths[0]); got != 1 {
		t.Fatalf("origin fetches = %d, want 1 (the owner's)", got)
	}

	// The owner is gone (refused): the router takes the key over at once.
	front.close()
	code, _, h, err = tc.get(tc.url(1, paths[1]))
	if err != nil || code != http.StatusOK || h.Get("X-Served-By") != router.ID() {
		t.Fatalf("owner gone: %d %v, served by %q; want 200 from %s", code, err, h.Get("X-Served-By"), router.ID())
	}
	if got := tc.origin.FetchesOf(paths[1]); got != 1 {
		t.Errorf("origin fetches after the owner went = %d, want 1", got)
	}
	if got := counter(t, router, "crowdpilot_owner_takeovers_total", nil); got != 1 {
		t.Errorf("crowdpilot_owner_takeovers_total = %v, want 1", got)
	}
	if got := counter(t, router, "crowdpilot_shed_total", map[string]string{"reason": "owner_unreachable"}); got != 1 {
		t.Errorf(`crowdpilot_shed_total{reason="owner_unreachable"} = %v, want 1`, got)
	}
}
