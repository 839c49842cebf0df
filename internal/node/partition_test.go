package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/purge"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// partition is a TCP proxy between one node and etcd that a test can cut:
// cutting closes every connection and refuses new ones, as a network
// partition would.
type partition struct {
	ln     net.Listener
	target string

	mu    sync.Mutex // guards cut and conns
	cut   bool
	conns map[net.Conn]struct{}
}

func newPartition(t *testing.T, target string) *partition {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &partition{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *partition) URL() string { return "http://" + p.ln.Addr().String() }

func (p *partition) serve(c net.Conn) {
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

// getHop fetches path from nd as a peer would (trusted hop header), so nd
// serves it from its own store whichever node owns it.
func (tc *testCluster) getHop(nd *Node, path string) (int, string, http.Header, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+nd.DataAddr()+path, nil)
	req.Header.Set(route.HopHeader, nd.outboundHop(req))
	resp, err := tc.client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

// setCut cuts (or heals) the partition.
func (p *partition) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// TestPartitionedNodeFlushesAfterCompaction: a node cut off from etcd while
// purges are appended and etcd compacts past its position finds, when the
// partition heals, that it cannot replay what it missed. It flushes its
// whole cache (never skipping a purge) and keeps serving.
func TestPartitionedNodeFlushesAfterCompaction(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, nil)
	part := newPartition(t, strings.TrimPrefix(tc.etcd.ClientURL(), "http://"))
	cfg := tc.nodes[0].cfg
	cfg.ID, cfg.Listen, cfg.Admin, cfg.Registry = "np", "127.0.0.1:0", "127.0.0.1:0", nil
	cfg.Etcd = []string{part.URL()}
	cfg.MemberTTL = 10 * time.Second // the partition must not cost it its membership
	nd, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Shutdown(context.Background()) })
	tc.nodes = append(tc.nodes, nd)
	tc.waitMembers(2, tc.nodes...)
	eventually(t, 10*time.Second, func() string {
		if nd.follower.Applied() == 0 || !nd.follower.Connected() {
			return "follower not following yet"
		}
		return ""
	})

	// Every node serves its own copy of these (requests enter with the
	// hop header, so each node serves locally).
	paths := []string{"/live/a", "/news/b"}
	get := func(p string) string {
		t.Helper()
		s, b, h, err := tc.getHop(nd, p)
		if err != nil || s != 200 {
			t.Fatalf("GET %s via np: %d %v", p, s, err)
		}
		return cacheStatus(h) + " " + b[:strings.Index(b, "\n")]
	}
	for _, p := range paths {
		get(p)
	}
	if n := nd.store.Len(); n != len(paths) {
		t.Fatalf("np holds %d entries, want %d", n, len(paths))
	}
	before := nd.follower.Applied()

	part.setCut(true)
	cli, err := cluster.NewClient(cluster.ClientConfig{Endpoints: []string{tc.etcd.ClientURL()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	log := purge.NewLog(cli, "default", nd.records)
	tc.origin.Update("/live/a")
	e, err := log.Append(t.Context(), purge.Request{Tag: "live"})
	if err != nil {
		t.Fatal(err)
	}
	// One more write, then compact everything up to it: the purge above is
	// gone from etcd's history.
	put, err := cli.Put(t.Context(), "/crowdpilot/default/test-bump", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(t.Context(), put.Header.Revision); err != nil {
		t.Fatal(err)
	}
	part.setCut(false)

	eventually(t, 20*time.Second, func() string {
		if nd.follower.Applied() <= e.Rev {
			return fmt.Sprintf("np's purge position %d, want past %d (was %d)", nd.follower.Applied(), e.Rev, before)
		}
		return ""
	})
	if n := nd.store.Len(); n != 0 {
		t.Fatalf("np still holds %d entries after falling behind a compaction; want a flush", n)
	}
	mfs, err := nd.cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	flushes := -1.0
	for _, mf := range mfs {
		if mf.GetName() == "crowdpilot_purge_compaction_flushes_total" {
			flushes = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if flushes != 1 {
		t.Errorf("crowdpilot_purge_compaction_flushes_total = %v, want 1", flushes)
	}
	// And it keeps serving, the new version of the purged object included.
	if got := get("/live/a"); !strings.Contains(got, "version=1") {
		t.Errorf("after the flush: %s, want version 1", got)
	}
}
