package fill

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestRefreshDepth: RefreshDepth counts the refreshes running against
// their bound, and a refresh beyond the bound is shed, not queued.
func TestRefreshDepth(t *testing.T) {
	var fetches atomic.Int64
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) > 1 {
			<-release // refreshes wait here
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("body"))
	}))
	defer origin.Close()
	var shed atomic.Int64
	g, _ := newGroup(t, origin.URL, func(c *Config) {
		c.RefreshWorkers = 2
		c.Shed = func(reason string) {
			if reason == "refresh_pool" {
				shed.Add(1)
			}
		}
	})
	if running, bound := g.RefreshDepth(); running != 0 || bound != 2 {
		t.Fatalf("idle: RefreshDepth = %d, %d; want 0, 2", running, bound)
	}
	var entries []Result
	for _, path := range []string{"/a", "/b", "/c"} {
		r, base := get(path)
		if path != "/a" {
			fetches.Store(0) // each path's first fetch answers at once
		}
		res, err := g.Fetch(t.Context(), r, base, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, res)
	}
	for i, path := range []string{"/a", "/b", "/c"} {
		r, base := get(path)
		g.Refresh(r, base, entries[i].Entry, nil)
	}
	if running, bound := g.RefreshDepth(); running != 2 || bound != 2 || shed.Load() != 1 {
		t.Fatalf("three refreshes on two workers: RefreshDepth = %d, %d, %d shed; want 2, 2, 1 shed", running, bound, shed.Load())
	}
	close(release)
	waitUntil(t, func() bool { running, _ := g.RefreshDepth(); return running == 0 })
}
