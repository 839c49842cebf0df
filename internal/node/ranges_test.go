package node

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
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
