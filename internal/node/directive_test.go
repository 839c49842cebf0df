package node

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestNoStoreRequestDoesNotBreakCollapsing (issue 10, finding 4): a
// request with Cache-Control: no-store leading a flight does not stop the
// shared fetch from being stored, so the 49 clients waiting on it cost the
// origin nothing more.
func TestNoStoreRequestDoesNotBreakCollapsing(t *testing.T) {
	for _, directive := range []string{"no-store", "no-cache"} {
		t.Run(directive, func(t *testing.T) {
			eo := &echoOrigin{gate: make(chan struct{})}
			tc, _ := newEchoClusterWith(t, 1, eo, nil)
			nd := tc.nodes[0]
			const path = "/gated/page"
			var wg sync.WaitGroup
			statuses := make([]int, 50)
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, tc.url(0, path), nil)
				req.Header.Set("Cache-Control", directive)
				req.Header.Set("Pragma", "no-cache")
				statuses[0], _, _ = tc.do(req)
			})
			eventually(t, 5*time.Second, func() string {
				if n := eo.fetches(path); n != 1 {
					return fmt.Sprintf("origin saw %d requests, want the leader's", n)
				}
				return ""
			})
			for i := 1; i < 50; i++ {
				wg.Go(func() { statuses[i], _, _, _ = tc.get(tc.url(0, path)) })
			}
			eventually(t, 5*time.Second, func() string {
				if n := nd.inflight.Load(); n != 50 {
					return fmt.Sprintf("%d requests in flight, want all 50 waiting", n)
				}
				return ""
			})
			close(eo.gate)
			wg.Wait()
			for i, s := range statuses {
				if s != http.StatusOK {
					t.Errorf("request %d: status %d", i, s)
				}
			}
			if n := eo.fetches(path); n > 2 {
				t.Errorf("origin fetches = %d, want at most 2 (the leader's own and one shared)", n)
			}
		})
	}
}
