package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// fakeDrainAdmin answers POST /api/v1/drain as a node does and GET
// /api/v1/drain with a status whose in-flight count is busy for the first
// polls (stuck: always).
func fakeDrainAdmin(t *testing.T, busyPolls int64, stuck bool) (*httptest.Server, *[]map[string]any) {
	var posts []map[string]any
	var polls atomic.Int64
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/drain":
			if r.Header.Get("Authorization") != "Bearer tok" {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"error":"missing or wrong bearer token"}`)
				return
			}
			var m map[string]any
			json.NewDecoder(r.Body).Decode(&m)
			posts = append(posts, m)
			state := "draining"
			if m["draining"] == false {
				state = "up"
			}
			json.NewEncoder(w).Encode(map[string]any{"id": "n2", "admin": strings.TrimPrefix(srv.URL, "http://"), "state": state})
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/drain":
			p := polls.Add(1)
			inflight := 0
			if stuck || p <= busyPolls {
				inflight = 3
			}
			json.NewEncoder(w).Encode(map[string]any{"node": "n2", "draining": true, "in_flight": inflight, "peer_requests": 40 + min(p, busyPolls), "peeks_held": 10 + min(p, busyPolls)})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &posts
}

func TestRunDrainCLI(t *testing.T) {
	t.Setenv("CROWDPILOT_ADMIN_TOKEN", "")
	for _, tc := range []struct {
		name   string
		args   []string
		stuck  bool
		code   int
		stdout string // substring
		stderr string // substring
		posted map[string]any
	}{
		{name: "drains", args: []string{"--token", "tok", "--node", "n2", "--quiet", "40ms"}, code: 0,
			stdout: "n2 drained in", posted: map[string]any{"node": "n2", "draining": true}},
		{name: "no wait", args: []string{"--token", "tok", "--node", "n2", "--wait", "0"}, code: 0,
			stdout: "n2 is draining (not waiting", posted: map[string]any{"node": "n2", "draining": true}},
		{name: "undo", args: []string{"--token", "tok", "--node", "n2", "--undo"}, code: 0,
			stdout: "n2 is up", posted: map[string]any{"node": "n2", "draining": false}},
		{name: "still serving", args: []string{"--token", "tok", "--node", "n2", "--wait", "200ms", "--quiet", "40ms"}, stuck: true, code: 1,
			stderr: "n2 still serving after 200ms: 3 requests in flight"},
		{name: "wrong token", args: []string{"--token", "bad"}, code: 1, stderr: "refused by"},
		{name: "no token", args: []string{}, code: 2, stderr: "crowdpilot drain: --token is required"},
		{name: "negative wait", args: []string{"--token", "tok", "--wait", "-1s"}, code: 2, stderr: "--wait -1s is negative"},
		{name: "zero quiet", args: []string{"--token", "tok", "--quiet", "0"}, code: 2, stderr: "--quiet 0s must be positive"},
		{name: "positional node", args: []string{"--token", "tok", "n2"}, code: 2, stderr: `unexpected argument "n2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, posts := fakeDrainAdmin(t, 3, tc.stuck)
			var stdout, stderr bytes.Buffer
			args := append([]string{"--admin", srv.URL}, tc.args...)
			code := runDrain(t.Context(), args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stdout %q stderr %q, want %q / %q", stdout.String(), stderr.String(), tc.stdout, tc.stderr)
			}
			if tc.code == 2 && (len(*posts) != 0 || strings.Count(stderr.String(), "\n") != 1) {
				t.Errorf("bad input: posted %v, stderr %q; want nothing posted and one line", *posts, stderr.String())
			}
			if tc.posted != nil {
				if len(*posts) != 1 || (*posts)[0]["node"] != tc.posted["node"] || (*posts)[0]["draining"] != tc.posted["draining"] {
					t.Errorf("posted %v, want %v", *posts, tc.posted)
				}
			}
		})
	}
}

// TestDrainAgainstUp drains a node of a real local cluster (up: embedded
// etcd, 3 nodes, the demo origin) through another node's admin API.
func TestDrainAgainstUp(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runUp(ctx, []string{
			"--nodes", "3", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--etcd-listen", "127.0.0.1:0", "--etcd-peer", "127.0.0.1:0", "--demo-listen", "127.0.0.1:0",
			"--demo-latency", "1ms", "--data-dir", t.TempDir(), "--log-level", "warn",
		}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("up did not stop")
		}
	}()
	nodeLine := regexp.MustCompile(`node n0\s+data \S+\s+admin (http://\S+)`)
	tokenLine := regexp.MustCompile(`admin token: (\S+)`)
	var admin, token string
	var cluster struct {
		Members []struct{ ID, State string } `json:"members"`
	}
	testwait.Eventually(t, 30*time.Second, "up to show 3 members", func() bool {
		if m := nodeLine.FindStringSubmatch(stdout.String()); m != nil && admin == "" {
			admin = m[1]
		}
		if m := tokenLine.FindStringSubmatch(stdout.String()); m != nil {
			token = m[1]
		}
		select {
		case code := <-done:
			t.Fatalf("up exited %d early: %s %s", code, stdout.String(), stderr.String())
		default:
		}
		if admin == "" || token == "" {
			return false
		}
		_, err := getJSON(t.Context(), http.DefaultClient, admin+"/api/v1/cluster", &cluster)
		return err == nil && len(cluster.Members) == 3
	})
	var out, errOut bytes.Buffer
	code := runDrain(t.Context(), []string{"--admin", admin, "--token", token, "--node", "n2", "--quiet", "200ms", "--wait", "20s"}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "n2 drained in") {
		t.Fatalf("drain exited %d: stdout %q stderr %q", code, out.String(), errOut.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	testwait.Eventually(t, 30*time.Second, "n2 to show as draining", func() bool {
		if _, err := getJSON(t.Context(), http.DefaultClient, admin+"/api/v1/cluster", &cluster); err != nil {
			t.Fatal(err)
		}
		for _, m := range cluster.Members {
			if m.ID == "n2" && m.State == "draining" {
				return true
			}
		}
		return false
	})
}
