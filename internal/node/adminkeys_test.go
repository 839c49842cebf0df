package node

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAdminViewsRedactQueryValues (issue 10, weak items): /api/v1/hot shows
// a hot key's query names but not its values to a caller without the
// token (tokens in URLs would leak there), and the full key with it.
func TestAdminViewsRedactQueryValues(t *testing.T) {
	tc, _ := newEchoCluster(t, 1, nil)
	nd := tc.nodes[0]
	hot := func(token string) string {
		req, _ := http.NewRequest(http.MethodGet, "http://"+nd.AdminAddr()+"/api/v1/hot", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.ReplaceAll(string(b), `\u0026`, "&") // JSON escapes '&'

	}
	var open string
	eventually(t, 15*time.Second, func() string {
		for range 50 {
			tc.get(tc.url(0, "/account?session=s3cret&page=1"))
		}
		if open = hot(""); !strings.Contains(open, "/account?") {
			return "key not hot yet: " + open
		}
		return ""
	})
	if strings.Contains(open, "s3cret") || !strings.Contains(open, "/account?page="+redactedValue+"&session="+redactedValue) {
		t.Errorf("without the token /api/v1/hot shows %s, want query values redacted", open)
	}
	if full := hot("secret"); !strings.Contains(full, "session=s3cret") {
		t.Errorf("with the token /api/v1/hot shows %s, want the full key", full)
	}
}
