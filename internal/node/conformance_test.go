package node

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// confOrigin is an origin whose answer is scripted per path. It counts
// fetches and keeps the last request's header of each path, and dates its
// responses by the test clock, so freshness follows the clock.
type confOrigin struct {
	clock  *testClock
	routes map[string]func(w http.ResponseWriter, r *http.Request, n int) // n: fetch number of the path, from 1; set before serving

	mu   sync.Mutex // guards hits and last
	hits map[string]int
	last map[string]http.Header
}

func newConfOrigin(clock *testClock) *confOrigin {
	return &confOrigin{clock: clock, routes: map[string]func(http.ResponseWriter, *http.Request, int){}, hits: map[string]int{}, last: map[string]http.Header{}}
}

func (o *confOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.hits[r.URL.Path]++
	n := o.hits[r.URL.Path]
	o.last[r.URL.Path] = r.Header.Clone()
	o.mu.Unlock()
	w.Header().Set("Date", o.clock.Now().UTC().Format(http.TimeFormat))
	route, ok := o.routes[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	route(w, r, n)
}

func (o *confOrigin) fetches(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

func (o *confOrigin) lastHeader(path string) http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last[path]
}

// respond returns a route answering status with the header pairs and body.
func respond(status int, body string, kv ...string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

type confReply struct {
	status int
	body   string
	header http.Header
}

// getWith sends a GET for path to node i with the header pairs kv.
func (tc *testCluster) getWith(i int, path string, kv ...string) confReply {
	tc.t.Helper()
	req, err := http.NewRequest(http.MethodGet, tc.url(i, path), nil)
	if err != nil {
		tc.t.Fatal(err)
	}
	for j := 0; j+1 < len(kv); j += 2 {
		req.Header.Add(kv[j], kv[j+1])
	}
	resp, err := tc.client.Do(req)
	if err != nil {
		tc.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tc.t.Fatalf("GET %s body: %v", path, err)
	}
	return confReply{resp.StatusCode, string(b), resp.Header}
}

// confCluster is a 3-node cluster in front of o, with the autopilot off and
// the purge log trusted across clock jumps, so the tests move freshness
// with the clock alone.
func confCluster(t *testing.T, o *confOrigin, tweak func(*Config)) *testCluster {
	return newTestClusterOrigin(t, 3, o, func(c *Config) {
		c.Now = o.clock.Now
		c.DisableAutopilot = true
		c.PurgeMaxDisconnect = 24 * time.Hour
		if tweak != nil {
			tweak(c)
		}
	})
}

func isHit(r confReply) bool { return strings.Contains(cacheStatus(r.header), "hit") }

// isStale: served stale, by the node's own store, a near copy or a reserve
// ("detail=stale", "detail=near-stale", "detail=reserve-stale").
func isStale(r confReply) bool {
	cs := cacheStatus(r.header)
	return strings.Contains(cs, "detail=stale") || strings.Contains(cs, "-stale")
}

// TestConformanceStrict drives a strict cluster (RFC 9111 without
// deviations) the way a client and an origin would, a few cases per area.
func TestConformanceStrict(t *testing.T) {
	clock := newTestClock()
	o := newConfOrigin(clock)
	lastMod := clock.Now().Add(-100 * time.Second).UTC().Format(http.TimeFormat) // heuristic: 10s
	o.routes["/fresh"] = respond(200, "fresh", "Cache-Control", "max-age=60")
	o.routes["/reval"] = func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 1 && r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("X-Version", "2")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		respond(200, "body-v1", "Etag", `"v1"`, "X-Version", "1")(w, r, n)
	}
	o.routes["/heuristic"] = respond(200, "h", "Last-Modified", lastMod)
	o.routes["/expires-invalid"] = respond(200, "e", "Expires", "0")
	o.routes["/max-age-0"] = respond(200, "m", "Cache-Control", "max-age=0", "Expires", clock.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	o.routes["/quoted"] = respond(200, "q", "Cache-Control", `max-age="60"`)
	o.routes["/single-quoted"] = respond(200, "q", "Cache-Control", `max-age='60'`)
	o.routes["/age-invalid"] = respond(200, "a", "Cache-Control", "max-age=60", "Age", "abc")
	o.routes["/age-old"] = respond(200, "a", "Cache-Control", "max-age=60", "Age", "100")
	o.routes["/age-twolines"] = respond(200, "a", "Cache-Control", "max-age=60", "Age", "0", "Age", "0")
	o.routes["/age-list"] = respond(200, "a", "Cache-Control", "max-age=60", "Age", "0, 100")
	o.routes["/500"] = respond(500, "oops", "Cache-Control", "max-age=60")
	o.routes["/302"] = respond(302, "", "Location", "/fresh")
	o.routes["/client"] = respond(200, "c", "Cache-Control", "max-age=60")
	// The store keeps a stale entry past its windows only when it has a
	// validator (StoreConfig.RevalidateGrace): max-stale needs one.
	o.routes["/short"] = respond(200, "s", "Cache-Control", "max-age=2", "Etag", `"s1"`)
	o.routes["/swr"] = respond(200, "s", "Cache-Control", "max-age=2, stale-while-revalidate=30")
	o.routes["/smaxage"] = respond(200, "s", "Cache-Control", "s-maxage=2, stale-while-revalidate=30")
	o.routes["/nostore-refresh"] = respond(200, "n", "Cache-Control", "max-age=2, stale-while-revalidate=30")
	o.routes["/vary"] = respond(200, "v", "Cache-Control", "max-age=60", "Vary", "Accept-Language", "Vary", "X-Device")
	o.routes["/cond"] = respond(200, "c", "Cache-Control", "max-age=60", "Etag", `W/"c1"`, "Last-Modified", lastMod)
	o.routes["/cdn"] = respond(200, "cdn", "Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60")
	o.routes["/surrogate"] = respond(200, "sur", "Cache-Control", "max-age=60", "Surrogate-Control", "no-store")
	// A capability-aware origin: its Surrogate-Control targets crowdpilot
	// only when told it is there (Edge Architecture 1.0 §2.1).
	o.routes["/surrogate-target"] = func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Surrogate-Capability") == `crowdpilot="Surrogate/1.0"` {
			w.Header().Set("Surrogate-Control", "max-age=60;crowdpilot")
		}
		respond(200, "st", "Cache-Control", "no-store")(w, r, n)
	}
	// A 304 keeps what describes the stored content (RFC 9111 §3.2) and
	// updates the rest; one whose ETag is not the stored one updates nothing
	// (§4.3.4).
	o.routes["/reval-integrity"] = func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 1 {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Etag", `"i1"`)
			w.Header().Set("Content-Encoding", "zstd")
			w.Header().Set("Content-Md5", "N7UdGUp1E+RbVvZSTy1R8g==")
			w.Header().Set("X-Version", "2")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		respond(200, "br", "Cache-Control", "max-age=2", "Etag", `"i1"`, "Content-Encoding", "br", "Content-Md5", "rL0Y20zC+Fzt72VPzMSk2A==", "X-Version", "1")(w, r, n)
	}
	o.routes["/reval-other-etag"] = func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 1 {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Etag", `"o2"`)
			w.Header().Set("X-Version", "2")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		respond(200, "o", "Cache-Control", "max-age=2", "Etag", `"o1"`, "X-Version", "1")(w, r, n)
	}
	o.routes["/hop"] = respond(200, "hop", "Cache-Control", "max-age=60", "Connection", "X-Secret", "X-Secret", "s", "X-Kept", "k")
	tc := confCluster(t, o, func(c *Config) { c.Strict = true })

	fetchesAfter := func(t *testing.T, path string, want int) {
		t.Helper()
		if got := o.fetches(path); got != want {
			t.Fatalf("%s: %d origin fetches, want %d", path, got, want)
		}
	}

	t.Run("§4.2 fresh hit", func(t *testing.T) {
		tc.getWith(0, "/fresh")
		if r := tc.getWith(1, "/fresh"); !isHit(r) || r.body != "fresh" {
			t.Fatalf("second GET: %d %q %q", r.status, r.body, cacheStatus(r.header))
		}
		fetchesAfter(t, "/fresh", 1)
	})
	t.Run("§4.3.1 stale entry with validators revalidates conditionally; §4.3.4 304 updates headers", func(t *testing.T) {
		tc.getWith(0, "/reval")
		r := tc.getWith(0, "/reval")
		if got := o.lastHeader("/reval").Get("If-None-Match"); got != `"v1"` {
			t.Fatalf("revalidation If-None-Match %q, want \"v1\"", got)
		}
		if r.status != 200 || r.body != "body-v1" || r.header.Get("X-Version") != "2" {
			t.Fatalf("after 304: %d %q X-Version %q", r.status, r.body, r.header.Get("X-Version"))
		}
		if r := tc.getWith(2, "/reval"); !isHit(r) || r.header.Get("X-Version") != "2" {
			t.Fatalf("after 304 the updated entry is fresh: %q X-Version %q", cacheStatus(r.header), r.header.Get("X-Version"))
		}
		fetchesAfter(t, "/reval", 2)
	})
	t.Run("§4.2.2 heuristic freshness from Last-Modified", func(t *testing.T) {
		tc.getWith(0, "/heuristic")
		if r := tc.getWith(1, "/heuristic"); !isHit(r) {
			t.Fatalf("within 10%% of Last-Modified's age: %q", cacheStatus(r.header))
		}
		fetchesAfter(t, "/heuristic", 1)
	})
	t.Run("§5.3 invalid Expires is stale; §5.3 max-age=0 wins over Expires", func(t *testing.T) {
		for _, p := range []string{"/expires-invalid", "/max-age-0"} {
			tc.getWith(0, p)
			if r := tc.getWith(0, p); isHit(r) {
				t.Fatalf("%s: served from cache: %q", p, cacheStatus(r.header))
			}
			fetchesAfter(t, p, 2)
		}
	})
	t.Run("§5.2 quoted max-age accepted, single-quoted is stale", func(t *testing.T) {
		tc.getWith(0, "/quoted")
		tc.getWith(0, "/quoted")
		fetchesAfter(t, "/quoted", 1)
		tc.getWith(0, "/single-quoted")
		tc.getWith(0, "/single-quoted")
		fetchesAfter(t, "/single-quoted", 2)
	})
	t.Run("§5.1, §4.2.1 Age: an unreadable or repeated Age is stale, a valid one counts, a list's first member", func(t *testing.T) {
		for _, p := range []string{"/age-invalid", "/age-twolines", "/age-old"} { // Age 100 > max-age 60: stale on arrival
			tc.getWith(0, p)
			if r := tc.getWith(0, p); isHit(r) {
				t.Fatalf("%s: served from cache: %q Age %q", p, cacheStatus(r.header), r.header.Get("Age"))
			}
			fetchesAfter(t, p, 2)
		}
		tc.getWith(0, "/age-list")
		if r := tc.getWith(0, "/age-list"); !isHit(r) {
			t.Fatalf("Age \"0, 100\": %q", cacheStatus(r.header))
		}
		fetchesAfter(t, "/age-list", 1)
	})
	t.Run("§3 any status with explicit freshness is stored; 302 without is not", func(t *testing.T) {
		tc.getWith(0, "/500")
		if r := tc.getWith(1, "/500"); r.status != 500 || !isHit(r) {
			t.Fatalf("500 max-age=60: %d %q", r.status, cacheStatus(r.header))
		}
		fetchesAfter(t, "/500", 1)
		noRedirect := *tc.client
		noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		for range 2 {
			resp, err := noRedirect.Get(tc.url(0, "/302"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		fetchesAfter(t, "/302", 2)
	})
	t.Run("§5.2.1 request directives are honoured", func(t *testing.T) {
		tc.getWith(0, "/client")
		tc.getWith(0, "/client", "Cache-Control", "no-cache")
		fetchesAfter(t, "/client", 2)
		clock.Advance(time.Millisecond) // any time in the cache makes an age above 0
		tc.getWith(0, "/client", "Cache-Control", "max-age=0")
		fetchesAfter(t, "/client", 3)
		tc.getWith(0, "/client", "Pragma", "no-cache")
		fetchesAfter(t, "/client", 4)
		if r := tc.getWith(0, "/client", "Cache-Control", "min-fresh=5"); !isHit(r) {
			t.Fatalf("min-fresh=5 within max-age=60: %q", cacheStatus(r.header))
		}
		tc.getWith(0, "/client", "Cache-Control", "min-fresh=3600")
		fetchesAfter(t, "/client", 5)
		if r := tc.getWith(0, "/uncached", "Cache-Control", "only-if-cached"); r.status != http.StatusGatewayTimeout {
			t.Fatalf("only-if-cached miss: %d, want 504", r.status)
		}
		fetchesAfter(t, "/uncached", 0)
		if r := tc.getWith(0, "/client", "Cache-Control", "only-if-cached"); r.status != 200 || !isHit(r) {
			t.Fatalf("only-if-cached hit: %d %q", r.status, cacheStatus(r.header))
		}
	})
	t.Run("§5.2.1.5 a no-store request's refresh still stores for everyone", func(t *testing.T) {
		tc.getWith(0, "/nostore-refresh")
		clock.Advance(5 * time.Second)
		if r := tc.getWith(0, "/nostore-refresh", "Cache-Control", "no-store"); !isStale(r) {
			t.Fatalf("no-store within stale-while-revalidate: %q, want served stale", cacheStatus(r.header))
		}
		eventually(t, 5*time.Second, func() string {
			if r := tc.getWith(1, "/nostore-refresh"); !isHit(r) || isStale(r) {
				return "after the refresh: " + cacheStatus(r.header)
			}
			return ""
		})
		fetchesAfter(t, "/nostore-refresh", 2)
	})
	t.Run("§4.2.4 stale needs permission: none given, then max-stale, then stale-while-revalidate", func(t *testing.T) {
		tc.getWith(0, "/short")
		tc.getWith(0, "/swr")
		tc.getWith(0, "/smaxage")
		clock.Advance(5 * time.Second)
		if r := tc.getWith(0, "/short"); isHit(r) {
			t.Fatalf("expired, no permission, served from cache: %q", cacheStatus(r.header))
		}
		fetchesAfter(t, "/short", 2)
		clock.Advance(5 * time.Second)
		if r := tc.getWith(0, "/short", "Cache-Control", "max-stale=60"); !isStale(r) {
			t.Fatalf("max-stale=60: %q, want served stale", cacheStatus(r.header))
		}
		if r := tc.getWith(0, "/swr"); !isStale(r) {
			t.Fatalf("stale-while-revalidate=30: %q, want served stale", cacheStatus(r.header))
		}
		// §5.2.2.10: s-maxage implies proxy-revalidate.
		if r := tc.getWith(0, "/smaxage"); isHit(r) {
			t.Fatalf("s-maxage with stale-while-revalidate served from cache: %q", cacheStatus(r.header))
		}
	})
	t.Run("§4.1 Vary: normalised values, several Vary lines", func(t *testing.T) {
		tc.getWith(0, "/vary", "Accept-Language", "en,fr", "X-Device", "phone")
		if r := tc.getWith(1, "/vary", "Accept-Language", "en , fr", "X-Device", "phone"); !isHit(r) {
			t.Fatalf("equivalent Accept-Language: %q", cacheStatus(r.header))
		}
		if r := tc.getWith(1, "/vary", "Accept-Language", "en", "Accept-Language", "fr", "X-Device", "phone"); !isHit(r) {
			t.Fatalf("same list on two lines: %q", cacheStatus(r.header))
		}
		fetchesAfter(t, "/vary", 1)
		tc.getWith(0, "/vary", "Accept-Language", "en,fr", "X-Device", "desktop")
		fetchesAfter(t, "/vary", 2)
	})
	t.Run("RFC 9110 §13 conditional requests", func(t *testing.T) {
		tc.getWith(0, "/cond")
		if r := tc.getWith(0, "/cond", "If-None-Match", `"x", "c1"`); r.status != http.StatusNotModified {
			t.Fatalf("weak match in a list: %d, want 304", r.status)
		}
		if r := tc.getWith(0, "/cond", "If-None-Match", `"x"`, "If-Modified-Since", clock.Now().UTC().Format(http.TimeFormat)); r.status != 200 {
			t.Fatalf("If-None-Match takes precedence over If-Modified-Since: %d, want 200", r.status)
		}
		fetchesAfter(t, "/cond", 1)
	})
	t.Run("RFC 9213 targeted fields take precedence", func(t *testing.T) {
		tc.getWith(0, "/cdn")
		if r := tc.getWith(0, "/cdn"); !isHit(r) {
			t.Fatalf("CDN-Cache-Control max-age over Cache-Control no-store: %q", cacheStatus(r.header))
		}
		fetchesAfter(t, "/cdn", 1)
		tc.getWith(0, "/surrogate")
		tc.getWith(0, "/surrogate")
		fetchesAfter(t, "/surrogate", 2)
	})
	t.Run("Edge Architecture §2.1-2.2 Surrogate-Capability; Surrogate-Control targeted at crowdpilot", func(t *testing.T) {
		tc.getWith(0, "/surrogate-target", "Surrogate-Capability", `evil="ESI/1.0"`)
		if got := o.lastHeader("/surrogate-target").Values("Surrogate-Capability"); len(got) != 1 || got[0] != `crowdpilot="Surrogate/1.0"` {
			t.Fatalf("origin got Surrogate-Capability %q, want only crowdpilot's", got)
		}
		if r := tc.getWith(1, "/surrogate-target"); !isHit(r) {
			t.Fatalf("max-age=60;crowdpilot over Cache-Control no-store: %q", cacheStatus(r.header))
		}
		fetchesAfter(t, "/surrogate-target", 1)
	})
	t.Run("§3.2 a 304 keeps the stored content's Content-Encoding and Content-MD5; §4.3.4 another ETag updates nothing", func(t *testing.T) {
		tc.getWith(0, "/reval-integrity")
		tc.getWith(0, "/reval-other-etag")
		clock.Advance(3 * time.Second)
		r := tc.getWith(0, "/reval-integrity")
		if r.body != "br" || r.header.Get("Content-Encoding") != "br" || r.header.Get("Content-Md5") != "rL0Y20zC+Fzt72VPzMSk2A==" || r.header.Get("X-Version") != "2" {
			t.Fatalf("after 304: %q Content-Encoding %q Content-MD5 %q X-Version %q", r.body, r.header.Get("Content-Encoding"), r.header.Get("Content-Md5"), r.header.Get("X-Version"))
		}
		if r := tc.getWith(1, "/reval-integrity"); !isHit(r) {
			t.Fatalf("after 304 the entry is fresh: %q", cacheStatus(r.header))
		}
		fetchesAfter(t, "/reval-integrity", 2)
		r = tc.getWith(0, "/reval-other-etag")
		if r.body != "o" || r.header.Get("Etag") != `"o1"` || r.header.Get("X-Version") != "1" {
			t.Fatalf("after a 304 for another ETag: %q ETag %q X-Version %q, want the stored response unchanged", r.body, r.header.Get("Etag"), r.header.Get("X-Version"))
		}
		if r := tc.getWith(0, "/reval-other-etag"); isHit(r) {
			t.Fatalf("a 304 for another ETag freshened the entry: %q", cacheStatus(r.header))
		}
		fetchesAfter(t, "/reval-other-etag", 3)
	})
	t.Run("§3.1 Connection-listed fields are not stored or served", func(t *testing.T) {
		for i, r := range []confReply{tc.getWith(0, "/hop"), tc.getWith(0, "/hop")} {
			if r.header.Get("X-Secret") != "" || r.header.Get("X-Kept") != "k" {
				t.Fatalf("reply %d: X-Secret %q X-Kept %q", i, r.header.Get("X-Secret"), r.header.Get("X-Kept"))
			}
		}
	})
}

// TestConformanceDefaults: the default configuration differs from strict
// only in the documented deviations: operator grace serves stale without
// the response's permission, and clients' no-cache and max-age=0 do not
// reach the origin.
func TestConformanceDefaults(t *testing.T) {
	clock := newTestClock()
	o := newConfOrigin(clock)
	o.routes["/nofresh"] = respond(200, "n", "Etag", `"n1"`)
	o.routes["/short"] = respond(200, "s", "Cache-Control", "max-age=2")
	o.routes["/must"] = respond(200, "m", "Cache-Control", "max-age=2, must-revalidate")
	o.routes["/client"] = respond(200, "c", "Cache-Control", "max-age=60")
	tc := confCluster(t, o, nil)

	// No freshness from the origin: stored, but never fresh; the grace
	// (10s) serves it stale while it revalidates.
	tc.getWith(0, "/nofresh")
	if r := tc.getWith(0, "/nofresh"); !isStale(r) {
		t.Fatalf("no freshness, within grace: %q, want served stale", cacheStatus(r.header))
	}
	// Expired within the grace: stale; must-revalidate forbids it.
	tc.getWith(0, "/short")
	tc.getWith(0, "/must")
	clock.Advance(5 * time.Second)
	if r := tc.getWith(0, "/short"); !isStale(r) {
		t.Fatalf("expired within grace: %q, want served stale", cacheStatus(r.header))
	}
	if r := tc.getWith(0, "/must"); isHit(r) {
		t.Fatalf("must-revalidate served from cache: %q", cacheStatus(r.header))
	}
	// Origin protection: one client's reload does not reach the origin.
	tc.getWith(0, "/client")
	for _, kv := range [][]string{{"Cache-Control", "no-cache"}, {"Cache-Control", "max-age=0"}, {"Pragma", "no-cache"}} {
		if r := tc.getWith(1, "/client", kv...); !isHit(r) {
			t.Fatalf("%s: %s: %q, want a hit", kv[0], kv[1], cacheStatus(r.header))
		}
	}
	if got := o.fetches("/client"); got != 1 {
		t.Fatalf("/client: %d origin fetches, want 1", got)
	}
}

// TestZeroGraceMeansZero: --stale-while-revalidate 0 and --stale-if-error 0
// mean no grace: an expired entry is not served stale, nor when the origin
// fails.
func TestZeroGraceMeansZero(t *testing.T) {
	clock := newTestClock()
	o := newConfOrigin(clock)
	o.routes["/x"] = func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 1 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		respond(200, "x", "Cache-Control", "max-age=2")(w, r, n)
	}
	tc := newTestClusterOrigin(t, 1, o, func(c *Config) {
		c.Now = clock.Now
		c.DisableAutopilot = true
		c.PurgeMaxDisconnect = 24 * time.Hour
		c.StaleWhileRevalidate, c.StaleIfError = 0, 0
	})
	if r := tc.getWith(0, "/x"); r.status != 200 {
		t.Fatalf("first GET: %d", r.status)
	}
	clock.Advance(3 * time.Second)
	r := tc.getWith(0, "/x")
	if isHit(r) || r.status != http.StatusServiceUnavailable {
		t.Fatalf("expired with zero grace and the origin down: %d %q, want the origin's 503", r.status, cacheStatus(r.header))
	}
}
