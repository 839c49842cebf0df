package node

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// TestAdminJSONErrors: every admin endpoint answers errors as JSON
// {"error": ...}: unknown paths 404, wrong methods 405 with Allow, a
// missing token 401; and JSON keeps <, > and & as they are.
func TestAdminJSONErrors(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, nil)
	base := "http://" + tc.nodes[0].AdminAddr()
	for _, tt := range []struct {
		method, path, token string
		code                int
		allow               string // want this Allow header
		inError             string // want this in the error message
	}{
		{"GET", "/nope", "", 404, "", "no admin endpoint GET /nope"},
		{"GET", "/api/v1/nope", "", 404, "", "no admin endpoint GET /api/v1/nope"},
		{"GET", "/a%3Cb%3E&c", "", 404, "", "/a<b>&c"},
		{"POST", "/api/v1/hot", "", 405, "GET, HEAD", "method POST not allowed on /api/v1/hot"},
		{"DELETE", "/api/v1/cluster", "", 405, "GET, HEAD", "method DELETE not allowed"},
		{"PUT", "/healthz", "", 405, "GET, HEAD", "not allowed"},
		{"GET", "/internal/v1/heat", "", 405, "POST", "not allowed"},
		{"GET", "/api/v1/purge", "secret", 405, "POST", "use POST"},
		{"POST", "/api/v1/purge", "", 401, "", "bearer token"},
		{"POST", "/api/v1/purge", "secret", 400, "", ""},
		{"GET", "/debug/pprof/profile?seconds=1", "", 401, "", "bearer token"},
		{"GET", "/debug/pprof/trace?seconds=1", "", 401, "", "bearer token"},
	} {
		req, err := http.NewRequest(tt.method, base+tt.path, strings.NewReader("{"))
		if err != nil {
			t.Fatal(err)
		}
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct {
			Error string `json:"error"`
		}
		name := tt.method + " " + tt.path
		if resp.StatusCode != tt.code || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s, want %d JSON", name, resp.StatusCode, resp.Header.Get("Content-Type"), tt.code)
		}
		if err := json.Unmarshal(raw, &body); err != nil || body.Error == "" || !strings.Contains(body.Error, tt.inError) {
			t.Errorf("%s: body %q (%v); want {\"error\": ...%q...}", name, raw, err, tt.inError)
		}
		if tt.allow != "" && resp.Header.Get("Allow") != tt.allow {
			t.Errorf("%s: Allow %q, want %q", name, resp.Header.Get("Allow"), tt.allow)
		}
		if strings.Contains(string(raw), `\u003c`) || strings.Contains(string(raw), `\u0026`) {
			t.Errorf("%s: HTML-escaped JSON: %s", name, raw)
		}
	}
	// A route still answers as before.
	if s, b, h, err := tc.get(base + "/api/v1/cluster"); err != nil || s != 200 || !strings.Contains(b, `"members"`) || h.Get("Content-Type") != "application/json" {
		t.Errorf("GET /api/v1/cluster: %d %q %v", s, b, err)
	}
}
