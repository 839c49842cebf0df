package httpcache

import (
	"net/http"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)

// hdr builds a header from name, value pairs.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

func TestFreshness(t *testing.T) {
	const s = time.Second
	date := httpDate(t0)
	tests := []struct {
		name     string
		status   int
		h        http.Header
		d        Defaults
		reqTime  time.Time // default t0
		respTime time.Time // default t0
		lifetime time.Duration
		initAge  time.Duration
		swr, sie time.Duration
	}{
		{name: "max-age", h: hdr("Date", date, "Cache-Control", "max-age=60"), lifetime: 60 * s},
		{name: "expires minus date", h: hdr("Date", date, "Expires", httpDate(t0.Add(120*s))), lifetime: 120 * s},
		{name: "max-age beats expires", h: hdr("Date", date, "Cache-Control", "max-age=60", "Expires", httpDate(t0.Add(time.Hour))), lifetime: 60 * s},
		{name: "s-maxage beats max-age", h: hdr("Date", date, "Cache-Control", "max-age=60, s-maxage=300"), lifetime: 300 * s},
		{name: "expires without date uses response time", h: hdr("Expires", httpDate(t0.Add(90*s))), respTime: t0.Add(30 * s), lifetime: 60 * s, initAge: 30 * s}, // response delay
		{name: "invalid expires is stale", h: hdr("Date", date, "Expires", "0"), lifetime: 0},
		{name: "past expires is stale", h: hdr("Date", date, "Expires", httpDate(t0.Add(-time.Hour))), lifetime: 0},
		{name: "first expires wins", h: hdr("Date", date, "Expires", httpDate(t0.Add(10*s)), "Expires", httpDate(t0.Add(time.Hour))), lifetime: 10 * s},
		{name: "invalid max-age is stale, not expires", h: hdr("Date", date, "Cache-Control", "max-age=soon", "Expires", httpDate(t0.Add(time.Hour))), lifetime: 0},
		// RFC 9111 §4.2.3: corrected_age_value = Age + response_delay.
		{name: "age header", h: hdr("Date", date, "Cache-Control", "max-age=60", "Age", "20"), respTime: t0.Add(s), lifetime: 60 * s, initAge: 21 * s},
		// Apparent age counts from the end of Date's second (its resolution).
		{name: "apparent age dominates", h: hdr("Date", httpDate(t0.Add(-30*s)), "Cache-Control", "max-age=60", "Age", "5"), lifetime: 60 * s, initAge: 29 * s},
		{name: "date's own second is no age", h: hdr("Date", date, "Cache-Control", "max-age=2"), respTime: t0.Add(800 * time.Millisecond), reqTime: t0.Add(750 * time.Millisecond), lifetime: 2 * s, initAge: 50 * time.Millisecond},
		// RFC 9111 §5.1, §4.2.1: an Age the cache cannot read leaves the age unknown: stale.
		{name: "invalid age: stale", h: hdr("Date", date, "Cache-Control", "max-age=60", "Age", "-3"), lifetime: 0},
		{name: "future date is age zero", h: hdr("Date", httpDate(t0.Add(time.Hour)), "Cache-Control", "max-age=60"), lifetime: 60 * s},
		// RFC 9111 §4.2.2: 10% of the time since Last-Modified.
		{name: "heuristic from last-modified", h: hdr("Date", date, "Last-Modified", httpDate(t0.Add(-10*time.Hour))), lifetime: time.Hour},
		{name: "last-modified heuristic, not the default TTL", h: hdr("Date", date, "Last-Modified", httpDate(t0.Add(-10*time.Hour))), d: Defaults{TTL: 60 * s}, lifetime: time.Hour},
		{name: "heuristic capped at a day", h: hdr("Date", date, "Last-Modified", httpDate(t0.Add(-100*24*time.Hour))), lifetime: 24 * time.Hour},
		{name: "default TTL without last-modified", h: hdr("Date", date), d: Defaults{TTL: 60 * s}, lifetime: 60 * s},
		{name: "no heuristic without TTL", h: hdr("Date", date), lifetime: 0},
		{name: "heuristic for 404", status: 404, h: hdr("Date", date), d: Defaults{TTL: 60 * s}, lifetime: 60 * s},
		{name: "no heuristic for 302", status: 302, h: hdr("Date", date), d: Defaults{TTL: 60 * s}, lifetime: 0},
		{name: "public makes 302 heuristic", status: 302, h: hdr("Date", date, "Cache-Control", "public"), d: Defaults{TTL: 60 * s}, lifetime: 60 * s},
		{name: "no-cache is always stale", h: hdr("Date", date, "Cache-Control", "no-cache, max-age=60"), d: Defaults{StaleWhileRevalidate: 10 * s, StaleIfError: time.Hour}, lifetime: 0},
		{name: "stale windows from directives", h: hdr("Date", date, "Cache-Control", "max-age=60, stale-while-revalidate=30, stale-if-error=600"),
			d: Defaults{StaleWhileRevalidate: 10 * s, StaleIfError: time.Hour}, lifetime: 60 * s, swr: 30 * s, sie: 600 * s},
		{name: "stale windows from defaults", h: hdr("Date", date, "Cache-Control", "max-age=60"),
			d: Defaults{StaleWhileRevalidate: 10 * s, StaleIfError: time.Hour}, lifetime: 60 * s, swr: 10 * s, sie: time.Hour},
		{name: "must-revalidate disables stale", h: hdr("Date", date, "Cache-Control", "max-age=60, must-revalidate, stale-while-revalidate=30, stale-if-error=60"),
			d: Defaults{StaleWhileRevalidate: 10 * s, StaleIfError: time.Hour}, lifetime: 60 * s},
		{name: "proxy-revalidate disables stale", h: hdr("Date", date, "Cache-Control", "max-age=60, proxy-revalidate"),
			d: Defaults{StaleWhileRevalidate: 10 * s, StaleIfError: time.Hour}, lifetime: 60 * s},
		{name: "s-maxage disables default stale", h: hdr("Date", date, "Cache-Control", "s-maxage=60"),
			d: Defaults{StaleWhileRevalidate: 10 * s, StaleIfError: time.Hour}, lifetime: 60 * s},
		{name: "s-maxage keeps explicit stale when allowed", h: hdr("Date", date, "Cache-Control", "s-maxage=60, stale-while-revalidate=300"),
			d: Defaults{StaleWhileRevalidate: 10 * s, StaleIfError: time.Hour, StaleUnderSMaxAge: true}, lifetime: 60 * s, swr: 300 * s},
		// RFC 9111 §5.2.2.10, §4.2.4: s-maxage implies proxy-revalidate.
		{name: "s-maxage forbids explicit stale when strict", h: hdr("Date", date, "Cache-Control", "s-maxage=60, stale-while-revalidate=300, stale-if-error=60"),
			d: Defaults{}, lifetime: 60 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := tt.status
			if status == 0 {
				status = 200
			}
			req, resp := tt.reqTime, tt.respTime
			if req.IsZero() {
				req = t0
			}
			if resp.IsZero() {
				resp = t0
			}
			e := NewEntry("k", "", nil, status, tt.h, nil, req, resp, tt.d)
			if e.Lifetime != tt.lifetime || e.InitialAge != tt.initAge || e.SWR != tt.swr || e.SIE != tt.sie {
				t.Errorf("lifetime %v initial age %v swr %v sie %v; want %v %v %v %v",
					e.Lifetime, e.InitialAge, e.SWR, e.SIE, tt.lifetime, tt.initAge, tt.swr, tt.sie)
			}
		})
	}
}

func TestAgeAndState(t *testing.T) {
	e := &Entry{ResponseTime: t0, InitialAge: 10 * time.Second, Lifetime: 100 * time.Second, SWR: 10 * time.Second, SIE: 60 * time.Second}
	tests := []struct {
		at    time.Duration // after t0
		age   time.Duration
		state State
	}{
		{-time.Second, 10 * time.Second, Fresh}, // clock skew: no negative resident time
		{0, 10 * time.Second, Fresh},
		{79 * time.Second, 89 * time.Second, Fresh},
		{80 * time.Second, 90 * time.Second, Prefresh},
		{89 * time.Second, 99 * time.Second, Prefresh},
		{90 * time.Second, 100 * time.Second, StaleRevalidate},
		{99 * time.Second, 109 * time.Second, StaleRevalidate},
		{100 * time.Second, 110 * time.Second, StaleError},
		{149 * time.Second, 159 * time.Second, StaleError},
		{150 * time.Second, 160 * time.Second, Expired},
	}
	for _, tt := range tests {
		now := t0.Add(tt.at)
		if got := e.Age(now); got != tt.age {
			t.Errorf("Age(t0%+v) = %v, want %v", tt.at, got, tt.age)
		}
		if got := e.TTL(now); got != e.Lifetime-tt.age {
			t.Errorf("TTL(t0%+v) = %v, want %v", tt.at, got, e.Lifetime-tt.age)
		}
		if got := e.State(now, 0.9); got != tt.state {
			t.Errorf("State(t0%+v) = %v, want %v", tt.at, got, tt.state)
		}
	}
	if got := e.State(t0.Add(85*time.Second), 0); got != Fresh {
		t.Errorf("State with prefresh disabled = %v, want fresh", got)
	}
	always := &Entry{ResponseTime: t0}
	if got := always.State(t0, 0.9); got != Expired {
		t.Errorf("no-cache entry without stale windows: %v, want expired", got)
	}
	if got := (&Entry{ResponseTime: t0, SWR: time.Second}).State(t0, 0.9); got != StaleRevalidate {
		t.Errorf("zero-lifetime entry with swr: %v, want stale-revalidate", got)
	}
}

func TestStorable(t *testing.T) {
	get := func(kv ...string) *http.Request {
		r := &http.Request{Method: http.MethodGet, Header: hdr(kv...)}
		return r
	}
	tests := []struct {
		name   string
		req    *http.Request
		status int
		h      http.Header
		reason string // "" = storable
	}{
		{"plain 200", get(), 200, hdr(), ""},
		{"nil request", nil, 200, hdr(), ""},
		{"head", &http.Request{Method: http.MethodHead}, 200, hdr(), ""},
		{"post", &http.Request{Method: http.MethodPost}, 200, hdr("Cache-Control", "max-age=60"), "method"},
		{"206", get(), 206, hdr("Cache-Control", "max-age=60"), "status"},
		{"500 with max-age", get(), 500, hdr("Cache-Control", "max-age=60"), ""},
		{"500 without freshness", get(), 500, hdr(), "no-freshness"},
		{"304", get(), 304, hdr(), "status"},
		{"no-store", get(), 200, hdr("Cache-Control", "max-age=60, no-store"), "no-store"},
		{"request no-store", get("Cache-Control", "no-store"), 200, hdr("Cache-Control", "max-age=60"), "no-store"},
		{"private", get(), 200, hdr("Cache-Control", "private, max-age=60"), "private"},
		{"qualified private", get(), 200, hdr("Cache-Control", `private="Set-Cookie", max-age=60`), "private"},
		{"vary star", get(), 200, hdr("Vary", "Accept, *"), "vary-star"},
		{"authorization", get("Authorization", "Bearer x"), 200, hdr("Cache-Control", "max-age=60"), "authorization"},
		{"authorization public", get("Authorization", "Bearer x"), 200, hdr("Cache-Control", "public, max-age=60"), ""},
		{"authorization s-maxage", get("Authorization", "Bearer x"), 200, hdr("Cache-Control", "s-maxage=60"), ""},
		{"authorization must-revalidate", get("Authorization", "Bearer x"), 200, hdr("Cache-Control", "max-age=60, must-revalidate"), ""},
		{"set-cookie", get(), 200, hdr("Cache-Control", "max-age=60", "Set-Cookie", "sid=1"), "set-cookie"},
		{"set-cookie public", get(), 200, hdr("Cache-Control", "public, max-age=60", "Set-Cookie", "sid=1"), ""},
		{"set-cookie s-maxage", get(), 200, hdr("Cache-Control", "s-maxage=60", "Set-Cookie", "sid=1"), ""},
		{"302 without freshness", get(), 302, hdr(), "no-freshness"},
		{"302 with max-age", get(), 302, hdr("Cache-Control", "max-age=60"), ""},
		{"302 with expires", get(), 302, hdr("Expires", "0"), ""},
		{"302 public", get(), 302, hdr("Cache-Control", "public"), ""},
		{"no-cache 200", get(), 200, hdr("Cache-Control", "no-cache"), ""},
		{"404", get(), 404, hdr(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := Storable(tt.req, tt.status, tt.h)
			if ok != (tt.reason == "") || reason != tt.reason {
				t.Errorf("Storable = %v, %q; want reason %q", ok, reason, tt.reason)
			}
		})
	}
}
