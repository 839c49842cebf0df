package node

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/route"
)

// TestInternalHeadersNeverLeave (issue 10, finding 7): forwarded misses,
// owner fills and peer fills never show the origin an X-Crowdpilot-*
// header (so an echoing origin cannot put the hop proof in a cached body),
// a client's own X-Crowdpilot-* headers are not passed on, and an
// origin's X-Crowdpilot-* response headers never reach a client.
func TestInternalHeadersNeverLeave(t *testing.T) {
	tc, eo := newEchoCluster(t, 3, nil)
	for i := range 3 {
		// One path owned elsewhere (forwarded, then filled by the owner),
		// and a few more from every node.
		p, _ := tc.pathOwnedElsewhere(i, "/leak/"+string(rune('a'+i))+"/")
		for _, path := range []string{p, "/leak/x", "/leak/y?q=1"} {
			for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
				req, _ := http.NewRequest(method, tc.url(i, path), nil)
				req.Header.Set("X-Crowdpilot-Debug", "client")
				req.Header.Set("X-Crowdpilot-Purge-Rev", "0")
				status, body, h := tc.do(req)
				if status != http.StatusOK {
					t.Fatalf("%s %s on n%d: status %d", method, path, i, status)
				}
				for k := range h {
					if route.IsInternalHeader(k) {
						t.Errorf("%s %s on n%d: client got internal header %s: %q", method, path, i, k, h[k])
					}
				}
				if h.Get("Surrogate-Key") != "" {
					t.Errorf("%s %s on n%d: client got Surrogate-Key %q", method, path, i, h.Get("Surrogate-Key"))
				}
				if strings.Contains(strings.ToLower(body), "x-crowdpilot") {
					t.Errorf("%s %s on n%d: the origin echoed an internal header into the body:\n%s", method, path, i, body)
				}
			}
		}
	}
	seen := eo.requests()
	if len(seen) == 0 {
		t.Fatal("the origin saw no request")
	}
	for _, s := range seen {
		for k := range s.Header {
			if route.IsInternalHeader(k) {
				t.Errorf("origin got %s %s with internal header %s: %q", s.Method, s.Target, k, s.Header[k])
			}
		}
	}
}

// TestHopProofBoundToRequest (issue 10, finding 7): a hop proof is
// accepted only for the method and key it was made for and only within
// hopWindow, so a value captured from one request cannot make a node serve
// another from its own store (bypassing routing) or show purge tags.
func TestHopProofBoundToRequest(t *testing.T) {
	tc, _ := newEchoCluster(t, 3, nil)
	nd := tc.nodes[0]
	path, _ := tc.pathOwnedElsewhere(0, "/hop/")
	req, _ := http.NewRequest(http.MethodGet, tc.url(0, path), nil)
	key, err := nd.baseKey(req)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := http.NewRequest(http.MethodGet, tc.url(0, path+"-other"), nil)
	otherKey, _ := nd.baseKey(other)
	now := time.Now()

	send := func(proof string) (string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, tc.url(0, path), nil)
		req.Header.Set(route.HopHeader, proof)
		req.Header.Set("X-Crowdpilot-Purge-Rev", "0") // would ask for tags
		status, _, h := tc.do(req)
		if status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		return cacheStatus(h), h
	}
	for name, proof := range map[string]string{
		"for another key":     nd.hop.proof(http.MethodGet, otherKey, now),
		"for another method":  nd.hop.proof(http.MethodPost, key, now),
		"expired":             nd.hop.proof(http.MethodGet, key, now.Add(-time.Minute)),
		"from the future":     nd.hop.proof(http.MethodGet, key, now.Add(time.Minute)),
		"under another token": newHopProver("guess", nil, nil).proof(http.MethodGet, key, now),
		"truncated":           nd.hop.proof(http.MethodGet, key, now)[:40],
		"old static form":     "1",
	} {
		cs, h := send(proof)
		// Routed as any client's request is: forwarded, or answered by
		// this router's shared fetch from R(k) or its near copy.
		if !strings.Contains(cs, statusForwarded) && !strings.Contains(cs, "detail=peer") && !strings.Contains(cs, "detail=near") {
			t.Errorf("proof %s: served locally (Cache-Status %q), want routed to the owner like any client", name, cs)
		}
		if sk := h.Get("Surrogate-Key"); sk != "" {
			t.Errorf("proof %s: tags exposed: %q", name, sk)
		}
	}
	if got := counterValue(nd.hop.rejected); got != 7 {
		t.Errorf("crowdpilot_hop_rejected_total = %v, want 7", got)
	}
	// The real thing, made now for this very request: served here.
	cs, h := send(nd.hop.proof(http.MethodGet, key, time.Now()))
	if strings.Contains(cs, statusForwarded) {
		t.Errorf("a valid proof was not honoured: Cache-Status %q", cs)
	}
	if h.Get("Surrogate-Key") != "secret-tag" {
		t.Errorf("a peer fill did not get the tags: %q", h.Get("Surrogate-Key"))
	}
}

// TestHopProof is the pure check: round trip, binding, window, format.
func TestHopProof(t *testing.T) {
	p := newHopProver("secret", nil, nil)
	at := time.UnixMilli(1_800_000_000_000)
	v := p.proof("GET", "origin/a?b=1", at)
	if !p.verify("GET", "origin/a?b=1", v, at.Add(hopWindow)) {
		t.Fatalf("own proof %q rejected", v)
	}
	for name, ok := range map[string]bool{
		"late":     p.verify("GET", "origin/a?b=1", v, at.Add(hopWindow+time.Millisecond)),
		"early":    p.verify("GET", "origin/a?b=1", v, at.Add(-hopWindow-time.Millisecond)),
		"key":      p.verify("GET", "origin/a?b=2", v, at),
		"method":   p.verify("HEAD", "origin/a?b=1", v, at),
		"empty":    p.verify("GET", "origin/a?b=1", "", at),
		"mangled":  p.verify("GET", "origin/a?b=1", mangle(v), at),
		"negative": p.verify("GET", "k", "v2.-5."+p.mac("GET", "k", "-5"), time.UnixMilli(-5)),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

// mangle changes the last character of s.
func mangle(s string) string {
	if strings.HasSuffix(s, "0") {
		return s[:len(s)-1] + "1"
	}
	return s[:len(s)-1] + "0"
}
