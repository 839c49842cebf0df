package fill

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPurgesDuringAFill: a fill in flight is discarded only by a purge that
// matches its object (its key, a prefix of it, one of its tags, or
// everything); purges of anything else leave it alone, and a caller that
// arrives after a matching purge never gets the older response.
func TestPurgesDuringAFill(t *testing.T) {
	tests := []struct {
		name   string
		purge  func(s purger, base string)
		stored bool
	}{
		{"unrelated key", func(s purger, base string) { s.PurgeKey("origin.test/other", false) }, true},
		{"unrelated tag", func(s purger, base string) { s.PurgeTag("sports", false) }, true},
		{"unrelated prefix", func(s purger, base string) { s.PurgePrefix("origin.test/other/", false) }, true},
		{"many unrelated tags", func(s purger, base string) {
			for i := range 1000 {
				s.PurgeTag(fmt.Sprintf("t%d", i), false)
			}
		}, true},
		{"its key", func(s purger, base string) { s.PurgeKey(base, false) }, false},
		{"its key, soft", func(s purger, base string) { s.PurgeKey(base, true) }, false},
		{"its tag", func(s purger, base string) { s.PurgeTag("news", false) }, false},
		{"its prefix", func(s purger, base string) { s.PurgePrefix("origin.test/live/", false) }, false},
		{"everything", func(s purger, base string) { s.PurgeAll(false) }, false},
		{"more unrelated purges than the journal holds", func(s purger, base string) {
			for i := range 5000 {
				s.PurgeTag(fmt.Sprintf("t%d", i), false)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fetches atomic.Int64
			sent := make(chan struct{}, 16)
			release := make(chan struct{})
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := fetches.Add(1)
				sent <- struct{}{}
				if n == 1 {
					<-release
				}
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Surrogate-Key", "news live")
				fmt.Fprintf(w, "v%d", n)
			}))
			defer origin.Close()
			g, store := newGroup(t, origin.URL, nil)
			r, base := get("/live/match")

			first := make(chan Result, 1)
			go func() {
				res, err := g.Fetch(context.Background(), r, base, nil, nil)
				if err != nil {
					t.Error(err)
				}
				first <- res
			}()
			<-sent // the fill's request is at the origin
			tt.purge(store, base)

			// A caller that arrives after the purge, while the fill is
			// still in flight.
			var wg sync.WaitGroup
			var late Result
			joined := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				r2, _ := get("/live/match")
				close(joined)
				var err error
				late, err = g.Fetch(context.Background(), r2, base, nil, nil)
				if err != nil {
					t.Error(err)
				}
			}()
			<-joined
			close(release)
			res := <-first
			wg.Wait()

			if string(res.Entry.Body) != "v1" {
				t.Fatalf("first caller got %q, want v1", res.Entry.Body)
			}
			if res.Stored != tt.stored {
				t.Errorf("first fill stored = %v, want %v", res.Stored, tt.stored)
			}
			if !tt.stored && (string(late.Entry.Body) != "v2" || fetches.Load() != 2) {
				t.Errorf("a caller that arrived after a matching purge got %q (origin fetches %d), want its own fetch, v2", late.Entry.Body, fetches.Load())
			}
			if tt.stored && string(late.Entry.Body) != "v1" {
				t.Errorf("a caller that arrived during the fill got %q, want the shared v1", late.Entry.Body)
			}
			if tt.stored && fetches.Load() != 1 {
				t.Errorf("origin fetches = %d, want 1: an unrelated purge cost a fetch", fetches.Load())
			}
			e, ok := store.Get(base, r.Header)
			if tt.stored && (!ok || string(e.Body) != "v1") {
				t.Errorf("store holds %v %v, want v1", ok, e)
			}
			if !tt.stored && ok && string(e.Body) == "v1" {
				t.Errorf("store holds the response of a fill that a matching purge crossed")
			}
		})
	}
}

type purger interface {
	PurgeKey(base string, soft bool) int
	PurgeTag(tag string, soft bool) int
	PurgePrefix(prefix string, soft bool) int
	PurgeAll(soft bool) int
}

// TestErrorDoesNotReplaceAStaleCopy: an origin error with explicit
// freshness (storable since RFC 9111 §3) does not replace a copy that
// stale-if-error may still serve in its place (RFC 5861 §4).
func TestErrorDoesNotReplaceAStaleCopy(t *testing.T) {
	var fetches atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) == 1 {
			w.Header().Set("Cache-Control", "max-age=1, stale-if-error=3600")
			w.Write([]byte("good"))
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("broken"))
	}))
	defer origin.Close()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	g, store := newGroup(t, origin.URL, func(c *Config) { c.Now = clock })
	r, base := get("/page")
	if _, err := g.Fetch(context.Background(), r, base, nil, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(5 * time.Second)
	mu.Unlock()
	stale, ok := store.Get(base, r.Header)
	if !ok {
		t.Fatal("first response not stored")
	}
	res, err := g.Fetch(context.Background(), r, base, stale, nil)
	if err != nil || res.Entry.Status != http.StatusInternalServerError {
		t.Fatalf("refetch: %v %+v", err, res)
	}
	if res.Stored {
		t.Error("the 500 was stored over a copy stale-if-error may serve")
	}
	if e, ok := store.Get(base, r.Header); !ok || string(e.Body) != "good" {
		t.Errorf("store holds %v %v, want the good copy", ok, e)
	}
}
