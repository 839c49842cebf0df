package node

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/crowdpilot/crowdpilot/internal/httpcache"
)

// echoOrigin behaves like a common web framework behind a proxy, the way
// an attacker hopes: it reflects the request headers into the body, honours
// method-override and forwarded-host headers, and does not normalise paths
// (it answers for the raw target it received). Every response is public
// for a minute, so whatever it is tricked into saying gets cached.
type echoOrigin struct {
	// gate, when set, holds every request for a path under /gated/ until
	// it is closed.
	gate chan struct{}

	// busy counts the origin's connections carrying a request (from its
	// first byte until the connection is idle or closed): now, at most. A
	// connection dialled ahead and not yet used is not busy.
	busy, maxBusy     atomic.Int64
	states            sync.Map     // net.Conn -> http.ConnState, for busy
	active, maxActive atomic.Int64 // requests being answered: now, at most

	mu   sync.Mutex // guards seen
	seen []seenRequest
}

// seenRequest is one request as the origin received it.
type seenRequest struct {
	Method, Target, Host string
	Header               http.Header
}

func (o *echoOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.seen = append(o.seen, seenRequest{r.Method, r.RequestURI, r.Host, r.Header.Clone()})
	o.mu.Unlock()
	raise(&o.maxActive, o.active.Add(1))
	defer o.active.Add(-1)
	if o.gate != nil && strings.HasPrefix(r.URL.Path, "/gated/") {
		<-o.gate
	}
	method := r.Method
	for _, k := range []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"} {
		if v := r.Header.Get(k); v != "" {
			method = v
		}
	}
	host := r.Host
	if v := r.Header.Get("X-Forwarded-Host"); v != "" {
		host = v
	}
	h := w.Header()
	switch r.URL.Query().Get("cc") {
	case "none": // a personal page, as frameworks send it: no Cache-Control
	case "":
		h.Set("Cache-Control", "public, max-age=60")
	default:
		h.Set("Cache-Control", r.URL.Query().Get("cc"))
	}
	h.Set("Surrogate-Key", "secret-tag")
	// Headers an origin (or a compromised one) might send that look like
	// the cluster's own: clients must never see them.
	h.Set("X-Crowdpilot-Hop", "from-origin")
	h.Set("X-Crowdpilot-Debug", "origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// "Created, see there": what the write changed (RFC 9111 §4.4).
		if v := r.URL.Query().Get("location"); v != "" {
			h.Set("Location", v)
		}
		if v := r.URL.Query().Get("content-location"); v != "" {
			h.Set("Content-Location", v)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "method=%s target=%s link=http://%s/next\n", method, r.RequestURI, host)
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(r.Header[k], ", "))
	}
	if pad, err := strconv.Atoi(r.URL.Query().Get("pad")); err == nil && pad > 0 {
		b.WriteString(strings.Repeat("x", min(pad, 1<<20)))
	}
	w.Write([]byte(b.String()))
}

// connState counts the origin's busy connections.
func (o *echoOrigin) connState(c net.Conn, s http.ConnState) {
	prev, _ := o.states.Swap(c, s)
	if s == http.StateClosed || s == http.StateHijacked {
		o.states.Delete(c)
	}
	switch {
	case s == http.StateActive:
		raise(&o.maxBusy, o.busy.Add(1))
	case prev == http.StateActive:
		o.busy.Add(-1)
	}
}

// raise sets m to n if n is larger.
func raise(m *atomic.Int64, n int64) {
	for v := m.Load(); n > v && !m.CompareAndSwap(v, n); v = m.Load() {
	}
}

// requests returns what the origin has received so far.
func (o *echoOrigin) requests() []seenRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]seenRequest(nil), o.seen...)
}

// fetches counts the origin requests whose target is target.
func (o *echoOrigin) fetches(target string) int {
	n := 0
	for _, s := range o.requests() {
		if s.Target == target {
			n++
		}
	}
	return n
}

// gets counts the GETs the origin received for target.
func (o *echoOrigin) gets(target string) int {
	n := 0
	for _, s := range o.requests() {
		if s.Target == target && s.Method == http.MethodGet {
			n++
		}
	}
	return n
}

// newEchoCluster is newTestCluster in front of an echoOrigin.
func newEchoCluster(t testing.TB, n int, tweak func(*Config)) (*testCluster, *echoOrigin) {
	t.Helper()
	return newEchoClusterWith(t, n, &echoOrigin{}, tweak)
}

// newEchoClusterWith is newEchoCluster with the given origin.
func newEchoClusterWith(t testing.TB, n int, eo *echoOrigin, tweak func(*Config)) (*testCluster, *echoOrigin) {
	t.Helper()
	return newTestClusterOrigin(t, n, eo, tweak), eo
}

// do sends req and returns status, body and headers.
func (tc *testCluster) do(req *http.Request) (int, string, http.Header) {
	tc.t.Helper()
	resp, err := tc.client.Do(req)
	if err != nil {
		tc.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tc.t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// pathOwnedElsewhere returns a path of the form prefix+i whose owner is
// not node i0, and that owner's index.
func (tc *testCluster) pathOwnedElsewhere(i0 int, prefix string) (string, int) {
	tc.t.Helper()
	for i := range 1000 {
		p := fmt.Sprintf("%s%d", prefix, i)
		req, _ := http.NewRequest(http.MethodGet, tc.url(i0, p), nil)
		base, err := tc.nodes[i0].baseKey(req)
		if err != nil {
			tc.t.Fatal(err)
		}
		owner, ok := tc.nodes[i0].router.Owner(httpcache.KeyHash(base))
		if ok && owner.ID != tc.nodes[i0].ID() {
			for j, nd := range tc.nodes {
				if nd.ID() == owner.ID {
					return p, j
				}
			}
		}
	}
	tc.t.Fatal("no path owned by another node")
	return "", 0
}
