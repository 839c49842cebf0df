package httpcache

import (
	"net/http"
	"testing"
	"time"
)

func TestParseCacheControl(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name  string
		lines []string
		want  Directives
	}{
		{"empty", nil, Directives{}},
		{"max-age", []string{"max-age=60"}, Directives{MaxAge: 60 * s, HasMaxAge: true}},
		{"case and spaces", []string{"  Max-Age = 60 ,PUBLIC"}, Directives{MaxAge: 60 * s, HasMaxAge: true, Public: true}},
		{"quoted value", []string{`max-age="30", s-maxage="90"`}, Directives{MaxAge: 30 * s, HasMaxAge: true, SMaxAge: 90 * s, HasSMaxAge: true}},
		{"first max-age wins", []string{"max-age=10, max-age=20"}, Directives{MaxAge: 10 * s, HasMaxAge: true}},
		{"first wins across lines", []string{"max-age=10", "max-age=20"}, Directives{MaxAge: 10 * s, HasMaxAge: true}},
		{"invalid max-age is stale", []string{"max-age=abc"}, Directives{HasMaxAge: true}},
		{"negative max-age is stale", []string{"max-age=-5"}, Directives{HasMaxAge: true}},
		{"bare max-age is stale", []string{"max-age"}, Directives{HasMaxAge: true}},
		{"empty max-age is stale", []string{"max-age="}, Directives{HasMaxAge: true}},
		{"invalid first wins", []string{"max-age=x, max-age=60"}, Directives{HasMaxAge: true}},
		{"overflow saturates", []string{"max-age=99999999999999999999"}, Directives{MaxAge: maxDelta, HasMaxAge: true}},
		{"2^31 exactly", []string{"max-age=2147483648"}, Directives{MaxAge: maxDelta, HasMaxAge: true}},
		{"flags", []string{"no-store, no-cache, private, public, must-revalidate, proxy-revalidate, no-transform, immutable, only-if-cached"},
			Directives{NoStore: true, NoCache: true, Private: true, Public: true, MustRevalidate: true, ProxyRevalidate: true, NoTransform: true, Immutable: true, OnlyIfCached: true}},
		{"qualified private", []string{`private="Set-Cookie, X-User"`}, Directives{Private: true}},
		{"qualified no-cache with comma in quotes", []string{`no-cache="Set-Cookie, X-A", max-age=5`}, Directives{NoCache: true, MaxAge: 5 * s, HasMaxAge: true}},
		{"stale directives", []string{"stale-while-revalidate=30, stale-if-error=600"},
			Directives{StaleWhileRevalidate: 30 * s, HasSWR: true, StaleIfError: 600 * s, HasSIE: true}},
		{"request directives", []string{"max-stale=10, min-fresh=5"}, Directives{MaxStale: 10 * s, HasMaxStale: true, MinFresh: 5 * s, HasMinFresh: true}},
		{"bare max-stale", []string{"max-stale"}, Directives{MaxStale: maxDelta, HasMaxStale: true}},
		{"unknown and junk", []string{"foo, =bar, ,,, max-age=7 trailing junk, bar=\"baz"}, Directives{MaxAge: 7 * s, HasMaxAge: true}},
		{"unterminated quote", []string{`max-age="12`}, Directives{MaxAge: 12 * s, HasMaxAge: true}},
		{"escaped quote", []string{`private="a\"b", public`}, Directives{Private: true, Public: true}},
		{"no space after name", []string{"max-age 60"}, Directives{HasMaxAge: true}},
		{"tabs", []string{"\tmax-age=3\t,\tpublic"}, Directives{MaxAge: 3 * s, HasMaxAge: true, Public: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Cache-Control": tt.lines}
			if got := ParseCacheControl(h); got != tt.want {
				t.Errorf("ParseCacheControl(%q) =\n %+v, want\n %+v", tt.lines, got, tt.want)
			}
		})
	}
}

func TestParseCacheControlNoAlloc(t *testing.T) {
	h := http.Header{"Cache-Control": {`public, max-age=60, s-maxage=120, stale-while-revalidate=30, private="x"`}}
	if n := testing.AllocsPerRun(100, func() { ParseCacheControl(h) }); n != 0 {
		t.Errorf("ParseCacheControl allocates %v times", n)
	}
}
