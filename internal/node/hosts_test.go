package node

import (
	"net/http"
	"strings"
	"testing"
)

// TestNoHostPoisoning (issue 10, finding 1): a request for a Host the
// cluster does not serve gets 421 and never reaches the origin; the
// headers frameworks build links, schemes, paths and methods from are not
// passed to the origin, so a reflecting origin cannot be made to store a
// page for everyone that points at the attacker; X-Forwarded-For on fills
// is the real client's address, also after a forward.
func TestNoHostPoisoning(t *testing.T) {
	tc, eo := newEchoCluster(t, 3, nil)
	path, _ := tc.pathOwnedElsewhere(0, "/home/")

	// Another Host, as a header or in an absolute-form target: 421.
	req, _ := http.NewRequest(http.MethodGet, tc.url(0, path), nil)
	req.Host = "evil.example"
	if status, body, _ := tc.do(req); status != http.StatusMisdirectedRequest || !strings.Contains(body, "evil.example") {
		t.Errorf("Host evil.example: %d %q, want 421 naming the host", status, body)
	}
	if status, _ := rawRequest(t, tc.nodes[0].DataAddr(), "GET http://evil.example"+path+" HTTP/1.1\r\nHost: "+tc.nodes[0].DataAddr()+"\r\n\r\n"); status != http.StatusMisdirectedRequest {
		t.Errorf("absolute-form target for evil.example: %d, want 421", status)
	}
	req, _ = http.NewRequest(http.MethodPost, tc.url(0, path), nil)
	req.Host = "evil.example"
	if status, _, _ := tc.do(req); status != http.StatusMisdirectedRequest {
		t.Errorf("POST for Host evil.example: %d, want 421", status)
	}
	if n := len(eo.requests()); n != 0 {
		t.Fatalf("the origin saw %d requests for a Host not served", n)
	}

	// Served Hosts: the node's address and the origin's.
	req, _ = http.NewRequest(http.MethodGet, tc.url(0, path), nil)
	for k, v := range map[string]string{
		"X-Forwarded-Host":       "evil.example",
		"X-Forwarded-Proto":      "gopher",
		"X-Forwarded-Port":       "666",
		"X-Forwarded-Scheme":     "gopher",
		"X-Forwarded-Server":     "evil.example",
		"X-Host":                 "evil.example",
		"Forwarded":              "host=evil.example;proto=gopher",
		"X-Original-Url":         "/admin",
		"X-Rewrite-Url":          "/admin",
		"X-Http-Method-Override": "DELETE",
		"X-Http-Method":          "DELETE",
		"X-Method-Override":      "DELETE",
		"X-Forwarded-For":        "6.6.6.6",
		"X-Real-Ip":              "6.6.6.6",
	} {
		req.Header.Set(k, v)
	}
	status, poisoned, _ := tc.do(req)
	if status != 200 {
		t.Fatalf("GET with override headers: %d", status)
	}
	for _, bad := range []string{"evil", "gopher", "admin", "DELETE", "666", "6.6.6.6"} {
		if strings.Contains(poisoned, bad) {
			t.Errorf("the origin acted on a client's override header (%q) in what was stored:\n%s", bad, poisoned)
		}
	}
	if !strings.Contains(poisoned, "X-Forwarded-For: 127.0.0.1\n") {
		t.Errorf("X-Forwarded-For on the owner's fill is not the client's address:\n%s", poisoned)
	}
	for i := range 3 {
		_, body, _, _ := tc.get(tc.url(i, path))
		if body != poisoned {
			t.Errorf("n%d serves another body for %s", i, path)
		}
	}
	req, _ = http.NewRequest(http.MethodGet, tc.url(1, "/home/by-origin-host"), nil)
	req.Host = tc.oaddr
	if status, _, _ := tc.do(req); status != 200 {
		t.Errorf("Host of the origin: %d, want 200", status)
	}
}

// TestAllowedHosts: with --allowed-hosts only those are served.
func TestAllowedHosts(t *testing.T) {
	tc, _ := newEchoCluster(t, 1, func(c *Config) { c.AllowedHosts = []string{"www.example.com", "Example.com:80"} })
	for host, want := range map[string]int{
		"www.example.com":      200,
		"WWW.example.com:80":   200,
		"example.com":          200,
		"evil.example":         421,
		tc.nodes[0].DataAddr(): 421,
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.url(0, "/a"), nil)
		req.Host = host
		if status, _, _ := tc.do(req); status != want {
			t.Errorf("Host %q: %d, want %d", host, status, want)
		}
	}
	if _, err := New(Config{ID: "x", Etcd: []string{"http://127.0.0.1:1"}, Origin: "http://127.0.0.1:1", AllowedHosts: []string{"a/b"}}); err == nil || !strings.Contains(err.Error(), "allowed hosts") {
		t.Errorf("AllowedHosts a/b: err %v, want one naming allowed hosts", err)
	}
}
