package httpcache

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Conformance tables, each case citing the RFC 9111 (or 9110, 9213) section
// it checks.

func TestRFC9111Lifetime(t *testing.T) {
	const s = time.Second
	date := httpDate(t0)
	lm := httpDate(t0.Add(-10 * time.Hour)) // 10% = 1h
	tests := []struct {
		name   string
		status int // default 200
		h      http.Header
		d      Defaults
		want   time.Duration
	}{
		// §5.3 Expires.
		{"§5.3 invalid Expires is already expired", 0, hdr("Date", date, "Expires", "not a date"), Defaults{TTL: time.Hour}, 0},
		{"§5.3 Expires 0 is already expired", 0, hdr("Date", date, "Expires", "0"), Defaults{}, 0},
		{"§5.3 Expires minus Date", 0, hdr("Date", date, "Expires", httpDate(t0.Add(30*s))), Defaults{}, 30 * s},
		{"§5.3 Expires in the past", 0, hdr("Date", date, "Expires", httpDate(t0.Add(-30*s))), Defaults{}, 0},
		{"§5.3 max-age wins over Expires", 0, hdr("Date", date, "Expires", httpDate(t0.Add(time.Hour)), "Cache-Control", "max-age=10"), Defaults{}, 10 * s},
		{"§5.3 max-age=0 wins over Expires", 0, hdr("Date", date, "Expires", httpDate(t0.Add(time.Hour)), "Cache-Control", "max-age=0"), Defaults{}, 0},
		{"§5.2.2.10 s-maxage wins over max-age", 0, hdr("Date", date, "Cache-Control", "max-age=10, s-maxage=20"), Defaults{}, 20 * s},
		// §5.2, §1.2.2 max-age values.
		{"§5.2 quoted max-age accepted", 0, hdr("Date", date, "Cache-Control", `max-age="3600"`), Defaults{}, 3600 * s},
		{"§1.2.2 single-quoted max-age is invalid: stale", 0, hdr("Date", date, "Cache-Control", "max-age='3600'"), Defaults{}, 0},
		{"§1.2.2 negative max-age is invalid: stale", 0, hdr("Date", date, "Cache-Control", "max-age=-1"), Defaults{}, 0},
		{"§1.2.2 fractional max-age is invalid: stale", 0, hdr("Date", date, "Cache-Control", "max-age=1.5"), Defaults{}, 0},
		{"§1.2.2 out-of-range max-age is 2^31", 0, hdr("Date", date, "Cache-Control", "max-age=99999999999999"), Defaults{}, maxDelta},
		{"§4.2.1 first of two max-age", 0, hdr("Date", date, "Cache-Control", "max-age=10", "Cache-Control", "max-age=3600"), Defaults{}, 10 * s},
		{"§5.2.2.4 no-cache is always stale", 0, hdr("Date", date, "Cache-Control", "no-cache, max-age=3600"), Defaults{}, 0},
		// §4.2.2 heuristics.
		{"§4.2.2 10% of Last-Modified age", 0, hdr("Date", date, "Last-Modified", lm), Defaults{}, time.Hour},
		{"§4.2.2 heuristic capped at a day", 0, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-1000*time.Hour))), Defaults{}, 24 * time.Hour},
		{"§4.2.2 no freshness without Last-Modified", 0, hdr("Date", date), Defaults{}, 0},
		{"§4.2.2 operator default TTL only without Last-Modified", 0, hdr("Date", date), Defaults{TTL: time.Minute}, time.Minute},
		{"§4.2.2 invalid Last-Modified: no heuristic", 0, hdr("Date", date, "Last-Modified", "yesterday"), Defaults{}, 0},
		{"§4.2.2 heuristic for 404", 404, hdr("Date", date, "Last-Modified", lm), Defaults{}, time.Hour},
		{"§4.2.2 heuristic for 301", 301, hdr("Date", date, "Last-Modified", lm), Defaults{}, time.Hour},
		{"§4.2.2 no heuristic for 302", 302, hdr("Date", date, "Last-Modified", lm), Defaults{TTL: time.Minute}, 0},
		{"§4.2.2 no heuristic for 307", 307, hdr("Date", date, "Last-Modified", lm), Defaults{}, 0},
		{"§4.2.2 no heuristic for 500", 500, hdr("Date", date, "Last-Modified", lm), Defaults{TTL: time.Minute}, 0},
		{"§4.2.2 public allows heuristic for 302", 302, hdr("Date", date, "Last-Modified", lm, "Cache-Control", "public"), Defaults{}, time.Hour},
		{"§3 explicit freshness on 500", 500, hdr("Date", date, "Cache-Control", "max-age=30"), Defaults{}, 30 * s},
		// RFC 9213 targeted fields.
		{"RFC 9213 CDN-Cache-Control over Cache-Control", 0, hdr("Date", date, "Cache-Control", "max-age=10", "CDN-Cache-Control", "max-age=600"), Defaults{}, 600 * s},
		{"RFC 9213 CDN-Cache-Control ignores Expires", 0, hdr("Date", date, "Expires", httpDate(t0.Add(time.Hour)), "CDN-Cache-Control", "public"), Defaults{}, 0},
		{"RFC 9213 empty CDN-Cache-Control is ignored", 0, hdr("Date", date, "Cache-Control", "max-age=10", "CDN-Cache-Control", ""), Defaults{}, 10 * s},
		{"RFC 9213 unknown-only CDN-Cache-Control is ignored", 0, hdr("Date", date, "Cache-Control", "max-age=10", "CDN-Cache-Control", "foo=bar"), Defaults{}, 10 * s},
		{"Surrogate-Control over Cache-Control", 0, hdr("Date", date, "Cache-Control", "max-age=10", "Surrogate-Control", "max-age=300"), Defaults{}, 300 * s},
		{"RFC 9213 CDN-Cache-Control over Surrogate-Control", 0, hdr("Date", date, "Surrogate-Control", "max-age=300", "CDN-Cache-Control", "max-age=60"), Defaults{}, 60 * s},
		// Edge Architecture 1.0 §2.2: Surrogate-Control's device targets.
		{"Surrogate-Control targeted at crowdpilot", 0, hdr("Date", date, "Cache-Control", "max-age=10", "Surrogate-Control", "max-age=300;crowdpilot"), Defaults{}, 300 * s},
		{"Surrogate-Control targeted at crowdpilot, any case, spaces", 0, hdr("Date", date, "Surrogate-Control", "max-age=300 ; CrowdPilot"), Defaults{}, 300 * s},
		{"Surrogate-Control targeted at another device is ignored", 0, hdr("Date", date, "Cache-Control", "max-age=10", "Surrogate-Control", "max-age=300;edge1"), Defaults{}, 10 * s},
		{"Surrogate-Control: ours over the untargeted", 0, hdr("Date", date, "Surrogate-Control", "max-age=30, max-age=300;crowdpilot"), Defaults{}, 300 * s},
		{"Surrogate-Control: the untargeted when none is ours", 0, hdr("Date", date, "Surrogate-Control", "max-age=30, max-age=300;edge1"), Defaults{}, 30 * s},
		{"Surrogate-Control: ours on another line", 0, hdr("Date", date, "Surrogate-Control", "max-age=30", "Surrogate-Control", "no-store;edge1, max-age=300;crowdpilot"), Defaults{}, 300 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := tt.status
			if status == 0 {
				status = 200
			}
			e := NewEntry("k", "", nil, status, tt.h, nil, t0, t0, tt.d)
			if e.Lifetime != tt.want {
				t.Errorf("lifetime %v, want %v", e.Lifetime, tt.want)
			}
		})
	}
}

// TestRFC9111AgeParsing: the age_value of §5.1, and §4.2.1's "responses
// that have invalid freshness information" are stale: an Age that is not
// one non-negative integer, or is sent on several lines, leaves the age
// unknown and the response stale until revalidated.
func TestRFC9111AgeParsing(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name  string
		age   []string
		want  time.Duration // InitialAge
		stale bool          // stale on arrival, whatever max-age says
	}{
		{"§5.1 valid", []string{"30"}, 30 * s, false},
		{"§5.1 absent", nil, 0, false},
		{"§5.1 zero", []string{"0"}, 0, false},
		{"§5.1 older than max-age", []string{"7200"}, 7200 * s, true},
		{"§5.1 surrounding whitespace", []string{" 30 "}, 30 * s, false},
		{"§5.1 list: first member", []string{"30, 60"}, 30 * s, false},
		{"§5.1 list: first member, old", []string{"7200,0"}, 7200 * s, true},
		{"§5.1 too large is 2^31", []string{"99999999999999999"}, maxDelta, true},
		{"§5.1, §4.2.1 non-numeric: unknown age, stale", []string{"abc"}, 0, true},
		{"§5.1, §4.2.1 negative: unknown age, stale", []string{"-30"}, 0, true},
		{"§5.1, §4.2.1 fractional: unknown age, stale", []string{"30.0"}, 0, true},
		{"§5.1, §4.2.1 parameter: unknown age, stale", []string{"30;foo=bar"}, 0, true},
		{"§5.1, §4.2.1 numeric parameter: unknown age, stale", []string{"30;foo=111"}, 0, true},
		{"§5.1, §4.2.1 invalid first member: unknown age, stale", []string{"x, 60"}, 0, true},
		{"§5.1, §4.2.1 empty: unknown age, stale", []string{""}, 0, true},
		{"§5.1 singleton on two lines: unknown age, stale", []string{"0", "7200"}, 0, true},
		{"§5.1 singleton on two equal lines: unknown age, stale", []string{"0", "0"}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hdr("Date", httpDate(t0), "Cache-Control", "max-age=3600")
			h["Age"] = tt.age
			e := NewEntry("k", "", nil, 200, h, nil, t0, t0, Defaults{})
			if e.InitialAge != tt.want {
				t.Errorf("initial age %v, want %v", e.InitialAge, tt.want)
			}
			if stale := e.TTL(t0) <= 0; stale != tt.stale {
				t.Errorf("stale on arrival %v (lifetime %v, age %v), want %v", stale, e.Lifetime, e.InitialAge, tt.stale)
			}
		})
	}
}

func TestRFC9111StorableStatus(t *testing.T) {
	get := &http.Request{Method: http.MethodGet, Header: http.Header{}}
	tests := []struct {
		name   string
		status int
		h      http.Header
		reason string
	}{
		{"§3 200 heuristically cacheable", 200, hdr(), ""},
		{"§3 410 heuristically cacheable", 410, hdr(), ""},
		{"§3 501 heuristically cacheable", 501, hdr(), ""},
		{"§3 302 needs explicit freshness", 302, hdr(), "no-freshness"},
		{"§3 302 with Expires", 302, hdr("Expires", httpDate(t0.Add(time.Hour))), ""},
		{"§3 500 with max-age", 500, hdr("Cache-Control", "max-age=60"), ""},
		{"§3 503 without freshness", 503, hdr(), "no-freshness"},
		{"§3 599 with max-age", 599, hdr("Cache-Control", "max-age=60"), ""},
		{"§3 299 unknown status with max-age", 299, hdr("Cache-Control", "max-age=60"), ""},
		{"§3 1xx is not final", 100, hdr("Cache-Control", "max-age=60"), "status"},
		{"§3.3 206 not stored", 206, hdr("Cache-Control", "max-age=60"), "status"},
		{"§4.3.4 304 updates, is not stored", 304, hdr("Cache-Control", "max-age=60"), "status"},
		{"§5.2.2.5 no-store", 200, hdr("Cache-Control", "max-age=60, no-store"), "no-store"},
		{"§5.2.2.3 must-understand overrides no-store", 200, hdr("Cache-Control", "max-age=60, no-store, must-understand"), ""},
		{"§5.2.2.3 must-understand with an unknown status", 299, hdr("Cache-Control", "max-age=60, must-understand"), "status"},
		{"§5.2.2.3 must-understand, unknown status, no-store", 299, hdr("Cache-Control", "max-age=60, no-store, must-understand"), "status"},
		{"RFC 9213 CDN-Cache-Control no-store", 200, hdr("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-store"), "no-store"},
		{"RFC 9213 CDN-Cache-Control over private", 200, hdr("Cache-Control", "private", "CDN-Cache-Control", "max-age=60"), ""},
		{"Surrogate-Control no-store", 200, hdr("Cache-Control", "max-age=60", "Surrogate-Control", "no-store"), "no-store"},
		{"Surrogate-Control targeted at crowdpilot over Cache-Control no-store", 200, hdr("Cache-Control", "no-store", "Surrogate-Control", "max-age=10000;crowdpilot"), ""},
		{"Surrogate-Control no-store for another device", 200, hdr("Cache-Control", "max-age=60", "Surrogate-Control", "no-store;edge1"), ""},
		{"§4.1 Vary: *", 200, hdr("Cache-Control", "max-age=60", "Vary", "*"), "vary-star"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := Storable(get, tt.status, tt.h)
			if ok != (tt.reason == "") || reason != tt.reason {
				t.Errorf("Storable = %v, %q; want %q", ok, reason, tt.reason)
			}
		})
	}
}

func TestRFC9111Decide(t *testing.T) {
	const s = time.Second
	entry := func(lifetime, swr time.Duration, noStale bool) *Entry {
		return &Entry{ResponseTime: t0, Lifetime: lifetime, SWR: swr, NoStale: noStale}
	}
	fresh := entry(100*s, 0, false)     // at t0+10s: age 10, ttl 90
	stale := entry(5*s, 0, false)       // at t0+10s: stale by 5s
	graced := entry(5*s, 60*s, false)   // stale by 5s within SWR
	mustReval := entry(5*s, 0, true)    // must-revalidate
	prefreshed := entry(11*s, 0, false) // at t0+10s: past 90%
	at := t0.Add(10 * s)
	honour := RequestPolicy{Prefresh: 0.9}
	ignore := RequestPolicy{Prefresh: 0.9, IgnoreClientRevalidate: true}
	cc := func(v string) Directives { return RequestDirectives(hdr("Cache-Control", v)) }
	tests := []struct {
		name string
		req  Directives
		e    *Entry
		p    RequestPolicy
		want Action
	}{
		{"miss fetches", Directives{}, nil, honour, Fetch},
		{"§4.2 fresh is served", Directives{}, fresh, honour, Serve},
		{"prefresh point: serve and refresh", Directives{}, prefreshed, honour, ServeRefresh},
		{"§4.2.4 stale without permission revalidates", Directives{}, stale, honour, Revalidate},
		{"RFC 5861 stale-while-revalidate serves stale", Directives{}, graced, honour, ServeStale},
		{"§5.2.1.4 no-cache revalidates a fresh entry", cc("no-cache"), fresh, honour, Revalidate},
		{"§5.4 Pragma: no-cache without Cache-Control", RequestDirectives(hdr("Pragma", "no-cache")), fresh, honour, Revalidate},
		{"§5.4 Pragma ignored beside Cache-Control", RequestDirectives(hdr("Pragma", "no-cache", "Cache-Control", "max-stale")), fresh, honour, Serve},
		{"§5.2.1.4 no-cache ignored for origin protection", cc("no-cache"), fresh, ignore, Serve},
		{"§5.2.1.1 max-age=0 revalidates", cc("max-age=0"), fresh, honour, Revalidate},
		{"§5.2.1.1 max-age=0 ignored for origin protection", cc("max-age=0"), fresh, ignore, Serve},
		{"§5.2.1.1 max-age above the age serves", cc("max-age=20"), fresh, honour, Serve},
		{"§5.2.1.1 max-age below the age revalidates", cc("max-age=5"), fresh, honour, Revalidate},
		{"§5.2.1.1 max-age forbids the grace", cc("max-age=1"), graced, honour, Revalidate},
		{"§5.2.1.3 min-fresh within ttl serves", cc("min-fresh=60"), fresh, honour, Serve},
		{"§5.2.1.3 min-fresh beyond ttl revalidates", cc("min-fresh=120"), fresh, honour, Revalidate},
		{"§5.2.1.2 max-stale allows stale", cc("max-stale=10"), stale, honour, ServeStale},
		{"§5.2.1.2 bare max-stale allows any staleness", cc("max-stale"), stale, honour, ServeStale},
		{"§5.2.1.2 max-stale too small", cc("max-stale=2"), stale, honour, Revalidate},
		{"§5.2.2.2 must-revalidate beats max-stale", cc("max-stale"), mustReval, honour, Revalidate},
		{"§5.2.1.7 only-if-cached, fresh", cc("only-if-cached"), fresh, honour, Serve},
		{"§5.2.1.7 only-if-cached, miss: 504", cc("only-if-cached"), nil, honour, GatewayTimeout},
		{"§5.2.1.7 only-if-cached, stale: 504", cc("only-if-cached"), stale, honour, GatewayTimeout},
		{"§5.2.1.7 only-if-cached with max-stale", cc("only-if-cached, max-stale"), stale, honour, ServeStale},
		{"§5.2.1.5 no-store still served from cache", cc("no-store"), fresh, honour, Serve},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(tt.req, tt.e, at, tt.p); got != tt.want {
				t.Errorf("Decide = %v, want %v", got, tt.want)
			}
		})
	}
}

// §4.1: a stored response matches a request whose listed header values are
// the same after normalising (whitespace, combining field lines); several
// Vary field lines combine, and a header absent on both sides matches.
func TestRFC9111VaryMatching(t *testing.T) {
	const base = "example.com/v"
	tests := []struct {
		name        string
		vary        []string
		stored, req http.Header
		match       bool
	}{
		{"§4.1 same value", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "gzip"), true},
		{"§4.1 different value", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "br"), false},
		{"§4.1 whitespace around commas", []string{"Accept-Language"}, hdr("Accept-Language", "en,fr"), hdr("Accept-Language", "en , fr"), true},
		{"§4.1 whitespace runs", []string{"X-A"}, hdr("X-A", "a  b"), hdr("X-A", " a b "), true},
		{"§4.1 combined field lines", []string{"Accept-Language"}, hdr("Accept-Language", "en, fr"), hdr("Accept-Language", "en", "Accept-Language", "fr"), true},
		{"§4.1 several Vary field lines", []string{"Accept-Encoding", "X-A"}, hdr("Accept-Encoding", "gzip", "X-A", "1"), hdr("Accept-Encoding", "gzip", "X-A", "1"), true},
		{"§4.1 several Vary, one differs", []string{"Accept-Encoding", "X-A"}, hdr("Accept-Encoding", "gzip", "X-A", "1"), hdr("Accept-Encoding", "gzip", "X-A", "2"), false},
		{"§4.1 absent on both sides", []string{"X-A"}, hdr(), hdr(), true},
		{"§4.1 absent on one side", []string{"X-A"}, hdr(), hdr("X-A", ""), false},
		{"§4.1 field name case", []string{"x-a"}, hdr("X-A", "1"), hdr("x-a", "1"), true},
		{"§4.1 Accept-Encoding order and case (RFC 9110 §12.5.3)", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip, br"), hdr("Accept-Encoding", "BR,gzip"), true},
		{"§4.1 Accept-Encoding over lines", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "br, gzip"), hdr("Accept-Encoding", "gzip", "Accept-Encoding", "br"), true},
		{"§4.1 Accept-Encoding weights count", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip;q=0.5, br"), hdr("Accept-Encoding", "gzip, br"), false},
		{"§4.1 Accept-Language order counts", []string{"Accept-Language"}, hdr("Accept-Language", "en, fr"), hdr("Accept-Language", "fr, en"), false},
		{"§4.1 Accept-Language case (RFC 4647 §2)", []string{"Accept-Language"}, hdr("Accept-Language", "en-US, de"), hdr("Accept-Language", "eN-us, De"), true},
		{"§4.1 Accept-Language weights count", []string{"Accept-Language"}, hdr("Accept-Language", "en, de"), hdr("Accept-Language", "en;q=0.5, de"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := VariantKey(base, tt.vary, tt.stored), VariantKey(base, tt.vary, tt.req)
			if (a == b) != tt.match {
				t.Errorf("keys %q and %q: match %v, want %v", a, b, a == b, tt.match)
			}
		})
	}
}

// §3.1: hop-by-hop fields and the fields named by Connection are not stored.
func TestRFC9111HopByHopNotStored(t *testing.T) {
	h := hdr("Cache-Control", "max-age=60", "Connection", "X-Conn, x-other", "Connection", "X-Second",
		"X-Conn", "1", "X-Other", "2", "X-Second", "3", "Keep-Alive", "timeout=5", "Proxy-Connection", "keep-alive",
		"Te", "trailers", "Trailer", "X-T", "Upgrade", "h2c", "Proxy-Authenticate", "Basic", "X-End", "kept")
	e := NewEntry("k", "", nil, 200, h, nil, t0, t0, Defaults{})
	for _, k := range []string{"Connection", "X-Conn", "X-Other", "X-Second", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Proxy-Authenticate"} {
		if _, ok := e.Header[k]; ok {
			t.Errorf("%s stored", k)
		}
	}
	if e.Header.Get("X-End") != "kept" {
		t.Error("end-to-end X-End not stored")
	}
	// §4.3.4: a 304's Connection-listed fields do not reach the entry either.
	r := e.Revalidated(hdr("Connection", "X-New", "X-New", "1", "X-Fresh", "2"), t0, t0, Defaults{})
	if _, ok := r.Header["X-New"]; ok || r.Header.Get("X-Fresh") != "2" {
		t.Errorf("after 304: X-New %q, X-Fresh %q", r.Header.Get("X-New"), r.Header.Get("X-Fresh"))
	}
}

// §4.3.4: a 304 that selects the stored response (by its validator)
// updates the stored headers and freshness, except those describing the
// stored content (§3.2); the stale windows follow the new directives. A 304
// whose validator selects nothing updates nothing.
func TestRFC9111NotModifiedUpdates(t *testing.T) {
	lm := httpDate(t0.Add(-time.Hour))
	e := NewEntry("k", "", nil, 200, hdr("Date", httpDate(t0), "Cache-Control", "max-age=1", "Etag", `"a"`, "Last-Modified", lm,
		"X-V", "1", "Content-Encoding", "gzip", "Content-Md5", "rL0Y20zC+Fzt72VPzMSk2A=="), []byte("body"), t0, t0, Defaults{})
	weak := NewEntry("k", "", nil, 200, hdr("Date", httpDate(t0), "Cache-Control", "max-age=1", "Etag", `W/"a"`, "X-V", "1"), []byte("body"), t0, t0, Defaults{})
	lmOnly := NewEntry("k", "", nil, 200, hdr("Date", httpDate(t0), "Cache-Control", "max-age=1", "Last-Modified", lm, "X-V", "1"), []byte("body"), t0, t0, Defaults{})
	t1 := t0.Add(time.Hour)
	updated := func(r *Entry) string {
		if r.Header.Get("X-V") != "2" || r.State(t1, 0) != Fresh {
			return "not updated: X-V " + r.Header.Get("X-V")
		}
		return ""
	}
	unchanged := func(r *Entry) string {
		if r.Header.Get("X-V") != "1" || r.State(t1, 0) == Fresh {
			return "updated: X-V " + r.Header.Get("X-V")
		}
		return ""
	}
	tests := []struct {
		name  string
		e     *Entry // nil: e
		h     http.Header
		check func(*Entry) string
	}{
		{"§4.3.4 new Cache-Control refreshes", nil, hdr("Date", httpDate(t1), "Cache-Control", "max-age=600"), func(r *Entry) string {
			if r.Lifetime != 600*time.Second || r.State(t1.Add(time.Minute), 0) != Fresh {
				return "not fresh for 600s"
			}
			return ""
		}},
		{"§4.3.4 header replaced", nil, hdr("X-V", "2"), func(r *Entry) string {
			if r.Header.Get("X-V") != "2" {
				return "X-V " + r.Header.Get("X-V")
			}
			return ""
		}},
		{"§4.3.4 unlisted header kept", nil, hdr("X-W", "9"), func(r *Entry) string {
			if r.Header.Get("X-V") != "1" || r.Header.Get("X-W") != "9" {
				return "X-V " + r.Header.Get("X-V") + " X-W " + r.Header.Get("X-W")
			}
			return ""
		}},
		{"§4.3.4 the stored strong ETag selects it", nil, hdr("Etag", `"a"`, "Cache-Control", "max-age=600", "X-V", "2"), updated},
		{"§4.3.4 another strong ETag selects nothing: no update", nil, hdr("Etag", `"b"`, "Cache-Control", "max-age=600", "X-V", "2"), func(r *Entry) string {
			if r.ETag != `"a"` || r.Header.Get("Etag") != `"a"` {
				return "ETag " + r.ETag
			}
			return unchanged(r)
		}},
		{"§4.3.4 a strong ETag does not select a weak one", weak, hdr("Etag", `"a"`, "Cache-Control", "max-age=600", "X-V", "2"), unchanged},
		{"§4.3.4 a weak ETag selects weakly", nil, hdr("Etag", `W/"a"`, "Cache-Control", "max-age=600", "X-V", "2"), updated},
		{"§4.3.4 a weak ETag selects a weak one", weak, hdr("Etag", `W/"a"`, "Cache-Control", "max-age=600", "X-V", "2"), updated},
		{"§4.3.4 the stored Last-Modified selects it", lmOnly, hdr("Last-Modified", lm, "Cache-Control", "max-age=600", "X-V", "2"), updated},
		{"§4.3.4 another Last-Modified selects nothing", lmOnly, hdr("Last-Modified", httpDate(t0), "Cache-Control", "max-age=600", "X-V", "2"), unchanged},
		{"§4.3.4 no validator: the one stored response", lmOnly, hdr("Cache-Control", "max-age=600", "X-V", "2"), updated},
		{"§3.2 Content-Length not updated", nil, hdr("Content-Length", "0"), func(r *Entry) string {
			if r.Header.Get("Content-Length") != "4" {
				return "Content-Length " + r.Header.Get("Content-Length")
			}
			return ""
		}},
		{"§3.2 Content-Encoding and Content-MD5 describe the stored content: not updated", nil, hdr("Content-Encoding", "br", "Content-Md5", "N7UdGUp1E+RbVvZSTy1R8g==", "Content-Type", "text/html"), func(r *Entry) string {
			if r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Content-Md5") != "rL0Y20zC+Fzt72VPzMSk2A==" {
				return "Content-Encoding " + r.Header.Get("Content-Encoding") + ", Content-MD5 " + r.Header.Get("Content-Md5")
			}
			if r.Header.Get("Content-Type") != "text/html" {
				return "Content-Type not updated: " + r.Header.Get("Content-Type")
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := e
			if tt.e != nil {
				base = tt.e
			}
			if msg := tt.check(base.Revalidated(tt.h, t1, t1, Defaults{})); msg != "" {
				t.Error(msg)
			}
		})
	}
}

// RFC 9110 §13.2.2: If-None-Match is evaluated before If-Modified-Since,
// with weak comparison, over a list of entity tags.
func TestRFC9110Conditionals(t *testing.T) {
	lm := t0.Add(-time.Hour)
	e := NewEntry("k", "", nil, 200, hdr("Date", httpDate(t0), "Cache-Control", "max-age=60", "Etag", `W/"v1"`, "Last-Modified", httpDate(lm)), []byte("x"), t0, t0, Defaults{})
	tests := []struct {
		name string
		h    http.Header
		code int
	}{
		{"§13.1.2 weak comparison matches W/", hdr("If-None-Match", `"v1"`), 304},
		{"§13.1.2 several tags, one matches", hdr("If-None-Match", `"a", W/"v1", "b"`), 304},
		{"§13.1.2 several tags, none matches", hdr("If-None-Match", `"a", "b"`), 200},
		{"§13.2.2 If-None-Match wins over a matching If-Modified-Since", hdr("If-None-Match", `"other"`, "If-Modified-Since", httpDate(t0)), 200},
		{"§13.2.2 If-None-Match match wins over an old If-Modified-Since", hdr("If-None-Match", `"v1"`, "If-Modified-Since", httpDate(lm.Add(-time.Hour))), 304},
		{"§13.1.3 If-Modified-Since alone", hdr("If-Modified-Since", httpDate(t0)), 304},
		{"§13.1.3 If-Modified-Since before Last-Modified", hdr("If-Modified-Since", httpDate(lm.Add(-time.Minute))), 200},
		{"§13.1.3 invalid If-Modified-Since ignored", hdr("If-Modified-Since", "yesterday"), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header = tt.h
			w := httptest.NewRecorder()
			ServeEntry(w, r, e, t0)
			if w.Code != tt.code {
				t.Errorf("status %d, want %d", w.Code, tt.code)
			}
		})
	}
}

// The variant key of a common Accept-Encoding costs the key's one
// allocation, as other headers' do.
func TestVariantKeyAcceptEncodingAllocs(t *testing.T) {
	h := http.Header{"Accept-Encoding": {"gzip, deflate, br"}}
	vary := []string{"Accept-Encoding"}
	if n := testing.AllocsPerRun(100, func() { VariantKey("example.com/x", vary, h) }); n > 1 {
		t.Errorf("VariantKey allocates %v times, want 1", n)
	}
}
