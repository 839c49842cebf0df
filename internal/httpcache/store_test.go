package httpcache

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a settable clock, safe for the store's goroutines.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestStore(t testing.TB, cfg StoreConfig) (*Store, *fakeClock) {
	t.Helper()
	clk := newFakeClock(t0)
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	s, err := NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, clk
}

// spec describes a test entry.
type spec struct {
	base    string
	reqHdr  http.Header // for the variant key
	vary    string
	tags    string // Surrogate-Key
	cc      string // default max-age=60
	etag    string
	body    int
	method  string
	content string
}

func (sp spec) entry(now time.Time) *Entry {
	h := hdr("Date", httpDate(now), "Cache-Control", "max-age=60")
	if sp.cc != "" {
		h.Set("Cache-Control", sp.cc)
	}
	if sp.vary != "" {
		h.Set("Vary", sp.vary)
	}
	if sp.tags != "" {
		h.Set("Surrogate-Key", sp.tags)
	}
	if sp.etag != "" {
		h.Set("Etag", sp.etag)
	}
	body := []byte(sp.content)
	if sp.body > 0 {
		body = make([]byte, sp.body)
	}
	key := VariantKey(sp.base, parseVary(h), sp.reqHdr)
	var req *http.Request
	if sp.method != "" {
		req = &http.Request{Method: sp.method}
	}
	return NewEntry(sp.base, key, req, 200, h, body, now, now, Defaults{StaleWhileRevalidate: 30 * time.Second})
}

// checkIndex asserts that the index holds exactly the refs of the stored
// entries, each pointing at the stored value.
func checkIndex(t *testing.T, s *Store) {
	t.Helper()
	s.cache.CleanUp()
	want := 0
	for k, e := range s.cache.All() {
		if !indexed(e) {
			continue
		}
		want += len(e.Tags)
		if e.Key != e.BaseKey {
			want++
		}
		s.index.mu.Lock()
		for _, tag := range e.Tags {
			if s.index.tags[tag][k] != e {
				t.Errorf("tag %q: key %q not indexed to its stored entry", tag, k)
			}
		}
		if e.Key != e.BaseKey && s.index.variants[e.BaseKey][k] != e {
			t.Errorf("variant %q of %q not indexed", k, e.BaseKey)
		}
		s.index.mu.Unlock()
	}
	if got := s.index.len(); got != want {
		t.Errorf("index holds %d refs, stored entries have %d", got, want)
	}
}

func TestStoreVary(t *testing.T) {
	s, clk := newTestStore(t, StoreConfig{})
	now := clk.Now()
	gz, br := hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "br")
	s.Put(spec{base: "h/x", vary: "Accept-Encoding", reqHdr: gz, content: "gz"}.entry(now))
	s.Put(spec{base: "h/x", vary: "Accept-Encoding", reqHdr: br, content: "br"}.entry(now))
	for _, tc := range []struct {
		h    http.Header
		want string
	}{{gz, "gz"}, {br, "br"}, {hdr("Accept-Encoding", "  gzip "), "gz"}, {hdr(), ""}, {hdr("Accept-Encoding", "zstd"), ""}} {
		e, ok := s.Get("h/x", tc.h)
		if got := ""; ok {
			got = string(e.Body)
			if got != tc.want {
				t.Errorf("Get(%v) = %q, want %q", tc.h, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("Get(%v) missed, want %q", tc.h, tc.want)
		}
	}
	checkIndex(t, s)

	// A new Vary list drops the variants stored under the old one.
	lang := hdr("Accept-Language", "en")
	s.Put(spec{base: "h/x", vary: "Accept-Language", reqHdr: lang, content: "en"}.entry(now))
	if _, ok := s.cache.GetIfPresent(VariantKey("h/x", []string{"Accept-Encoding"}, gz)); ok {
		t.Error("old variant kept after the Vary list changed")
	}
	if e, ok := s.Get("h/x", lang); !ok || string(e.Body) != "en" {
		t.Error("new variant missing")
	}

	// A plain response replaces the marker and drops the variants.
	s.Put(spec{base: "h/x", content: "plain"}.entry(now))
	if e, ok := s.Get("h/x", lang); !ok || string(e.Body) != "plain" {
		t.Errorf("plain entry not served over old variants")
	}
	checkIndex(t, s)
	if s.index.len() != 0 {
		t.Errorf("index keeps %d refs after variants were dropped", s.index.len())
	}

	// Delete drops the base and every variant.
	s.Put(spec{base: "h/y", vary: "Accept-Encoding", reqHdr: gz}.entry(now))
	s.Put(spec{base: "h/y", vary: "Accept-Encoding", reqHdr: br}.entry(now))
	if n := s.Delete("h/y"); n != 2 {
		t.Errorf("Delete = %d, want 2", n)
	}
	if _, ok := s.Get("h/y", gz); ok {
		t.Error("variant survives Delete")
	}
	checkIndex(t, s)
}

func TestStorePurge(t *testing.T) {
	entries := []spec{
		{base: "h/news/1", tags: "news front"},
		{base: "h/news/2", tags: "news", vary: "Accept-Encoding", reqHdr: hdr("Accept-Encoding", "gzip")},
		{base: "h/sport/1", tags: "sport front"},
		{base: "h/about", etag: `"e"`},
	}
	tests := []struct {
		name      string
		purge     func(*Store) int
		soft      bool
		n         int
		remaining []string // bases still served fresh
	}{
		{"tag hard", func(s *Store) int { return s.PurgeTag("news", false) }, false, 2, []string{"h/sport/1", "h/about"}},
		{"tag soft", func(s *Store) int { return s.PurgeTag("front", true) }, true, 2, []string{"h/news/2", "h/about"}},
		{"unknown tag", func(s *Store) int { return s.PurgeTag("nope", false) }, false, 0, []string{"h/news/1", "h/news/2", "h/sport/1", "h/about"}},
		{"prefix hard", func(s *Store) int { return s.PurgePrefix("h/news/", false) }, false, 2, []string{"h/sport/1", "h/about"}},
		{"prefix soft", func(s *Store) int { return s.PurgePrefix("h/news/", true) }, true, 2, []string{"h/sport/1", "h/about"}},
		{"all hard", func(s *Store) int { return s.PurgeAll(false) }, false, 4, nil},
		{"all soft", func(s *Store) int { return s.PurgeAll(true) }, true, 4, nil},
		{"delete", func(s *Store) int { return s.Delete("h/sport/1") }, false, 1, []string{"h/news/1", "h/news/2", "h/about"}},
		{"key hard", func(s *Store) int { return s.PurgeKey("h/news/1", false) }, false, 1, []string{"h/news/2", "h/sport/1", "h/about"}},
		{"key soft with variants", func(s *Store) int { return s.PurgeKey("h/news/2", true) }, true, 1, []string{"h/news/1", "h/sport/1", "h/about"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := newTestStore(t, StoreConfig{})
			for _, sp := range entries {
				s.Put(sp.entry(clk.Now()))
			}
			clk.Advance(10 * time.Second)
			if n := tt.purge(s); n != tt.n {
				t.Errorf("purged %d, want %d", n, tt.n)
			}
			now := clk.Now()
			for _, sp := range entries {
				e, ok := s.Get(sp.base, sp.reqHdr)
				kept := slices.Contains(tt.remaining, sp.base)
				switch {
				case kept && (!ok || e.State(now, 0.9) != Fresh):
					t.Errorf("%s: not served fresh after purge", sp.base)
				case !kept && tt.soft && !ok:
					t.Errorf("%s: soft purge dropped it", sp.base)
				case !kept && tt.soft && e.State(now, 0.9) != StaleRevalidate:
					t.Errorf("%s: soft purge left it %v; want stale-revalidate", sp.base, e.State(now, 0.9))
				case !kept && !tt.soft && ok:
					t.Errorf("%s: survives a hard purge", sp.base)
				}
			}
			checkIndex(t, s)
			// A soft purge keeps tags: a second soft purge finds them again.
			if tt.name == "tag soft" {
				if n := s.PurgeTag("front", true); n != 2 {
					t.Errorf("second soft purge found %d, want 2", n)
				}
			}
		})
	}
}

func TestStoreRejects(t *testing.T) {
	s, clk := newTestStore(t, StoreConfig{MaxBytes: 1 << 20, MaxIndexRefs: 3, MaxTagsPerEntry: 4})
	now := clk.Now()
	tests := []struct {
		name   string
		sp     spec
		stored bool
	}{
		{"ok with tags", spec{base: "h/a", tags: "t1 t2"}, true},
		{"too large", spec{base: "h/big", body: 1<<20/16 + 1}, false},
		{"too many tags", spec{base: "h/tags", tags: "a b c d e"}, false},
		{"index full", spec{base: "h/b", tags: "t3 t4"}, false},
		{"index has room for one", spec{base: "h/c", tags: "t3"}, true},
		{"head", spec{base: "h/head", method: http.MethodHead}, false},
		{"useless on arrival", spec{base: "h/nc", cc: "no-cache"}, false},
		{"no-cache with validator", spec{base: "h/nce", cc: "no-cache", etag: `"x"`}, true},
	}
	for _, tt := range tests {
		s.Put(tt.sp.entry(now))
		if _, ok := s.Get(tt.sp.base, nil); ok != tt.stored {
			t.Errorf("%s: stored = %v, want %v", tt.name, ok, tt.stored)
		}
	}
	// A rejected replacement drops the entry it supersedes, except for HEAD.
	s.Put(spec{base: "h/a", tags: "t1 t2", body: 1 << 20}.entry(now))
	if _, ok := s.Get("h/a", nil); ok {
		t.Error("superseded entry kept after a rejected Put")
	}
	s.Put(spec{base: "h/g", content: "body"}.entry(now))
	s.Put(spec{base: "h/g", method: http.MethodHead}.entry(now))
	if e, ok := s.Get("h/g", nil); !ok || string(e.Body) != "body" {
		t.Error("HEAD response replaced the GET entry")
	}
	checkIndex(t, s)
	s.Put(nil)
	s.Put(&Entry{})
}

func TestStorePutDropsSetCookie(t *testing.T) {
	s, clk := newTestStore(t, StoreConfig{})
	e := NewEntry("h/c", "", nil, 200, hdr("Cache-Control", "public, max-age=60", "Set-Cookie", "sid=1"), nil, clk.Now(), clk.Now(), Defaults{})
	s.Put(e)
	got, ok := s.Get("h/c", nil)
	if !ok || got.Header.Get("Set-Cookie") != "" {
		t.Fatalf("stored entry %v keeps Set-Cookie", ok)
	}
	if e.Header.Get("Set-Cookie") != "sid=1" {
		t.Error("Put modified the caller's entry")
	}
}

func TestStoreExpiry(t *testing.T) {
	s, clk := newTestStore(t, StoreConfig{RevalidateGrace: time.Minute})
	now := clk.Now()
	s.Put(spec{base: "h/plain", cc: "max-age=10, stale-while-revalidate=0"}.entry(now))
	s.Put(spec{base: "h/etag", cc: "max-age=10, stale-while-revalidate=0", etag: `"v"`}.entry(now))
	s.Put(spec{base: "h/swr", cc: "max-age=10, stale-while-revalidate=20"}.entry(now))
	steps := []struct {
		at   time.Duration
		want []string
	}{
		{9 * time.Second, []string{"h/plain", "h/etag", "h/swr"}},
		{11 * time.Second, []string{"h/etag", "h/swr"}},
		{31 * time.Second, []string{"h/etag"}},
		{71 * time.Second, nil},
	}
	for _, st := range steps {
		clk.ns.Store(now.Add(st.at).UnixNano())
		for _, base := range []string{"h/plain", "h/etag", "h/swr"} {
			if _, ok := s.Get(base, nil); ok != slices.Contains(st.want, base) {
				t.Errorf("t0+%v: %s present = %v", st.at, base, ok)
			}
		}
	}
}

// TestStoreEvictionCleansIndex fills a small store far past its size and
// checks that evictions leave the tag index exact and are counted.
func TestStoreEvictionCleansIndex(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, clk := newTestStore(t, StoreConfig{MaxBytes: 256 << 10, Registerer: reg})
	for i := range 2000 {
		s.Put(spec{base: fmt.Sprintf("h/%d", i), tags: fmt.Sprintf("all g%d i%d", i%10, i), body: 1024}.entry(clk.Now()))
	}
	checkIndex(t, s)
	if s.Bytes() > 256<<10 {
		t.Errorf("Bytes = %d over the bound", s.Bytes())
	}
	if n := s.PurgeTag("all", false); n == 0 || n >= 2000 {
		t.Errorf("PurgeTag(all) = %d; want the survivors only", n)
	}
	checkIndex(t, s)
	if s.index.len() != 0 {
		t.Errorf("index keeps %d refs after purging everything", s.index.len())
	}
	if v := metricValue(t, reg, "crowdpilot_store_evictions_total", "size"); v < 1000 {
		t.Errorf("evictions{size} = %v, want most of 2000", v)
	}
}

func TestStoreConcurrent(t *testing.T) {
	s, clk := newTestStore(t, StoreConfig{MaxBytes: 512 << 10})
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				base := fmt.Sprintf("h/%d", (i*7+w)%300)
				h := hdr("Accept-Encoding", []string{"gzip", "br"}[i%2])
				vary := ""
				if i%3 == 0 {
					vary = "Accept-Encoding"
				}
				s.Put(spec{base: base, vary: vary, reqHdr: h, tags: fmt.Sprintf("t%d t%d", i%5, w), body: 2048}.entry(clk.Now()))
				s.Get(base, h)
				switch i % 50 {
				case 10:
					s.PurgeTag(fmt.Sprintf("t%d", w), i%20 == 0)
				case 20:
					s.Delete(base)
				case 30:
					s.PurgePrefix("h/1", true)
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	checkIndex(t, s)
}

// TestStoreLeasedBudgets: near copies and reserves each have their own
// budget, so reserves of many cold objects never take a hot object's near
// copy's room; each count follows its entries through replacement, lapse
// and purge.
func TestStoreLeasedBudgets(t *testing.T) {
	s, clk := newTestStore(t, StoreConfig{MaxBytes: 1 << 20, MaxNearBytes: 10 << 10, MaxReserveBytes: 10 << 10})
	now := clk.Now()
	leased := func(base string, reserve bool, lease time.Duration) *Entry {
		e := spec{base: base, body: 4 << 10}.entry(now)
		e.Near, e.Reserve = now.Add(lease), reserve
		return e
	}
	for i := range 3 {
		s.Put(leased(fmt.Sprintf("h/cold%d", i), true, time.Minute))
	}
	if s.ReserveLen() != 2 {
		t.Fatalf("reserves = %d, want 2 (the third is past the budget)", s.ReserveLen())
	}
	if _, ok := s.Get("h/cold2", nil); ok {
		t.Error("a reserve past its budget was stored")
	}
	// The reserve budget is full; near copies still fit in theirs.
	if !s.Put(leased("h/hot", false, 2*time.Second)) || s.NearLen() != 1 {
		t.Fatalf("near copy refused beside a full reserve budget (near copies %d)", s.NearLen())
	}
	// A reserve replaced by a near copy of the same key moves between counts.
	s.Put(leased("h/cold0", false, 2*time.Second))
	if s.ReserveLen() != 1 || s.NearLen() != 2 {
		t.Errorf("after a replacement: reserves %d near copies %d, want 1 and 2", s.ReserveLen(), s.NearLen())
	}
	s.PurgeKey("h/cold1", true)  // soft: a leased copy is dropped, not softened
	clk.Advance(3 * time.Second) // the near copies lapse with their leases
	s.cache.CleanUp()
	if s.ReserveLen() != 0 || s.ReserveBytes() != 0 || s.NearLen() != 0 || s.NearBytes() != 0 {
		t.Errorf("after purge and lapse: reserves %d (%d bytes), near copies %d (%d bytes), want none",
			s.ReserveLen(), s.ReserveBytes(), s.NearLen(), s.NearBytes())
	}
}
