package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
)

// TestPeerProof: a proof verifies for its own call to its own node, made
// within the window, under the same token, and for nothing else.
func TestPeerProof(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := newPeerProver("secret", func() time.Time { return now }, nil)
	body := []byte(`{"key":"k"}`)
	good := p.proof("POST", pathReplicate, "n1", body, now)
	if !p.verify("POST", pathReplicate, "n1", body, good, now) {
		t.Fatal("a proof does not verify for its own call")
	}
	other := newPeerProver("other", nil, nil)
	for _, tt := range []struct {
		name              string
		p                 peerProver
		method, uri, self string
		body              []byte
		value             string
		at                time.Time
	}{
		{"other method", p, "PUT", pathReplicate, "n1", body, good, now},
		{"other path", p, "POST", pathHeat, "n1", body, good, now},
		{"other node", p, "POST", pathReplicate, "n2", body, good, now},
		{"other body", p, "POST", pathReplicate, "n1", []byte(`{"key":"x"}`), good, now},
		{"expired", p, "POST", pathReplicate, "n1", body, good, now.Add(hopWindow + time.Second)},
		{"from the future", p, "POST", pathReplicate, "n1", body, good, now.Add(-hopWindow - time.Second)},
		{"other token", other, "POST", pathReplicate, "n1", body, good, now},
		{"no token", newPeerProver("", nil, nil), "POST", pathReplicate, "n1", body, good, now},
		{"garbage", p, "POST", pathReplicate, "n1", body, "p1.x.y", now},
		{"the hop proof's format", p, "POST", pathReplicate, "n1", body, "v2" + strings.TrimPrefix(good, "p1"), now},
	} {
		if tt.p.verify(tt.method, tt.uri, tt.self, tt.body, tt.value, tt.at) {
			t.Errorf("%s: verified", tt.name)
		}
	}
	if v := newPeerProver("", nil, nil).proof("POST", pathReplicate, "n1", body, now); v != "" {
		t.Errorf("proof without a token = %q", v)
	}
}

// capture is an HTTP server that keeps the last request's headers and
// body: a member address that is not a real node.
type capture struct {
	addr   string
	mu     sync.Mutex // guards header, body
	header http.Header
	body   []byte
}

func startCapture(t *testing.T) *capture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.header, c.body = r.Header.Clone(), b
		c.mu.Unlock()
		w.Write([]byte("{}"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

// TestPeerCallsNeverCarryTheToken: what a node sends another node's admin
// listener (a replica copy, a heat report, a tenant load) carries a peer
// proof and not the admin token, anywhere.
func TestPeerCallsNeverCarryTheToken(t *testing.T) {
	tc := newTestCluster(t, 1, demo.Config{}, func(c *Config) { c.AdminToken = "the-admin-token" })
	fake := startCapture(t)
	nd := tc.nodes[0]
	for _, path := range []string{pathReplicate, pathHeat, pathTenantLoad} {
		body := []byte(`{"key":"` + tc.key("/x") + `"}`)
		if err := nd.adminCall(t.Context(), http.MethodPost, "fake", fake.addr, path, body, nil); err != nil {
			t.Fatal(err)
		}
		fake.mu.Lock()
		h, b := fake.header, fake.body
		fake.mu.Unlock()
		if h.Get("Authorization") != "" {
			t.Errorf("%s: Authorization %q sent", path, h.Get("Authorization"))
		}
		if strings.Contains(fmt.Sprint(h), "the-admin-token") || bytes.Contains(b, []byte("the-admin-token")) {
			t.Errorf("%s: the token was sent: %v %q", path, h, b)
		}
		if !nd.ap.peer.verify(http.MethodPost, path, "fake", b, h.Get(peerProofHeader), time.Now()) {
			t.Errorf("%s: no valid peer proof for the receiver (%q)", path, h.Get(peerProofHeader))
		}
	}
}

// TestReplicateNeedsPeerProof: POST /internal/v1/replicate copies only for
// a valid proof for this call to this node, or the operator's token; any
// other proof is refused with 401 and counted.
func TestReplicateNeedsPeerProof(t *testing.T) {
	tc := newTestCluster(t, 2, demo.Config{}, nil)
	from, to := tc.nodes[0], tc.nodes[1]
	uri := pathReplicate
	body := []byte(`{"key":"` + tc.key("/peer-proof") + `"}`)
	other := newPeerProver("not the secret", nil, nil)
	now := time.Now()
	post := func(header http.Header, b []byte) int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+to.AdminAddr()+uri, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for k, vv := range header {
			req.Header[k] = vv
		}
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	proof := func(p peerProver, self string, b []byte, at time.Time) http.Header {
		return http.Header{peerProofHeader: {p.proof(http.MethodPost, uri, self, b, at)}}
	}
	good := proof(from.ap.peer, to.ID(), body, now)
	for _, tt := range []struct {
		name   string
		header http.Header
		body   []byte
	}{
		{"no proof", nil, body},
		{"proof for another node", proof(from.ap.peer, from.ID(), body, now), body},
		{"proof for another body", proof(from.ap.peer, to.ID(), []byte(`{"key":"other"}`), now), body},
		{"expired proof", proof(from.ap.peer, to.ID(), body, now.Add(-time.Minute)), body},
		{"proof under another secret", proof(other, to.ID(), body, now), body},
		{"two proofs", http.Header{peerProofHeader: {good.Get(peerProofHeader), good.Get(peerProofHeader)}}, body},
		{"the proof as a bearer token", http.Header{"Authorization": {"Bearer " + good.Get(peerProofHeader)}}, body},
	} {
		if code := post(tt.header, tt.body); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", tt.name, code)
		}
	}
	if v := counter(t, to, "crowdpilot_peer_calls_rejected_total", nil); v != 5 {
		t.Errorf("peer_calls_rejected_total = %v, want 5 (the bad proofs)", v)
	}
	if code := post(good, body); code != http.StatusOK {
		t.Errorf("valid peer proof: %d, want 200", code)
	}
	if code := post(http.Header{"Authorization": {"Bearer secret"}}, body); code != http.StatusOK {
		t.Errorf("operator's token: %d, want 200", code)
	}
	// The forwarded drain and proxied views go node to node with proofs.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+from.AdminAddr()+"/api/v1/drain", strings.NewReader(`{"node":"`+to.ID()+`"}`))
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := tc.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"draining"`) {
		t.Errorf("drain forwarded to %s: %d %s", to.ID(), resp.StatusCode, b)
	}
}
