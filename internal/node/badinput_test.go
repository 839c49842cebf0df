package node

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// rawRequest writes a raw request to node 0 and returns the status code.
func rawRequest(t *testing.T, addr, raw string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBadInput: each bad request gets a clear 4xx and changes nothing.
func TestBadInput(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, func(c *Config) {
		c.MaxHeaderBytes = 4096
		c.MaxBodyBytes = 1024
		c.AllowedHosts = []string{"x"} // the requests below are for Host x
	})
	addr := tc.nodes[0].DataAddr()
	before := tc.origin.Fetches()
	tests := []struct {
		name string
		raw  string
		want int
	}{
		{"bad percent-encoding", "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"control byte in target", "GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"absolute-form junk", "GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"header block too large", "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", 431},
		{"body too large", fmt.Sprintf("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 4096, strings.Repeat("b", 4096)), 413},
		{"chunked body too large", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + strings.Repeat("c", 4096) + "\r\n0\r\n\r\n", 413},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405},
		{"TRACE", "TRACE /a HTTP/1.1\r\nHost: x\r\n\r\n", 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := rawRequest(t, addr, tt.raw)
			if code != tt.want {
				t.Errorf("status %d (%q), want %d", code, body, tt.want)
			}
			if code == 400 && strings.TrimSpace(body) == "" {
				t.Errorf("400 without a message")
			}
		})
	}
	if got := tc.origin.Fetches(); got != before {
		t.Errorf("bad requests reached the origin: %d fetches", got-before)
	}
	if n := tc.nodes[0].store.Len(); n != 0 {
		t.Errorf("bad requests changed the store: %d entries", n)
	}
}

// TestHeadAndConditionalFromCache: HEAD and conditional GETs are answered
// from the cached full object without asking the origin.
func TestHeadAndConditionalFromCache(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, nil)
	url := tc.url(0, "/obj/7")
	s, _, h, err := tc.get(url)
	if err != nil || s != 200 {
		t.Fatal(s, err)
	}
	etag := h.Get("ETag")
	req, _ := http.NewRequest(http.MethodHead, url, nil)
	resp, err := tc.client.Do(req)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != 1024 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = tc.client.Do(req)
	if err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional GET: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Range", "bytes=0-9")
	resp, err = tc.client.Do(req)
	if err != nil || resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("range GET: %v %v", resp, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "/obj/7 ver" {
		t.Errorf("range body %q", b)
	}
	if got := tc.origin.Fetches(); got != 1 {
		t.Errorf("origin fetches = %d, want 1", got)
	}
}

// TestForgedHopHeaderIsIgnored: a client that sets the internal hop header
// is still routed to the owner, so it cannot make every node fetch from the
// origin.
func TestForgedHopHeaderIsIgnored(t *testing.T) {
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, nil)
	servedBy := map[string]bool{}
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodGet, tc.url(i, "/live/forged"), nil)
		req.Header.Set("X-Crowdpilot-Hop", "n0")
		req.Header.Set("X-Crowdpilot-Purge-Rev", "999999999")
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Surrogate-Key") != "" {
			t.Fatalf("via n%d: %d, Surrogate-Key %q", i, resp.StatusCode, resp.Header.Get("Surrogate-Key"))
		}
		servedBy[resp.Header.Get("X-Served-By")] = true
	}
	if len(servedBy) != 1 {
		t.Errorf("served by %v, want only the owner", servedBy)
	}
	if got := tc.origin.FetchesOf("/live/forged"); got != 1 {
		t.Errorf("origin fetches = %d, want 1", got)
	}
}
