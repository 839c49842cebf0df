package httpcache

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzBaseKey checks that BaseKey never panics, fails only with ErrBadTarget,
// and is idempotent: the key of a request for the key's own host, path and
// query is the key.
func FuzzBaseKey(f *testing.F) {
	f.Add("example.com", "/a/./b/../c?z=1&a=%7e")
	f.Add("Example.COM:80", "/%2e%2E/x%2fy?b&a=&a")
	f.Add("[::1]:443", "http://h/p?q=a b#frag")
	f.Fuzz(func(t *testing.T, host, target string) {
		// Whatever the fields hold, no panic and only ErrBadTarget.
		raw := &http.Request{Host: host, URL: &url.URL{Path: target, RawPath: target, RawQuery: target}}
		if _, err := BaseKey(raw); err != nil && !errors.Is(err, ErrBadTarget) {
			t.Fatalf("BaseKey(raw %q) error %v does not wrap ErrBadTarget", target, err)
		}

		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		key, err := BaseKey(&http.Request{Method: http.MethodGet, Host: host, URL: u})
		if err != nil {
			if !errors.Is(err, ErrBadTarget) {
				t.Fatalf("BaseKey(%q, %q) error %v does not wrap ErrBadTarget", host, target, err)
			}
			return
		}
		i := strings.IndexByte(key, '/')
		if i < 0 {
			t.Fatalf("key %q has no path", key)
		}
		if strings.ContainsRune(key, '#') {
			t.Fatalf("key %q holds '#', which VariantKey uses", key)
		}
		u2, err := url.ParseRequestURI(key[i:])
		if err != nil {
			t.Fatalf("key %q: path and query do not parse: %v", key, err)
		}
		again, err := BaseKey(&http.Request{Method: http.MethodGet, Host: key[:i], URL: u2})
		if err != nil || again != key {
			t.Fatalf("BaseKey not idempotent: %q (host %q, target %q) -> %q, %v", key, host, target, again, err)
		}
		_ = KeyHash(key)

		// A variant adds exactly one '#' per Vary name, whatever the value.
		vk := VariantKey(key, []string{"X-Fuzz", "x-other"}, http.Header{"X-Fuzz": {host, target}})
		if !strings.HasPrefix(vk, key+"#") || strings.Count(vk[len(key):], "#") != 2 {
			t.Fatalf("VariantKey(%q) = %q: ambiguous", key, vk)
		}
	})
}

// FuzzParseCacheControl checks that ParseCacheControl never panics and never
// yields a negative or out-of-range duration.
func FuzzParseCacheControl(f *testing.F) {
	f.Add("public, max-age=60, s-maxage=120")
	f.Add(`private="Set-Cookie", no-cache="a, b", max-age="5`)
	f.Add("max-age=-1, stale-while-revalidate=99999999999999999999, max-stale")
	f.Fuzz(func(t *testing.T, s string) {
		for _, h := range []http.Header{
			{"Cache-Control": {s}},
			{"Cache-Control": strings.Split(s, "\n")},
		} {
			d := ParseCacheControl(h)
			for _, v := range []struct {
				name string
				d    int64
			}{
				{"max-age", int64(d.MaxAge)}, {"s-maxage", int64(d.SMaxAge)},
				{"stale-while-revalidate", int64(d.StaleWhileRevalidate)}, {"stale-if-error", int64(d.StaleIfError)},
				{"max-stale", int64(d.MaxStale)}, {"min-fresh", int64(d.MinFresh)},
			} {
				if v.d < 0 || v.d > int64(maxDelta) {
					t.Fatalf("ParseCacheControl(%q): %s = %d", s, v.name, v.d)
				}
			}
		}
	})
}
