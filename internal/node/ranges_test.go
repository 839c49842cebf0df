package node

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRangeAmplificationBounded (issue 10, finding 9): a Range header with
// many ranges is answered with the whole object (200), not a multipart
// response of thousands of parts; overlapping and adjacent ranges are
// coalesced into one part; a few distinct ranges are still multipart.
func TestRangeAmplificationBounded(t *testing.T) {
	tc, _ := newEchoCluster(t, 3, nil)
	const path = "/big?pad=100000"
	_, full, _, err := tc.get(tc.url(0, path))
	if err != nil || len(full) < 100000 {
		t.Fatalf("warm-up: %d bytes, %v", len(full), err)
	}
	get := func(rng string) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, tc.url(1, path), nil)
		req.Header.Set("Range", rng)
		return tc.do(req)
	}

	var many []string
	for i := range 3000 {
		many = append(many, fmt.Sprintf("%d-%d", i*30, i*30))
	}
	status, body, _ := get("bytes=" + strings.Join(many, ","))
	if status != http.StatusOK || body != full {
		t.Errorf("3000 ranges: status %d, %d bytes; want 200 with the whole object (%d bytes)", status, len(body), len(full))
	}

	status, body, h := get("bytes=0-9,5-14,15-19,-5")
	if want := fmt.Sprintf("bytes 0-19/%d", len(full)); status != http.StatusPartialContent {
		t.Errorf("overlapping ranges: status %d", status)
	} else if strings.HasPrefix(h.Get("Content-Type"), "multipart/") {
		// -5 is far from 0-19: two parts are right; check the first.
		if !strings.Contains(body, "Content-Range: "+want) {
			t.Errorf("overlapping ranges not coalesced: want a part %q in\n%.400s", want, body)
		}
	} else {
		t.Errorf("overlapping ranges with a suffix range: a single part %q, want two", h.Get("Content-Range"))
	}

	status, body, h = get("bytes=0-9,5-14,10-19")
	if want := fmt.Sprintf("bytes 0-19/%d", len(full)); status != http.StatusPartialContent || h.Get("Content-Range") != want || body != full[:20] {
		t.Errorf("overlapping ranges: %d Content-Range %q, want one part %q", status, h.Get("Content-Range"), want)
	}

	status, _, h = get("bytes=0-0,1000-1000,5000-5000")
	if status != http.StatusPartialContent || !strings.HasPrefix(h.Get("Content-Type"), "multipart/byteranges") {
		t.Errorf("three distinct ranges: %d %q, want a multipart 206", status, h.Get("Content-Type"))
	}
}

// TestLargeObjectsUnderOriginLimit (issue 10, finding 9): a crowd for an
// object over MaxObjectBytes streams it through, but under the origin
// limit: the origin never works on more than OriginMaxConcurrency
// requests at once, and the rest fail fast with 503 and Retry-After.
func TestLargeObjectsUnderOriginLimit(t *testing.T) {
	eo := &echoOrigin{gate: make(chan struct{})}
	tc, _ := newEchoClusterWith(t, 1, eo, func(c *Config) {
		c.MaxObjectBytes = 64 << 10
		c.OriginMaxConcurrency = 2
	})
	nd := tc.nodes[0]
	const path = "/gated/big?pad=200000"
	const crowd = 12
	replies := make([]reply, crowd)
	var wg sync.WaitGroup
	for i := range crowd {
		wg.Go(func() {
			s, b, h, err := tc.get(tc.url(0, path))
			replies[i] = reply{s, b, h, err}
		})
	}
	eventually(t, 5*time.Second, func() string {
		if n := nd.inflight.Load(); n != crowd {
			return fmt.Sprintf("%d requests in flight, want %d", n, crowd)
		}
		return ""
	})
	close(eo.gate)
	wg.Wait()
	ok := 0
	for i, r := range replies {
		switch {
		case r.err != nil:
			t.Errorf("reply %d: %v", i, r.err)
		case r.status == http.StatusOK && len(r.body) > 200000:
			ok++
		case r.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") != "":
		default:
			t.Errorf("reply %d: status %d, %d bytes", i, r.status, len(r.body))
		}
	}
	if ok == 0 {
		t.Error("no client got the large object")
	}
	if m := eo.maxActive.Load(); m > 2 {
		t.Errorf("the origin worked on %d requests at once, want at most OriginMaxConcurrency = 2", m)
	}
}
