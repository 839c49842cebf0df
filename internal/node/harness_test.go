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
)

// testCluster is embedded etcd, an origin and N nodes on loopback.
type testCluster struct {
	t      testing.TB
	etcd   *cluster.Embedded
	dir    string // etcd data dir, for restarting it
	origin *demo.Origin
	srv    *http.Server
	oaddr  string
	nodes  []*Node
	client *http.Client
}

// newTestCluster starts etcd, a demo origin and n nodes, and waits until
// every node sees all n members.
func newTestCluster(t testing.TB, n int, ocfg demo.Config, tweak func(*Config)) *testCluster {
	t.Helper()
	return newTestClusterOrigin(t, n, demo.New(ocfg), tweak)
}

// newTestClusterOrigin is newTestCluster in front of any origin handler
// (tc.origin is set only when it is a demo origin).
func newTestClusterOrigin(t testing.TB, n int, origin http.Handler, tweak func(*Config)) *testCluster {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	etcd, err := cluster.StartEmbedded(ctx, cluster.EmbedConfig{Dir: dir, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, etcd: etcd, dir: dir}
	tc.origin, _ = origin.(*demo.Origin)
	t.Cleanup(etcd.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tc.oaddr = ln.Addr().String()
	tc.srv = &http.Server{Handler: origin}
	if cs, ok := origin.(interface {
		connState(net.Conn, http.ConnState)
	}); ok {
		tc.srv.ConnState = cs.connState // an origin that watches its connections
	}
	go tc.srv.Serve(ln)
	t.Cleanup(func() { tc.srv.Close() })

	tc.client = &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0},
		Timeout:   10 * time.Second,
	}
	t.Cleanup(tc.client.CloseIdleConnections)
	logs := newTestLogs(t)
	for i := range n {
		cfg := DefaultConfig()
		cfg.ID = fmt.Sprintf("n%d", i)
		cfg.Etcd = []string{etcd.ClientURL()}
		cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Origin = "http://" + tc.oaddr
		cfg.MemberTTL = 3 * time.Second
		cfg.StoreBytes = 64 << 20
		cfg.AdminToken = "secret"
		cfg.Logger = logs.logger(fmt.Sprintf("n%d", i))
		// One process holds every node: CPU says nothing per node.
		cfg.SharesProcess = true
		if tweak != nil {
			tweak(&cfg)
		}
		nd, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := nd.Start(ctx); err != nil {
			t.Fatal(err)
		}
		tc.nodes = append(tc.nodes, nd)
		t.Cleanup(func() { nd.Shutdown(context.Background()) })
	}
	t.Cleanup(logs.stop) // runs first: the failure's logs, not the shutdown's
	tc.waitMembers(n, tc.nodes...)
	return tc
}

// close stops every node, then etcd and the origin, now rather than at
// cleanup (benchmarks that build a cluster per iteration).
func (tc *testCluster) close() {
	for _, nd := range tc.nodes {
		nd.Shutdown(context.Background())
	}
	tc.etcd.Close()
	tc.srv.Close()
}

// waitMembers waits until each given node routes to exactly want peers.
func (tc *testCluster) waitMembers(want int, nodes ...*Node) {
	tc.t.Helper()
	eventually(tc.t, 15*time.Second, func() string {
		for _, nd := range nodes {
			if got := len(nd.router.Peers()); got != want || !nd.Ready() {
				return fmt.Sprintf("node %s ready=%v sees %d peers, want %d", nd.ID(), nd.Ready(), got, want)
			}
		}
		return ""
	})
}

func (tc *testCluster) url(i int, path string) string {
	return "http://" + tc.nodes[i].DataAddr() + path
}

// get fetches url and returns status, body and headers.
func (tc *testCluster) get(url string) (int, string, http.Header, error) {
	resp, err := tc.client.Get(url)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

// eventually polls cond until it returns "" or the deadline passes.
func eventually(t testing.TB, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", within, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// burst sends n concurrent GETs for path spread evenly across the nodes
// (all released at once) and returns the responses.
type reply struct {
	status int
	body   string
	header http.Header
	err    error
}

// burstOriginTimeout is the origin timeout (and so the forward timeout) of
// the clusters that take a burst: the burst tests are about collapsing,
// and on a busy machine under the race detector an owner's first answer to
// a thousand-request burst can take seconds; the default 2.5 s would turn
// the test into one of failover instead. Below the test client's 10 s.
const burstOriginTimeout = 8 * time.Second

func (tc *testCluster) burst(n int, path string, nodes []int) []reply {
	out := make([]reply, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s, b, h, err := tc.get(tc.url(nodes[i%len(nodes)], path))
			out[i] = reply{s, b, h, err}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

func all(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func cacheStatus(h http.Header) string { return strings.Join(h.Values("Cache-Status"), ", ") }
