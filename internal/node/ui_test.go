package node

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/web"
)

func (tc *testCluster) admin(i int, path string) string {
	return "http://" + tc.nodes[i].AdminAddr() + path
}

// call sends method to url with an optional bearer token and body, and returns
// the status and body.
func (tc *testCluster) call(method, url, token, body string) (int, string) {
	tc.t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		tc.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := tc.client.Do(req)
	if err != nil {
		tc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestUIServedWithCSP(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{Latency: time.Millisecond}, nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(tc.admin(0, "/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET / = %d Location %q, want 302 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/app.css", "/ui/vendor/uPlot.iife.min.js", "/ui/vendor/uPlot.min.css"} {
		resp, err := tc.client.Get(tc.admin(0, p))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(b) == 0 {
			t.Errorf("GET %s = %d with %d bytes", p, resp.StatusCode, len(b))
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != web.CSP {
			t.Errorf("GET %s CSP = %q", p, got)
		}
	}
	if s, _ := tc.call(http.MethodGet, tc.admin(0, "/ui/nothing.js"), "", ""); s != http.StatusNotFound {
		t.Errorf("GET /ui/nothing.js = %d, want 404", s)
	}
}

func TestStatsCountsRequests(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: time.Minute}, nil)
	for range 5 {
		if s, _, _, err := tc.get(tc.url(0, "/stats/a")); err != nil || s != 200 {
			t.Fatalf("GET = %d, %v", s, err)
		}
	}
	// A request is counted when its handler returns, which may be just
	// after the client has its answer: wait for the counts.
	eventually(t, 5*time.Second, func() string {
		var one nodeStats
		s, body := tc.call(http.MethodGet, tc.admin(0, "/api/v1/stats"), "", "")
		if s != 200 {
			return fmt.Sprintf("stats = %d %s", s, body)
		}
		if err := json.Unmarshal([]byte(body), &one); err != nil {
			return err.Error()
		}
		var n float64
		for _, v := range one.Requests {
			n += v
		}
		if one.Node != "n0" || n != 5 {
			return fmt.Sprintf("n0 stats: node %q, %v requests, want n0 and 5: %s", one.Node, n, body)
		}
		return ""
	})

	eventually(t, 5*time.Second, func() string {
		var all struct {
			Self  string      `json:"self"`
			Nodes []nodeStats `json:"nodes"`
		}
		s, body := tc.call(http.MethodGet, tc.admin(1, "/api/v1/stats?scope=cluster"), "", "")
		if s != 200 {
			return fmt.Sprintf("cluster stats = %d %s", s, body)
		}
		if err := json.Unmarshal([]byte(body), &all); err != nil {
			return err.Error()
		}
		var origin, requests float64
		seen := map[string]bool{}
		for _, st := range all.Nodes {
			if st.Error != "" {
				return fmt.Sprintf("node %s: %s", st.Node, st.Error)
			}
			seen[st.Node] = true
			origin += st.OriginFetches
			for _, v := range st.Requests {
				requests += v
			}
		}
		// 5 requests at n0; those it forwarded are counted again where served.
		if all.Self != "n1" || len(seen) != 3 || origin != 1 || requests < 5 {
			return fmt.Sprintf("cluster stats: self %q, nodes %v, origin fetches %v, requests %v; want n1, 3 nodes, 1 fetch, >= 5 requests: %s",
				all.Self, seen, origin, requests, body)
		}
		return ""
	})
	if s, _ := tc.call(http.MethodGet, tc.admin(0, "/api/v1/stats?scope=galaxy"), "", ""); s != http.StatusBadRequest {
		t.Errorf("scope=galaxy = %d, want 400", s)
	}
}

func TestDrain(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond}, nil)
	state := func(i int, id string) string {
		_, body := tc.call(http.MethodGet, tc.admin(i, "/api/v1/cluster"), "", "")
		var c struct {
			Members []memberView `json:"members"`
		}
		json.Unmarshal([]byte(body), &c)
		for _, m := range c.Members {
			if m.ID == id {
				return m.State
			}
		}
		return "absent"
	}
	routesTo := func(i int, id string) bool {
		for _, p := range tc.nodes[i].router.Peers() {
			if p.ID == id {
				return true
			}
		}
		return false
	}

	// Refused without the right token or with a bad body, and nothing changes.
	bad := []struct {
		name, token, body string
		want              int
	}{
		{"no token", "", "", http.StatusUnauthorized},
		{"wrong token", "nope", "", http.StatusUnauthorized},
		{"unknown field", "secret", `{"nod": "n2"}`, http.StatusBadRequest},
		{"not an object", "secret", `[1]`, http.StatusBadRequest},
		{"two objects", "secret", `{} {}`, http.StatusBadRequest},
		{"wrong type", "secret", `{"draining": "yes"}`, http.StatusBadRequest},
		{"too large", "secret", `{"node": "` + strings.Repeat("x", 2000) + `"}`, http.StatusRequestEntityTooLarge},
		{"unknown node", "secret", `{"node": "n9"}`, http.StatusNotFound},
	}
	for _, b := range bad {
		if s, body := tc.call(http.MethodPost, tc.admin(0, "/api/v1/drain"), b.token, b.body); s != b.want {
			t.Errorf("%s: %d %s, want %d", b.name, s, body, b.want)
		}
	}
	for i := range 3 {
		if st := state(0, fmt.Sprintf("n%d", i)); st != "up" {
			t.Fatalf("after refused drains n%d is %s", i, st)
		}
	}

	// n0 drains n2 through n2's own admin listener: every router drops it.
	if s, body := tc.call(http.MethodPost, tc.admin(0, "/api/v1/drain"), "secret", `{"node": "n2"}`); s != 200 || !strings.Contains(body, `"draining"`) {
		t.Fatalf("drain n2 via n0 = %d %s", s, body)
	}
	eventually(t, 10*time.Second, func() string {
		if routesTo(0, "n2") || routesTo(1, "n2") {
			return "n0 or n1 still routes to n2"
		}
		if st := state(1, "n2"); st != "draining" {
			return "n2 is " + st
		}
		return ""
	})
	// Data requests still work everywhere, the drained node forwards.
	for i := range 3 {
		if s, _, _, err := tc.get(tc.url(i, "/drain/x")); err != nil || s != 200 {
			t.Errorf("GET via n%d while n2 drains = %d, %v", i, s, err)
		}
	}

	// Undrain on n2 itself: routed to again.
	if s, body := tc.call(http.MethodPost, tc.admin(2, "/api/v1/drain"), "secret", `{"draining": false}`); s != 200 {
		t.Fatalf("undrain = %d %s", s, body)
	}
	eventually(t, 10*time.Second, func() string {
		if !routesTo(0, "n2") || !routesTo(1, "n2") || state(0, "n2") != "up" {
			return "n2 not back"
		}
		return ""
	})
}
