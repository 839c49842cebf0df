package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// read is one observed GET in the history.
type read struct {
	path       string
	start, end time.Time
	version    int
}

// ack is one purge acknowledged with wait: from ackAt on, no read may
// return a version of path older than version.
type ack struct {
	paths   []string
	version map[string]int
	ackAt   time.Time
}

// TestPurgeHistoryNeverStale drives concurrent reads through every node,
// origin updates, hard purges with wait (by key and by tag) and a node
// restart, then checks the whole history: after a purge is acknowledged
// with wait, no read that starts later returns a version older than the
// one current at purge time.
func TestPurgeHistoryNeverStale(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: 30 * time.Millisecond, MaxAge: time.Hour, Capacity: 64}, nil)
	paths := []string{"/h/0", "/h/1", "/h/2", "/h/3"}
	const runFor = 4 * time.Second

	var (
		mu    sync.Mutex // guards reads, acks and live
		reads []read
		acks  []ack
		live  = []int{0, 1, 2} // nodes readers may use
	)
	ctx, cancel := context.WithTimeout(t.Context(), runFor)
	defer cancel()
	var wg sync.WaitGroup
	var readErrs atomic.Int64
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for ctx.Err() == nil {
				mu.Lock()
				via := live[rng.IntN(len(live))]
				nd := tc.nodes[via]
				mu.Unlock()
				p := paths[rng.IntN(len(paths))]
				start := time.Now()
				s, b, _, err := tc.get("http://" + nd.DataAddr() + p)
				end := time.Now()
				if err != nil || s != 200 {
					readErrs.Add(1) // a node being restarted; not part of the property
					continue
				}
				v, ok := parseVersion(b)
				if !ok {
					t.Errorf("no version in %q", b)
					return
				}
				mu.Lock()
				reads = append(reads, read{p, start, end, v})
				mu.Unlock()
			}
		}()
	}

	// The writer: update at the origin, then purge with wait.
	wg.Add(1)
	var incomplete atomic.Int64
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(99, 7))
		for i := 0; ctx.Err() == nil; i++ {
			a := ack{version: map[string]int{}}
			var body string
			if i%3 == 2 {
				for _, p := range paths {
					a.version[p] = tc.origin.Update(p)
				}
				a.paths = paths
				body = `{"tag": "h", "wait": "5s"}`
			} else {
				p := paths[rng.IntN(len(paths))]
				a.version[p] = tc.origin.Update(p)
				a.paths = []string{p}
				body = fmt.Sprintf(`{"key": %q, "wait": "5s"}`, p)
			}
			mu.Lock()
			admin := tc.nodes[live[rng.IntN(len(live))]].AdminAddr()
			mu.Unlock()
			code, out := tc.adminPostTo(admin, "secret", body)
			if code != 200 || out["complete"] != true {
				incomplete.Add(1) // not acknowledged everywhere: no claim to check
				continue
			}
			a.ackAt = time.Now()
			mu.Lock()
			acks = append(acks, a)
			mu.Unlock()
		}
	}()

	// Midway, node 2 leaves (gracefully) and a fresh node takes its place.
	time.AfterFunc(runFor/2, func() {
		mu.Lock()
		live = []int{0, 1}
		mu.Unlock()
		mu.Lock()
		old := tc.nodes[2]
		mu.Unlock()
		old.Shutdown(context.Background())
		cfg := old.cfg
		cfg.ID, cfg.Listen, cfg.Admin, cfg.Registry, cfg.AdvertiseAddr, cfg.AdvertiseAdmin = "n2b", "127.0.0.1:0", "127.0.0.1:0", nil, "", ""
		nd, err := New(cfg)
		if err == nil {
			err = nd.Start(t.Context())
		}
		if err != nil {
			t.Errorf("restart: %v", err)
			return
		}
		t.Cleanup(func() { nd.Shutdown(context.Background()) })
		mu.Lock()
		tc.nodes = append(tc.nodes, nd)
		live = []int{0, 1, len(tc.nodes) - 1}
		mu.Unlock()
	})
	wg.Wait()

	violations := 0
	for _, a := range acks {
		for _, r := range reads {
			if want, ok := a.version[r.path]; ok && r.start.After(a.ackAt) && r.version < want {
				violations++
				if violations <= 5 {
					t.Errorf("read of %s started %v after a purge was acknowledged returned version %d, want >= %d",
						r.path, r.start.Sub(a.ackAt), r.version, want)
				}
			}
		}
	}
	t.Logf("%d reads, %d acknowledged purges, %d purges not confirmed by the deadline, %d read errors during the restart, %d violations",
		len(reads), len(acks), incomplete.Load(), readErrs.Load(), violations)
	if len(acks) < 10 || len(reads) < 200 {
		t.Fatalf("history too small to mean anything: %d purges, %d reads", len(acks), len(reads))
	}
}
