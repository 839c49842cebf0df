package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// cacheServer answers every request, alternating X-Served-By between two
// nodes and Cache-Status between a hit and a miss, and counts the requests
// for hot.
type cacheServer struct {
	URL                   string
	requests, hotRequests atomic.Int64
}

func (s *cacheServer) handler(hot string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		if r.URL.Path == hot {
			s.hotRequests.Add(1)
		}
		w.Header().Set("X-Served-By", fmt.Sprintf("node-%d", n%2))
		if n%2 == 0 {
			w.Header().Set("Cache-Status", "crowdpilot; hit")
		} else {
			w.Header().Set("Cache-Status", "crowdpilot; fwd=miss; stored")
		}
		fmt.Fprintln(w, "hello")
	})
}

// newCacheServer serves a cacheServer on a real loopback listener.
func newCacheServer(t *testing.T, hot string) *cacheServer {
	s := &cacheServer{}
	srv := httptest.NewServer(s.handler(hot))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// adminHandler serves /metrics with an origin fetch counter that grows by 5
// per scrape and 3 active replicas of the hot object (and 7 of another).
func adminHandler(hot string) http.Handler {
	var scrapes atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		n := scrapes.Add(1)
		fmt.Fprintf(w, "# TYPE crowdpilot_origin_fetches_total counter\n")
		fmt.Fprintf(w, "crowdpilot_origin_fetches_total{result=\"ok\"} %d\n", 5*n)
		fmt.Fprintf(w, "crowdpilot_origin_fetches_total{result=\"error\"} 0\n")
		fmt.Fprintf(w, "# TYPE crowdpilot_autopilot_replicas_active gauge\n")
		fmt.Fprintf(w, "crowdpilot_autopilot_replicas_active{key=\"example.com%s\"} 3\n", hot)
		fmt.Fprintf(w, "crowdpilot_autopilot_replicas_active{key=\"example.com/obj/1\"} 7\n")
	})
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestCommandSmoke runs the whole command for 2 s with a crowd, a live and
// a dead admin, and checks the table, the JSON and the PNG. It runs on a
// fake clock over a pipeNet, so each second's scrape lands in its second
// however busy the machine is.
func TestCommandSmoke(t *testing.T) {
	const hot = "/live/match-1"
	dir := t.TempDir()
	outJSON, outPNG := filepath.Join(dir, "run.json"), filepath.Join(dir, "run.png")
	srv := &cacheServer{}
	var stdout, stderr, progress bytes.Buffer
	synctest.Test(t, func(t *testing.T) {
		pn := newPipeNet()
		url := pn.serve("node:80", srv.handler(hot))
		pn.serve("admin:9080", adminHandler(hot))
		cmd := Command{Stdout: &stdout, Stderr: &stderr, Progress: &progress, Transport: pn.transport()}
		code := cmd.Run(context.Background(), []string{
			"--target", url, "--rate", "50", "--duration", "2s", "--crowd", "3x@1s+1s",
			"--hot", hot, "--keys", "100", "--admin", "admin:9080", "--admin", "dead:9080",
			"--out-json", outJSON, "--out-png", outPNG,
		})
		pn.close(t)
		if code != ExitOK {
			t.Fatalf("exit %d, stderr %q", code, stderr.String())
		}
	})
	for _, want := range []string{"before", "during", "total", "not sent", "ok/sent", "p99.9", "cluster:",
		"generator (this process, not the cluster): 0 of 200 scheduled requests not sent",
		"cluster (answers to the 200 requests sent): 200 ok (100.00%)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(progress.String(), "answered") {
		t.Errorf("no progress line: %q", progress.String())
	}

	raw, err := os.ReadFile(outJSON)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if len(rep.Series) != 2 || len(rep.Phases) != 2 {
		t.Fatalf("%d seconds and %d phases, want 2 and 2", len(rep.Series), len(rep.Phases))
	}
	// 50/s before the crowd, 150/s during; the probe is not counted.
	for i, want := range []int64{50, 150} {
		s := rep.Series[i]
		if s.Scheduled != want || s.OK != want || s.Latency.Count != want {
			t.Errorf("second %d: %d scheduled, %d ok, %d latencies; want %d", i, s.Scheduled, s.OK, s.Latency.Count, want)
		}
		if s.Cache.Hit+s.Cache.Miss != want || s.ServedBy["node-0"]+s.ServedBy["node-1"] != want {
			t.Errorf("second %d: cache %+v, served by %v; want %d split between them", i, s.Cache, s.ServedBy, want)
		}
		if s.OriginFetches == nil || *s.OriginFetches != 5 || s.Replicas == nil || *s.Replicas != 3 {
			t.Errorf("second %d: origin fetches %v, replicas %v; want 5 and 3", i, deref2(s.OriginFetches), deref2(s.Replicas))
		}
	}
	if got := srv.requests.Load(); got != 201 {
		t.Errorf("server saw %d requests, want 200 and the probe", got)
	}
	// The crowd's extra 100 requests go to the hot object.
	if got := srv.hotRequests.Load(); !within(got, 100, 0.25) {
		t.Errorf("hot object got %d requests, want about 100", got)
	}
	if c := rep.Total.Cluster; c == nil || c.OriginFetches != 10 || c.ReplicaSeconds != 6 {
		t.Errorf("cluster totals %+v, want 10 fetches and 6 replica-seconds", c)
	}

	f, err := os.Open(outPNG)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 500 {
		t.Errorf("PNG is %v, too small for five panels", b)
	}
}

func deref2(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestCommandBadInput checks that bad input exits 2 with one line on
// stderr and sends no load.
func TestCommandBadInput(t *testing.T) {
	t.Parallel()
	srv := newCacheServer(t, "")
	dead := "http://" + deadAddr(t)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // in the error line
	}{
		{"unknown flag", []string{"--target", srv.URL, "--bogus"}, nil, "unknown flag --bogus"},
		{"bad crowd", []string{"--target", srv.URL, "--crowd", "50x@10s"}, nil, "bad crowd spec"},
		{"crowd after the end", []string{"--target", srv.URL, "--duration", "20s", "--crowd", "50x@10s+30s"}, nil, "after the 20s run"},
		{"no target", []string{"--rate", "10"}, nil, "no --target"},
		{"bad scheme", []string{"--target", "ftp://example.com"}, nil, "want an http://"},
		{"no host", []string{"--target", "http://"}, nil, "want an http://"},
		{"unparsable URL", []string{"--target", "http://a b:x"}, nil, "want an http://"},
		{"unreachable", []string{"--target", srv.URL, "--target", dead}, nil, "unreachable"},
		{"bad rate", []string{"--target", srv.URL, "--rate", "0"}, nil, "rate 0"},
		{"bad zipf", []string{"--target", srv.URL, "--zipf", "1"}, nil, "zipf 1"},
		{"bad hot", []string{"--target", srv.URL, "--hot", "live"}, nil, "hot object"},
		{"bad max-inflight", []string{"--target", srv.URL, "--max-inflight", "-1"}, nil, "max-inflight"},
		{"argument", []string{"--target", srv.URL, "extra"}, nil, `unexpected argument "extra"`},
		{"bad env", []string{"--target", srv.URL}, map[string]string{"CROWDPILOT_RATE": "lots"}, "CROWDPILOT_RATE"},
		{"bad env crowd", []string{"--target", srv.URL}, map[string]string{"CROWDPILOT_CROWD": "lots"}, "bad crowd spec"},
		{"missing out folder", []string{"--target", srv.URL, "--out-json", "/nonexistent/dir/x.json"}, nil, "does not exist"},
		{"missing trace folder", []string{"--target", srv.URL, "--out-trace", "/nonexistent/dir/load.trace"}, nil, "does not exist"},
	} {
		var stdout, stderr bytes.Buffer
		cmd := Command{Stdout: &stdout, Stderr: &stderr, LookupEnv: func(k string) (string, bool) {
			v, ok := tc.env[k]
			return v, ok
		}}
		before := srv.requests.Load()
		code := cmd.Run(context.Background(), tc.args)
		line := stderr.String()
		if code != ExitBadInput || strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "crowdpilot load: ") || !strings.Contains(line, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and one line with %q", tc.name, code, line, tc.want)
		}
		// Only the unreachable case probes, and only the live target first.
		if sent := srv.requests.Load() - before; sent > 1 || (sent == 1 && tc.name != "unreachable") {
			t.Errorf("%s: %d requests reached the server", tc.name, sent)
		}
		if stdout.Len() > 0 {
			t.Errorf("%s: stdout %q, want nothing", tc.name, stdout.String())
		}
	}
}

func TestCommandHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	cmd := Command{Stdout: &stdout, Stderr: &stderr}
	if code := cmd.Run(context.Background(), []string{"-h"}); code != ExitOK || !strings.Contains(stdout.String(), "-max-inflight") {
		t.Errorf("exit %d, stdout %q", code, stdout.String())
	}
}

// TestParseEnv checks that the environment fills the flags the command
// line did not set.
func TestParseEnv(t *testing.T) {
	env := map[string]string{
		"CROWDPILOT_RATE":         "7",
		"CROWDPILOT_TARGET":       "http://a:1,http://b:2",
		"CROWDPILOT_DURATION":     "3s",
		"CROWDPILOT_MAX_INFLIGHT": "9",
		"CROWDPILOT_CROWD":        "2x@1s+1s",
	}
	o, err := parse([]string{"--rate", "9", "--hot", "/h1,/h2"}, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Schedule.Base != 9 || c.Schedule.Duration != 3*time.Second || c.MaxInflight != 9 ||
		c.Schedule.Crowd.Multiplier != 2 || strings.Join(c.Targets, " ") != "http://a:1 http://b:2" ||
		strings.Join(c.Hot, " ") != "/h1 /h2" {
		t.Errorf("config = %+v", c)
	}
	if c.Keys != DefaultKeys || c.Timeout != DefaultTimeout || c.Zipf != DefaultZipf {
		t.Errorf("defaults not kept: %+v", c)
	}
}

// within reports whether got is within frac of want.
func within(got, want int64, frac float64) bool {
	d := float64(got - want)
	return d <= frac*float64(want) && -d <= frac*float64(want)
}

// TestTraceWindowWritesTheWindow: nothing before the window starts, and a
// Go execution trace once it has started and is stopped (early, here).
// (runtime/trace cannot start inside a synctest bubble, so this runs on
// the real clock, waiting on conditions only.)
func TestTraceWindowWritesTheWindow(t *testing.T) {
	dir := t.TempDir()
	later := filepath.Join(dir, "later.trace")
	if err := traceWindow(context.Background(), later, time.Hour, time.Hour)(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(later); err == nil {
		t.Error("a trace stopped before its window was written")
	}

	now := filepath.Join(dir, "now.trace")
	stop := traceWindow(context.Background(), now, 0, time.Hour)
	testwait.Eventually(t, 10*time.Second, "the trace file", func() bool {
		_, err := os.Stat(now)
		return err == nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(now)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("go 1.")) {
		t.Errorf("%s does not start as a Go execution trace: %q", now, b[:min(len(b), 16)])
	}
}
