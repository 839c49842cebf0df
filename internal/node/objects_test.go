package node

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/autopilot"
	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// objects reads GET /api/v1/objects through node i (with the token, so
// keys are shown whole): key -> "pin P cap C".
func (tc *testCluster) objects(i int) map[string]string {
	tc.t.Helper()
	code, body := tc.call("GET", tc.admin(i, "/api/v1/objects"), "secret", "")
	if code != 200 {
		tc.t.Fatalf("GET /api/v1/objects = %d %s", code, body)
	}
	var out struct {
		Objects []struct {
			Key string `json:"key"`
			Pin int    `json:"pin"`
			Cap *int   `json:"cap"`
		} `json:"objects"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		tc.t.Fatalf("decode %s: %v", body, err)
	}
	m := map[string]string{}
	for _, o := range out.Objects {
		c := "-"
		if o.Cap != nil {
			c = fmt.Sprint(*o.Cap)
		}
		m[o.Key] = fmt.Sprintf("pin %d cap %s", o.Pin, c)
	}
	return m
}

// TestObjectSettingsAPI: pins and caps through the admin API: every key
// form names one key, bad input is a 400 with a message and changes
// nothing, the token is required, and the bound is a 409.
func TestObjectSettingsAPI(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{Latency: time.Millisecond}, func(c *Config) {
		c.Autopilot = autopilot.Config{MaxReplicas: 4}
		c.MaxObjectSettings = 2
	})
	key := tc.key("/live/match-1?a=1&b=2")
	put := func(token, body string) (int, string) {
		return tc.call("PUT", tc.admin(0, "/api/v1/objects"), token, body)
	}
	for _, tt := range []struct {
		token, body string
		code        int
		want        string // in the answer
	}{
		{"secret", `{"key": "/live/match-1?b=2&a=1", "pin": 2, "reason": "kick-off"}`, 200, `"pin": 2`},
		{"secret", `{"key": "http://www.example/live/match-1?a=1&b=2", "cap": 3}`, 200, `"cap": 3`},
		{"secret", fmt.Sprintf(`{"key": %q, "pin": 1}`, key), 200, `"pin": 1`},
		{"", `{"key": "/live/match-1", "pin": 1}`, 401, "bearer token"},
		{"wrong", `{"key": "/live/match-1", "pin": 1}`, 401, "bearer token"},
		{"secret", `{"key": "live/match-1", "pin": 1}`, 400, "unknown key format"},
		{"secret", `{"key": "ftp://x/live", "pin": 1}`, 400, "unknown key format"},
		{"secret", `{"key": "//x/live", "pin": 1}`, 400, "unknown key format"},
		{"secret", `{"key": "/a%zz", "pin": 1}`, 400, "unknown key format"},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "pin": -1}`, 400, "pin -1: must be >= 0"},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "cap": -2}`, 400, "cap -2: must be >= 0"},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "pin": 4}`, 400, "pin 4 is above --max-replicas 4 less the owner: at most 3 leased replicas"},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "cap": 0}`, 400, "pin 1 is above cap 0"},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "pin": 1.5}`, 400, `want a whole number or null`},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "pins": 1}`, 400, `unknown field \"pins\" (want key, pin, cap, for, reason)`},
		{"secret", `{"key": "/live/match-1?a=1&b=2"}`, 400, "nothing to change"},
		{"secret", `{"pin": 1}`, 400, `key\" is required`},
		{"secret", `[1]`, 400, "want a JSON object"},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "pin": 1, "for": "0s"}`, 400, `field \"for\": want a duration above 0`},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "pin": 1, "for": "-1m"}`, 400, `field \"for\": want a duration above 0`},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "pin": 1, "for": "soon"}`, 400, `field \"for\": want a duration above 0`},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "pin": 1, "for": 30}`, 400, `field \"for\": want a duration above 0`},
		{"secret", `{"key": "/live/match-1?a=1&b=2", "pin": 1, "for": "9000h"}`, 400, `field \"for\": want a duration above 0`},
	} {
		code, body := put(tt.token, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("PUT %s (token %q) = %d %s, want %d with %q", tt.body, tt.token, code, strings.TrimSpace(body), tt.code, tt.want)
		}
	}
	// The three good ones named one key; the bad ones changed nothing.
	testwait.Eventually(t, 5*time.Second, "node 1 sees the setting", func() bool {
		return fmt.Sprint(tc.objects(1)) == fmt.Sprintf("map[%s:pin 1 cap 3]", key)
	})

	// The bound: a second key fits, a third is refused and counted.
	if code, body := put("secret", `{"key": "/b", "cap": 0}`); code != 200 {
		t.Fatalf("second setting = %d %s", code, body)
	}
	code, body := put("secret", `{"key": "/c", "pin": 1}`)
	if code != 409 || !strings.Contains(body, "--max-object-settings 2") {
		t.Errorf("third setting = %d %s, want 409 naming the bound", code, body)
	}
	if got := counterSum(t, tc.nodes[0], "crowdpilot_object_settings_refused_total"); got != 1 {
		t.Errorf("crowdpilot_object_settings_refused_total = %v, want 1", got)
	}
	// A changed setting still fits at the bound; clearing one makes room.
	if code, body := put("secret", `{"key": "/b", "cap": null, "pin": 3}`); code != 200 || !strings.Contains(body, `"pin": 3`) || strings.Contains(body, `"cap"`) {
		t.Errorf("changing a held setting at the bound = %d %s", code, body)
	}
	if code, body := tc.call("DELETE", tc.admin(1, "/api/v1/objects?key="+url.QueryEscape("/b")), "secret", ""); code != 200 || !strings.Contains(body, `"cleared": true`) {
		t.Errorf("DELETE = %d %s", code, body)
	}
	if code, _ := tc.call("DELETE", tc.admin(1, "/api/v1/objects"), "secret", ""); code != 400 {
		t.Errorf("DELETE without a key = %d, want 400", code)
	}
	if code, _ := tc.call("DELETE", tc.admin(1, "/api/v1/objects?key=/c"), "", ""); code != 401 {
		t.Errorf("DELETE without the token = %d, want 401", code)
	}
	if code, body := put("secret", `{"key": "/c", "pin": 1}`); code != 200 {
		t.Errorf("after a clear = %d %s", code, body)
	}
	// pin 0 and cap null: nothing left, the setting is gone.
	if code, body := put("secret", `{"key": "/c", "pin": 0}`); code != 200 || !strings.Contains(body, `"cleared": true`) {
		t.Errorf("pin 0 = %d %s, want cleared", code, body)
	}
	testwait.Eventually(t, 5*time.Second, "the listing shows what is left", func() bool {
		return fmt.Sprint(tc.objects(0)) == fmt.Sprintf("map[%s:pin 1 cap 3]", key)
	})
	// Without the token the listing redacts query values, like /api/v1/hot.
	if code, body := tc.call("GET", tc.admin(0, "/api/v1/objects"), "", ""); code != 200 || !strings.Contains(body, "a=REDACTED") {
		t.Errorf("GET without the token = %d %s, want query values redacted", code, body)
	}
}

// TestObjectLimitsInCluster: a pin set through any node gets a cold key
// its replicas and keeps them past the hold and a lease TTL; a capped hot
// key stays at its cap while its crowd calls for more; clearing the pin
// lets the replicas go.
func TestObjectLimitsInCluster(t *testing.T) {
	tc := newTestCluster(t, 4, demo.Config{Latency: time.Millisecond, MaxAge: time.Minute, Capacity: 64}, func(c *Config) {
		c.Autopilot = autopilot.Config{TargetRPS: 20, MaxReplicas: 4, ReplicaTTL: 3 * time.Second, Cooldown: time.Second, ScaleInHold: time.Second}
		c.ElectionTTL = 2 * time.Second
		c.ReportInterval = 200 * time.Millisecond
	})
	eventually(t, 15*time.Second, func() string {
		if l, _, err := tc.hot(0); err != nil || l == "" {
			return fmt.Sprintf("no leader yet (%v)", err)
		}
		return ""
	})
	routed := func(path string) (lo, hi int) {
		lo = 1 << 30
		for _, nd := range tc.nodes {
			n := len(nd.router.Replicas(tc.hashOf(path)))
			lo, hi = min(lo, n), max(hi, n)
		}
		return lo, hi
	}

	// A cold key, never requested, pinned through node 3.
	const cold = "/cold/pinned"
	if code, body := tc.call("PUT", tc.admin(3, "/api/v1/objects"), "secret", `{"key": "`+cold+`", "pin": 2, "reason": "pre-warm"}`); code != 200 {
		t.Fatalf("pin = %d %s", code, body)
	}
	eventually(t, 15*time.Second, func() string {
		if lo, _ := routed(cold); lo != 2 {
			return fmt.Sprintf("a router sees %d replicas of the pinned key, want 2", lo)
		}
		return ""
	})
	// Held through the scale-in hold, the cooldown and a lease TTL: renewed.
	testwait.Holds(t, 4*time.Second, "two replicas of the pinned cold key", func() bool {
		lo, hi := routed(cold)
		return lo == 2 && hi == 2
	})
	events := tc.events(0)
	for _, want := range []string{
		`scale_out ` + tc.key(cold) + `: operator pin of 2 leased replicas ("pre-warm"), 0 held; want 3`,
		`operator ` + tc.key(cold) + `: operator set pin 2 (at least 2 leased replicas): "pre-warm"`,
	} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}

	// A hot key capped at one leased replica.
	const hot = "/hot/capped"
	if code, body := tc.call("PUT", tc.admin(1, "/api/v1/objects"), "secret", `{"key": "`+hot+`", "cap": 1}`); code != 200 {
		t.Fatalf("cap = %d %s", code, body)
	}
	testwait.Eventually(t, 5*time.Second, "the leader's node sees the cap", func() bool {
		return tc.objects(0)[tc.key(hot)] == "pin 0 cap 1"
	})
	c := tc.startCrowd(hot, func() []int { return all(4) }, 12)
	defer func() {
		select {
		case <-c.stop:
		default:
			c.end()
		}
	}()
	// Hot enough to want every member it may have (4 × 20/s), yet one
	// replica.
	eventually(t, 20*time.Second, func() string {
		h, ok := tc.hotObject(0, hot)
		if !ok || h.Rate < 4*20 || len(h.Replicas) != 1 {
			return fmt.Sprintf("hot view %+v, want rate >= 80/s and 1 replica", h)
		}
		if h.Desired != 2 || h.Cap == nil || *h.Cap != 1 {
			return fmt.Sprintf("hot view %+v, want desired 2 under cap 1", h)
		}
		return ""
	})
	testwait.Holds(t, 3*time.Second, "at most one replica of the capped hot key", func() bool {
		_, hi := routed(hot)
		return hi <= 1
	})
	c.end()
	if f := c.failures.Load(); f != 0 {
		t.Errorf("%d of %d requests failed; first: %s", f, c.total.Load(), c.firstErr)
	}

	// Cleared: the pinned key's replicas are released and lapse.
	if code, body := tc.call("DELETE", tc.admin(2, "/api/v1/objects?key="+url.QueryEscape(cold)), "secret", ""); code != 200 {
		t.Fatalf("clear = %d %s", code, body)
	}
	eventually(t, 20*time.Second, func() string {
		if _, hi := routed(cold); hi != 0 {
			return fmt.Sprintf("a router still sees %d replicas of the unpinned key", hi)
		}
		return ""
	})
	if events := tc.events(0); !strings.Contains(events, "operator "+tc.key(cold)+": operator cleared the pin and cap") {
		t.Errorf("events lack the clear:\n%s", events)
	}
}

// events reads /api/v1/events through node i, one "action key: reason"
// line per event.
func (tc *testCluster) events(i int) string {
	tc.t.Helper()
	code, body := tc.call("GET", tc.admin(i, "/api/v1/events"), "secret", "")
	if code != 200 {
		tc.t.Fatalf("GET /api/v1/events = %d %s", code, body)
	}
	var out struct {
		Events []autopilot.Event `json:"events"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		tc.t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range out.Events {
		fmt.Fprintf(&b, "%s %s: %s\n", e.Action, e.Key, e.Reason)
	}
	return b.String()
}

// hotObject is the hot view of path through node i.
func (tc *testCluster) hotObject(i int, path string) (autopilot.HotObject, bool) {
	tc.t.Helper()
	code, body := tc.call("GET", tc.admin(i, "/api/v1/hot"), "secret", "")
	if code != 200 {
		return autopilot.HotObject{}, false
	}
	var out struct {
		Hot []autopilot.HotObject `json:"hot"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		tc.t.Fatal(err)
	}
	for _, h := range out.Hot {
		if h.Key == tc.key(path) {
			return h, true
		}
	}
	return autopilot.HotObject{}, false
}

// counterSum sums the counter name over its series on nd.
func counterSum(t *testing.T, nd *Node, name string) float64 {
	t.Helper()
	mfs, err := nd.cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestObjectSettingLapses: a setting given "for" a while is listed with its
// end, lapses by itself then (etcd's lease deletes it, freeing its place in
// the bound), and the leader lists the lapse among its events; "for": null
// makes a setting hold until cleared again.
func TestObjectSettingLapses(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{Latency: time.Millisecond}, func(c *Config) {
		c.Autopilot = autopilot.Config{MaxReplicas: 4}
		c.MaxObjectSettings = 1
	})
	put := func(body string) (int, string) {
		return tc.call("PUT", tc.admin(0, "/api/v1/objects"), "secret", body)
	}
	a, b := tc.key("/a"), tc.key("/b")
	code, body := put(`{"key": "/a", "pin": 1, "for": "2s", "reason": "kick-off"}`)
	if code != 200 || !strings.Contains(body, `"until"`) {
		t.Fatalf("PUT with for = %d %s, want the setting with its until", code, body)
	}
	// Held meanwhile: at the bound of 1, another key is refused.
	if code, body := put(`{"key": "/b", "pin": 1}`); code != 409 {
		t.Fatalf("second setting while the first holds = %d %s, want 409", code, body)
	}
	testwait.Eventually(t, 5*time.Second, "node 1 lists the setting", func() bool {
		return fmt.Sprint(tc.objects(1)) == fmt.Sprintf("map[%s:pin 1 cap -]", a)
	})
	testwait.Eventually(t, 20*time.Second, "the setting lapses on every node", func() bool {
		return len(tc.objects(0)) == 0 && len(tc.objects(1)) == 0
	})
	lapsed := func() bool {
		for i := range tc.nodes {
			_, body := tc.call("GET", tc.admin(i, "/api/v1/events"), "secret", "")
			if strings.Contains(body, "lapsed") && strings.Contains(body, a) {
				return true
			}
		}
		return false
	}
	testwait.Eventually(t, 10*time.Second, "the leader's events list the lapse", lapsed)
	// Its place is free again; "for": null takes an end away.
	if code, body := put(`{"key": "/b", "pin": 1, "for": "1h"}`); code != 200 {
		t.Fatalf("after the lapse = %d %s", code, body)
	}
	if code, body := put(`{"key": "/b", "for": null, "pin": 2}`); code != 200 || strings.Contains(body, `"until"`) {
		t.Fatalf("for null = %d %s, want no until", code, body)
	}
	testwait.Eventually(t, 5*time.Second, "node 1 lists the changed setting", func() bool {
		return fmt.Sprint(tc.objects(1)) == fmt.Sprintf("map[%s:pin 2 cap -]", b)
	})
}
