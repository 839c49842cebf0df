package node

import (
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/crowdpilot/crowdpilot/internal/purge"
)

// siteFetches counts the origin's GETs for target with Host host.
func (o *echoOrigin) siteFetches(host, target string) int {
	n := 0
	for _, s := range o.requests() {
		if s.Method == http.MethodGet && s.Host == host && s.Target == target {
			n++
		}
	}
	return n
}

// waitPurgeLogApplied waits until the purge log holds n entries and every
// node has applied the newest.
func (tc *testCluster) waitPurgeLogApplied(n int64) {
	tc.t.Helper()
	eventually(tc.t, 5*time.Second, func() string {
		if got := tc.purgeLogLen(); got < n {
			return "purge log not yet appended"
		}
		return ""
	})
	nd := tc.nodes[0]
	resp, err := nd.etcd.Get(tc.t.Context(), purge.LogPrefix(nd.cfg.Cluster), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil || len(resp.Kvs) == 0 {
		tc.t.Fatalf("newest purge: %v", err)
	}
	rev := resp.Kvs[0].ModRevision
	eventually(tc.t, 5*time.Second, func() string {
		for _, nd := range tc.nodes {
			if nd.lastPurge.Load() < rev {
				return nd.ID() + " has not applied the write's purge"
			}
		}
		return ""
	})
}

// getSite sends a GET for path with Host host through node i.
func (tc *testCluster) getSite(i int, host, path string) (int, string) {
	tc.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, tc.url(i, path), nil)
	req.Host = host
	status, body, _ := tc.do(req)
	return status, body
}

// TestKeyHostSites (issue 10, finding 1: "a cluster may front several
// sites"): with KeyHost two sites behind one 3-node cluster each get their
// own object for the same path, through every node (forwards carry the
// site, the owner keys and fetches it the same way): one origin fetch per
// site, asked with that site's Host. A purge by key or prefix for one site
// leaves the other cached; a bare path purges it on every site; a write to
// one site invalidates only that site's object. Without KeyHost the two
// Hosts would share one object (the test fails on the old code).
func TestKeyHostSites(t *testing.T) {
	tc, eo := newEchoCluster(t, 3, func(c *Config) {
		c.AllowedHosts = []string{"news.example", "Tickets.example:80"}
		c.KeyHost = true
	})
	sites := []string{"news.example", "tickets.example"}
	// Every node, and a Host spelled differently, reach the same object.
	askAll := func(path string) {
		t.Helper()
		for _, host := range append(sites, "NEWS.example:80") {
			site := canonicalHost(host)
			for i := range 3 {
				status, body := tc.getSite(i, host, path)
				if status != 200 || !strings.Contains(body, "link=http://"+site+"/next") {
					t.Fatalf("Host %s %s via n%d: %d, want %s's page:\n%s", host, path, i, status, site, body)
				}
			}
		}
	}
	writes := 0 // POSTs sent to the origin
	wantFetches := func(path string, news, tickets int) {
		t.Helper()
		if got := eo.siteFetches("news.example", path); got != news {
			t.Errorf("origin GETs of news.example%s: %d, want %d", path, got, news)
		}
		if got := eo.siteFetches("tickets.example", path); got != tickets {
			t.Errorf("origin GETs of tickets.example%s: %d, want %d", path, got, tickets)
		}
		if len(eo.requests()) != eo.siteFetches("news.example", path)+eo.siteFetches("tickets.example", path)+writes {
			t.Errorf("the origin was asked with another Host or target: %+v", eo.requests())
		}
	}
	askAll("/a")
	wantFetches("/a", 1, 1)
	if t.Failed() {
		t.FailNow()
	}

	purge := func(body string) {
		t.Helper()
		if code, out := tc.adminPost(1, "secret", body); code != 200 {
			t.Fatalf("purge %s: %d %v", body, code, out)
		}
	}
	purge(`{"key": "news.example/a", "wait": "5s"}`)
	askAll("/a")
	wantFetches("/a", 2, 1)
	purge(`{"key": "http://tickets.example/a", "wait": "5s"}`)
	askAll("/a")
	wantFetches("/a", 2, 2)
	purge(`{"prefix": "news.example/", "wait": "5s"}`)
	askAll("/a")
	wantFetches("/a", 3, 2)
	purge(`{"key": "/a", "wait": "5s"}`) // a path alone: every site
	askAll("/a")
	wantFetches("/a", 4, 3)

	logged := tc.purgeLogLen()
	// A write to one site reaches the origin with that site's Host and
	// invalidates that site's object only.
	req, _ := http.NewRequest(http.MethodPost, tc.url(2, "/a"), strings.NewReader("x"))
	req.Host = "tickets.example"
	if status, _, _ := tc.do(req); status != 200 {
		t.Fatalf("POST tickets.example/a: %d", status)
	}
	writes++
	if s := eo.requests(); s[len(s)-1].Method != http.MethodPost || s[len(s)-1].Host != "tickets.example" {
		t.Errorf("the write reached the origin as %+v, want a POST with Host tickets.example", s[len(s)-1])
	}
	// The write's purge-log entry is appended in the background: wait
	// until every node has applied it, so it cannot drop the refill below.
	tc.waitPurgeLogApplied(logged + 1)
	askAll("/a")
	wantFetches("/a", 4, 4)

	// A Host not in the list is still refused.
	if status, _ := tc.getSite(0, "evil.example", "/a"); status != http.StatusMisdirectedRequest {
		t.Errorf("Host evil.example: %d, want 421", status)
	}
}

// TestKeyHostConfig: KeyHost without AllowedHosts is a config error
// naming both; with them, a key names its site for a copy (scale-out) and
// for a pin, and a key of another host is refused.
func TestKeyHostConfig(t *testing.T) {
	if _, err := New(Config{ID: "x", Etcd: []string{"http://127.0.0.1:1"}, Origin: "http://127.0.0.1:1", KeyHost: true}); err == nil || !strings.Contains(err.Error(), "key host needs allowed hosts") {
		t.Errorf("KeyHost without AllowedHosts: err %v, want one naming both", err)
	}
	tc, _ := newEchoCluster(t, 1, func(c *Config) {
		c.AllowedHosts = []string{"news.example", "tickets.example"}
		c.KeyHost = true
	})
	nd := tc.nodes[0]
	req, err := nd.requestForKey(t.Context(), "tickets.example/a?b=1")
	if err != nil || req.Host != "tickets.example" || req.URL.RequestURI() != "/a?b=1" {
		t.Errorf("requestForKey tickets.example/a?b=1: %v %v", req, err)
	}
	if _, err := nd.requestForKey(t.Context(), "evil.example/a"); err == nil {
		t.Error("requestForKey evil.example/a: no error")
	}
	for in, want := range map[string]string{
		"news.example/live/1":           "news.example/live/1",
		"http://NEWS.example:80/live/1": "news.example/live/1",
		"/live/1":                       "",
		"evil.example/live/1":           "",
	} {
		got, err := nd.objectKey(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("objectKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
