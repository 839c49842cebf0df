package httpcache

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

func BenchmarkBaseKey(b *testing.B) {
	r := newTargetRequest(b, "www.Example.com:443", "/news/2025/03/a-long-article-slug-1234.html?utm_source=x&page=2&id=77")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BaseKey(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVariantKey(b *testing.B) {
	h := hdr("Accept-Encoding", "gzip, deflate, br", "Accept-Language", "en-GB,en;q=0.9")
	vary := []string{"Accept-Encoding", "Accept-Language"}
	b.ReportAllocs()
	for b.Loop() {
		VariantKey("www.example.com/news/2025/article.html", vary, h)
	}
}

func BenchmarkStoreGet(b *testing.B) {
	const n = 10_000
	s, clk := newTestStore(b, StoreConfig{MaxBytes: 256 << 20})
	keys := make([]string, n)
	gz := hdr("Accept-Encoding", "gzip")
	for i := range keys {
		keys[i] = "www.example.com/objects/" + strconv.Itoa(i)
		sp := spec{base: keys[i], body: 4096, tags: "t" + strconv.Itoa(i%100)}
		if i%10 == 0 {
			sp.vary, sp.reqHdr = "Accept-Encoding", gz
		}
		s.Put(sp.entry(clk.Now()))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := s.Get(keys[i%n], gz); !ok {
				b.Errorf("miss on %s", keys[i%n])
				return
			}
			i += 7
		}
	})
}

func BenchmarkStorePut(b *testing.B) {
	s, clk := newTestStore(b, StoreConfig{MaxBytes: 64 << 20})
	e := spec{base: "x", body: 4096, tags: "a b"}.entry(clk.Now())
	entries := make([]*Entry, 100_000)
	for i := range entries {
		c := *e
		c.Key = "www.example.com/objects/" + strconv.Itoa(i)
		c.BaseKey = c.Key
		entries[i] = &c
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Put(entries[i%len(entries)])
		i++
	}
}

func BenchmarkServeEntryHit(b *testing.B) {
	e := NewEntry("k", "", nil, 200, hdr(
		"Date", httpDate(t0),
		"Cache-Control", "public, max-age=60",
		"Content-Type", "text/html; charset=utf-8",
		"Etag", `"abc"`,
		"Last-Modified", httpDate(t0),
		"Vary", "Accept-Encoding",
	), make([]byte, 16<<10), t0, t0, Defaults{})
	now := t0.Add(7e9)
	b.Run("fast", func(b *testing.B) {
		r := httptest.NewRequest(http.MethodGet, "http://example.com/k", nil)
		w := &discardWriter{h: make(http.Header, 16)}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			ServeEntry(w, r, e, now)
		}
	})
	b.Run("not-modified", func(b *testing.B) {
		r := httptest.NewRequest(http.MethodGet, "http://example.com/k", nil)
		r.Header.Set("If-None-Match", `"abc"`)
		w := &discardWriter{h: make(http.Header, 16)}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			ServeEntry(w, r, e, now)
		}
	})
	b.Run("range", func(b *testing.B) {
		r := httptest.NewRequest(http.MethodGet, "http://example.com/k", nil)
		r.Header.Set("Range", "bytes=100-4195")
		w := &discardWriter{h: make(http.Header, 16)}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			ServeEntry(w, r, e, now)
		}
	})
}
