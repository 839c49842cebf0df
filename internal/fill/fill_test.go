package fill

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

func newGroup(t *testing.T, origin string, tweak func(*Config)) (*Group, *httpcache.Store) {
	t.Helper()
	store, err := httpcache.NewStore(httpcache.StoreConfig{MaxBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	u, _ := url.Parse(origin)
	cfg := Config{Origin: u, Store: store, Timeout: 500 * time.Millisecond, Defaults: httpcache.Defaults{TTL: time.Minute}}
	if tweak != nil {
		tweak(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, store
}

func get(path string) (*http.Request, string) {
	r := httptest.NewRequest(http.MethodGet, "http://origin.test"+path, nil)
	base, _ := httpcache.BaseKey(r)
	return r, base
}

func TestCollapsesConcurrentFetches(t *testing.T) {
	var fetches atomic.Int64
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("body"))
	}))
	defer origin.Close()
	g, store := newGroup(t, origin.URL, nil)
	const n = 200
	var wg sync.WaitGroup
	results := make([]Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, base := get("/a")
			results[i], errs[i] = g.Fetch(context.Background(), r, base, nil, nil)
		}()
	}
	// Release the origin once the fetch is under way; late callers find
	// the object stored, or join the flight.
	waitUntil(t, func() bool { return fetches.Load() > 0 })
	close(release)
	wg.Wait()
	if got := fetches.Load(); got != 1 {
		t.Fatalf("origin fetches = %d, want 1", got)
	}
	collapsed := 0
	for i := range n {
		if errs[i] != nil || string(results[i].Entry.Body) != "body" {
			t.Fatalf("caller %d: %v %+v", i, errs[i], results[i].Entry)
		}
		if results[i].Collapsed {
			collapsed++
		}
	}
	// Late callers may find the object already stored (a flight of their
	// own that re-checks the store and fetches nothing); the origin count
	// above is what matters. Most callers should still have waited.
	if collapsed < n/2 {
		t.Errorf("only %d of %d callers waited on the fetch", collapsed, n)
	}
	if _, base := get("/a"); store.Len() == 0 {
		t.Errorf("nothing stored for %s", base)
	}
}

// TestBadOriginsNeverPoisonTheCache: a truncated body, a trickling body and
// a garbage response each fail the fetch and store nothing. The origin is
// on an in-memory pipe inside a synctest bubble, so the clock is the
// bubble's: a fetch the origin timeout must cut off ends exactly at the
// timeout (a trickle would otherwise run 5s, headers that never end 2s),
// and the others at once, however busy the machine.
func TestBadOriginsNeverPoisonTheCache(t *testing.T) {
	const timeout = 500 * time.Millisecond // newGroup's
	tests := []struct {
		name     string
		handle   func(c net.Conn)
		timesOut bool // only the origin timeout ends it
	}{
		{"truncated body", func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 1000\r\n\r\nonly this much"))
		}, false},
		{"trickling body", func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 1000\r\n\r\n"))
			for range 100 {
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond) // the origin under test is slow on purpose
			}
		}, true},
		{"garbage", func(c net.Conn) {
			c.Write([]byte("this is not http\r\n\r\n"))
		}, false},
		{"headers never end", func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 200 OK\r\n"))
			time.Sleep(2 * time.Second)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var origin sync.WaitGroup // the origin's side of each connection
				tr := &http.Transport{DisableCompression: true, DialContext: func(context.Context, string, string) (net.Conn, error) {
					client, server := net.Pipe()
					origin.Go(func() {
						defer server.Close()
						bufio.NewReader(server).ReadString('\n')
						tt.handle(server)
					})
					return client, nil
				}}
				g, store := newGroup(t, "http://origin.test", func(c *Config) { c.Transport = tr })
				r, base := get("/bad")
				start := time.Now()
				_, err := g.Fetch(context.Background(), r, base, nil, nil)
				took := time.Since(start) // the bubble's clock: exact
				if err == nil {
					t.Fatal("fetch succeeded; want an error")
				}
				switch {
				case tt.timesOut && (took != timeout || !errors.Is(err, context.DeadlineExceeded)):
					t.Errorf("fetch ended after %v with %v; the origin timeout (%v) should cut it off", took, err, timeout)
				case !tt.timesOut && took >= timeout:
					t.Errorf("fetch ended after %v with %v; want it to fail at once", took, err)
				}
				if e, ok := store.Get(base, nil); ok {
					t.Fatalf("partial object stored: %q", e.Body)
				}
				tr.CloseIdleConnections()
				origin.Wait()
			})
		})
	}
}

func TestFailsFastWhenLimitFull(t *testing.T) {
	hold := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-hold
		w.Write([]byte("x"))
	}))
	defer origin.Close()
	defer close(hold)
	var sheds atomic.Int64
	g, _ := newGroup(t, origin.URL, func(c *Config) {
		c.MinLimit, c.InitialLimit, c.MaxLimit = 1, 1, 1
		c.Timeout = 5 * time.Second
		c.Shed = func(reason string) {
			if reason == "origin_limit" {
				sheds.Add(1)
			}
		}
	})
	r1, b1 := get("/slow")
	go g.Fetch(context.Background(), r1, b1, nil, nil)
	waitUntil(t, func() bool { return g.limit.Inflight() > 0 })
	r2, b2 := get("/other")
	_, err := g.Fetch(context.Background(), r2, b2, nil, nil)
	if !errors.Is(err, ErrShed) {
		t.Fatalf("err = %v, want ErrShed while the limit is full", err)
	}
	if sheds.Load() != 1 {
		t.Errorf("shed counted %d times, want 1", sheds.Load())
	}
}

func TestTooLargeIsNotStored(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte(strings.Repeat("x", 4096)))
	}))
	defer origin.Close()
	g, store := newGroup(t, origin.URL, func(c *Config) { c.MaxObjectBytes = 1024 })
	r, base := get("/big")
	if b, err := readStream(g.Fetch(context.Background(), r, base, nil, nil)); err != nil || len(b) != 4096 {
		t.Fatalf("relayed %d bytes, %v; want the 4096-byte body", len(b), err)
	}
	if store.Len() != 0 {
		t.Error("oversized object stored")
	}
}

// TestCollapsedWaitersGetTheirOwnVariant: when the response varies on a
// header the waiters disagree on, each gets the variant for its request.
func TestCollapsedWaitersGetTheirOwnVariant(t *testing.T) {
	release := make(chan struct{})
	var fetches atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Encoding")
		w.Write([]byte("enc=" + r.Header.Get("Accept-Encoding")))
	}))
	defer origin.Close()
	g, _ := newGroup(t, origin.URL, nil)
	encs := []string{"gzip", "br", "gzip", "br", "identity"}
	got := make([]string, len(encs))
	var wg sync.WaitGroup
	for i, enc := range encs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, base := get("/v")
			r.Header.Set("Accept-Encoding", enc)
			res, err := g.Fetch(context.Background(), r, base, nil, nil)
			if err != nil {
				t.Errorf("%s: %v", enc, err)
				return
			}
			got[i] = string(res.Entry.Body)
		}()
	}
	waitUntil(t, func() bool { return fetches.Load() > 0 })
	close(release)
	wg.Wait()
	for i, enc := range encs {
		if got[i] != "enc="+enc {
			t.Errorf("request with Accept-Encoding %s got %q", enc, got[i])
		}
	}
	if n := fetches.Load(); n > 3 {
		t.Errorf("origin fetches = %d, want at most one per variant (3)", n)
	}
}

// TestVariantsFillSideBySide: once the store knows an object varies, a
// request collapses on its own variant at once, so it neither waits
// behind another variant's fill nor leads a second fill of its own.
func TestVariantsFillSideBySide(t *testing.T) {
	gzipGate := make(chan struct{})
	var fetches sync.Map // Accept-Encoding -> *atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enc := r.Header.Get("Accept-Encoding")
		n, _ := fetches.LoadOrStore(enc, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		if enc == "gzip" {
			<-gzipGate
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Encoding")
		w.Write([]byte("enc=" + enc))
	}))
	defer origin.Close()
	defer close(gzipGate)
	g, _ := newGroup(t, origin.URL, func(c *Config) { c.Timeout = time.Minute })
	fetch := func(enc string) <-chan string {
		out := make(chan string, 1)
		go func() {
			r, base := get("/v")
			r.Header.Set("Accept-Encoding", enc)
			res, err := g.Fetch(context.Background(), r, base, nil, nil)
			if err != nil {
				out <- err.Error()
				return
			}
			out <- string(res.Entry.Body)
		}()
		return out
	}
	count := func(enc string) int64 {
		if n, ok := fetches.Load(enc); ok {
			return n.(*atomic.Int64).Load()
		}
		return 0
	}
	if got := <-fetch("br"); got != "enc=br" { // the store learns that /v varies
		t.Fatalf("br: %q", got)
	}
	gz1 := fetch("gzip")
	waitUntil(t, func() bool { return count("gzip") == 1 }) // gzip's fill is at the origin
	gz2 := fetch("gzip")
	select {
	case got := <-fetch("identity"):
		if got != "enc=identity" {
			t.Fatalf("identity: %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("identity waited behind the gzip variant's fill")
	}
	gzipGate <- struct{}{}
	for _, ch := range []<-chan string{gz1, gz2} {
		if got := <-ch; got != "enc=gzip" {
			t.Errorf("gzip: %q", got)
		}
	}
	if n := count("gzip"); n != 1 {
		t.Errorf("gzip fetched %d times, want 1", n)
	}
}

// waitUntil polls cond until it holds, failing the test after 10s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRefreshWindowAsksOnce: every hit of a refresh window asks for the
// refresh, but while one runs the others neither take a pool slot nor are
// shed: one upstream request, nothing dropped.
func TestRefreshWindowAsksOnce(t *testing.T) {
	var fetches atomic.Int64
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) > 1 {
			<-release // the refresh, held until every hit has asked
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("body"))
	}))
	defer origin.Close()
	var shed atomic.Int64
	g, _ := newGroup(t, origin.URL, func(c *Config) {
		c.RefreshWorkers = 2
		c.Shed = func(string) { shed.Add(1) }
	})
	r, base := get("/a")
	res, err := g.Fetch(context.Background(), r, base, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, via := range []bool{false, true} {
		for range 100 {
			if via {
				g.RefreshVia(r, base, res.Entry, nil, nil)
			} else {
				g.Refresh(r, base, res.Entry, nil)
			}
		}
		if !g.Refreshing(res.Entry.Key, via) {
			t.Errorf("via %v: no refresh running after 100 asks", via)
		}
	}
	close(release)
	testwait.Eventually(t, 10*time.Second, "both refreshes end", func() bool {
		return !g.Refreshing(res.Entry.Key, false) && !g.Refreshing(res.Entry.Key, true)
	})
	if got := fetches.Load(); got != 3 {
		t.Errorf("%d upstream requests, want 3: the fill, one refresh, one renewal", got)
	}
	if got := shed.Load(); got != 0 {
		t.Errorf("%d refreshes shed, want 0: the asks of a running refresh are not work", got)
	}
}

// TestLimitWaitAbsorbsABurst: with the origin limit full, a fetch of
// another object waits for a permit within LimitWait instead of being
// shed; with LimitWait 0 it is shed at once.
func TestLimitWaitAbsorbsABurst(t *testing.T) {
	for _, wait := range []time.Duration{0, 5 * time.Second} {
		t.Run(wait.String(), func(t *testing.T) {
			entered, release := make(chan struct{}, 1), make(chan struct{})
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/slow" {
					entered <- struct{}{}
					<-release
				}
				w.Header().Set("Cache-Control", "max-age=60")
				w.Write([]byte("body"))
			}))
			defer origin.Close()
			defer close(release)
			g, _ := newGroup(t, origin.URL, func(c *Config) {
				c.MinLimit, c.MaxLimit, c.InitialLimit = 1, 1, 1
				c.LimitWait = wait
				c.Timeout = 10 * time.Second
			})
			go func() {
				r, base := get("/slow")
				g.Fetch(context.Background(), r, base, nil, nil)
			}()
			<-entered // the one permit is held
			done := make(chan error, 1)
			go func() {
				r, base := get("/other")
				_, err := g.Fetch(context.Background(), r, base, nil, nil)
				done <- err
			}()
			if wait == 0 {
				if err := <-done; !errors.Is(err, ErrShed) {
					t.Fatalf("with no wait: %v, want ErrShed", err)
				}
				return
			}
			testwait.Eventually(t, 10*time.Second, "the second fetch queues", func() bool { return g.limit.Queued() == 1 })
			release <- struct{}{}
			if err := <-done; err != nil {
				t.Fatalf("queued fetch: %v, want it served once the permit frees", err)
			}
		})
	}
}
