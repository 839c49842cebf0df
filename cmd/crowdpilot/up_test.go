package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUpServesAndStopsCleanly runs the one-command local cluster on free
// ports, fetches through a node, and stops it as SIGINT would: exit 0.
func TestUpServesAndStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runUp(ctx, []string{
			"--nodes", "2", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--etcd-listen", "127.0.0.1:0", "--etcd-peer", "127.0.0.1:0", "--demo-listen", "127.0.0.1:0",
			"--demo-latency", "1ms", "--data-dir", t.TempDir(), "--log-level", "warn",
		}, &stdout, &stderr)
	}()
	nodeLine := regexp.MustCompile(`node n1\s+data (http://\S+)\s+admin (http://\S+)`)
	var data, admin string
	testwait.Eventually(t, 30*time.Second, "up to print the node addresses", func() bool {
		select {
		case code := <-done:
			t.Fatalf("up exited %d early: %s %s", code, stdout.String(), stderr.String())
		default:
		}
		if m := nodeLine.FindStringSubmatch(stdout.String()); m != nil {
			data, admin = m[1], m[2]
			return true
		}
		return false
	})
	if !strings.Contains(stdout.String(), "admin token: ") {
		t.Errorf("up did not print the generated admin token: %s", stdout.String())
	}
	// Ready, then a fetch through the demo origin.
	testwait.Eventually(t, 30*time.Second, "the node to be ready", func() bool {
		resp, err := http.Get(admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	resp, err := http.Get(data + "/live/match-1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "/live/match-1 version=0") || resp.Header.Get("X-Served-By") == "" {
		t.Fatalf("GET via up: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	// status reads the same cluster through the admin API, once the node
	// has seen its peer join and the leader has each node's load report.
	loaded := regexp.MustCompile(`(?m)^n[01]\b.*\s-\s+\d+\s+\S+\s+\d+\.\d%$`)
	var out string
	testwait.Eventually(t, 30*time.Second, "status to show both members with their load", func() bool {
		var st, stErr bytes.Buffer
		if code := runStatus(t.Context(), []string{"--admin", admin}, &st, &stErr); code != 0 {
			t.Fatalf("status exited %d: %s", code, stErr.String())
		}
		out = st.String()
		return strings.Contains(out, "MEMBER") && strings.Contains(out, " up ") && len(loaded.FindAllString(out, -1)) == 2
	})
	if !strings.Contains(out, "CPU USED/LIMIT (CORES)") {
		t.Errorf("status CPU column not labelled:\n%s", out)
	}
	// status --json: the same, as one JSON object.
	var st, stErr bytes.Buffer
	if code := runStatus(t.Context(), []string{"--admin", admin, "--json"}, &st, &stErr); code != 0 {
		t.Fatalf("status --json exited %d: %s", code, stErr.String())
	}
	var js struct {
		Cluster struct {
			Members []struct{ ID string } `json:"members"`
		} `json:"cluster"`
		Hot *struct {
			Leader string `json:"leader"`
		} `json:"hot"`
	}
	if err := json.Unmarshal(st.Bytes(), &js); err != nil || len(js.Cluster.Members) != 2 || js.Hot == nil || js.Hot.Leader == "" {
		t.Errorf("status --json = %s (%v); want both members and the leader", st.String(), err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("up exited %d after the signal; stderr: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("up did not stop after the signal")
	}
}

// TestBadFlagsExit2: one line on stderr, exit code 2, nothing started.
func TestBadFlagsExit2(t *testing.T) {
	tests := [][]string{
		{"bogus"},
		{"node", "--no-such-flag"},
		{"node", "--origin", "ftp://x", "--etcd", "http://127.0.0.1:1"},
		{"node", "--origin", "http://x", "--etcd", "http://127.0.0.1:1", "--store-bytes", "lots"},
		{"up", "--nodes", "-1"},
		{"up", "--listen", "nonsense"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, stderr.String())
			}
			if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || lines[0] == "" {
				t.Errorf("stderr = %q, want exactly one line", stderr.String())
			}
		})
	}
}
