package node

import (
	"net/http"
	"slices"
	"testing"
)

// TestForwardWhatIsKeyed (issue 10, finding 6): the origin receives the
// target the cache keyed, from every node (owner fills after forwards
// included): dot segments, plain or percent-encoded, are removed before
// the origin sees them; "/a%2Fb" and "/a/b" stay two resources at the
// origin; repeated query parameters keep their order, in the key and
// upstream.
func TestForwardWhatIsKeyed(t *testing.T) {
	tc, eo := newEchoCluster(t, 3, nil)
	get := func(i int, target string) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, tc.url(i, "/"), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = target // sent exactly as written, no client-side cleaning
		status, body, _ := tc.do(req)
		if status != http.StatusOK {
			t.Fatalf("GET %s on n%d: %d %s", target, i, status, body)
		}
		return body
	}
	targets := func() []string {
		var out []string
		for _, s := range eo.requests() {
			out = append(out, s.Target)
		}
		return out
	}

	for i := range 3 {
		get(i, "/app/admin/../public")
		get(i, "/app/admin/%2e%2e/public")
		get(i, "/app/admin/%2E%2E/public")
		get(i, "/app/public")
	}
	if got := targets(); !slices.Equal(got, []string{"/app/public"}) {
		t.Errorf("origin targets for dot-segment forms = %q, want one fetch of /app/public", got)
	}

	before := len(eo.requests())
	for i := range 3 {
		get(i, "/a%2Fb")
		get(i, "/a/b")
	}
	got := targets()[before:]
	slices.Sort(got)
	if !slices.Equal(got, []string{"/a%2Fb", "/a/b"}) {
		t.Errorf("origin targets for /a%%2Fb and /a/b = %q, want each once, as sent", got)
	}

	before = len(eo.requests())
	var bodies []string
	for i := range 3 {
		bodies = append(bodies, get(i, "/q?a=2&a=1"), get(i, "/q?a=1&a=2"))
	}
	got = targets()[before:]
	slices.Sort(got)
	if !slices.Equal(got, []string{"/q?a=1&a=2", "/q?a=2&a=1"}) {
		t.Errorf("origin targets for reordered repeats = %q, want both orders, once each", got)
	}
	for i := 2; i < len(bodies); i += 2 {
		if bodies[i] != bodies[0] || bodies[i+1] != bodies[1] {
			t.Errorf("node %d answers the two orders differently from node 0", i/2)
		}
	}
	if bodies[0] == bodies[1] {
		t.Errorf("?a=2&a=1 and ?a=1&a=2 share one cached answer")
	}
}
