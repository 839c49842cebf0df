package node

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/demo"
	"github.com/crowdpilot/crowdpilot/internal/testpki"
)

// withPeerTLS gives every node a peer certificate of its own from ca and a
// peer listener on a free loopback port.
func withPeerTLS(t *testing.T, ca *testpki.CA, also func(*Config)) func(*Config) {
	return func(c *Config) {
		pair := ca.Server(t, c.ID)
		c.PeerCert, c.PeerKey, c.PeerCACert = pair.CertFile, pair.KeyFile, ca.CertFile
		c.PeerListen = "127.0.0.1:0"
		if also != nil {
			also(c)
		}
	}
}

// tlsClient is an https client trusting ca, presenting pair if it is set.
func tlsClient(t *testing.T, ca string, pair *testpki.Pair) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if pair != nil {
		c, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// TestPeerTLSForwardsAndCopies: with node-to-node TLS, members advertise
// peer listeners, routers forward to them (one origin fetch per object for
// requests entering at every node), and the leader's copy call and the
// copy itself go over mutual TLS.
func TestPeerTLSForwardsAndCopies(t *testing.T) {
	ca := testpki.NewCA(t, "peers")
	tc := newTestCluster(t, 3, demo.Config{Latency: time.Millisecond, MaxAge: time.Hour}, withPeerTLS(t, ca, nil))
	for _, nd := range tc.nodes {
		if nd.PeerAddr() == "" {
			t.Fatalf("%s has no peer listener", nd.ID())
		}
		for _, m := range nd.members.Members() {
			var want string
			for _, o := range tc.nodes {
				if o.ID() == m.ID {
					want = o.PeerAddr()
				}
			}
			if m.Peer != want {
				t.Errorf("%s sees %s's peer address %q, want %q", nd.ID(), m.ID, m.Peer, want)
			}
		}
		for _, p := range nd.router.Peers() {
			if !strings.HasPrefix(p.Addr, "127.0.0.1:") || p.Addr == tc.nodeByID(p.ID).DataAddr() {
				t.Errorf("%s routes to %s at %q, want its peer listener", nd.ID(), p.ID, p.Addr)
			}
		}
	}
	paths := []string{"/tls/a", "/tls/b", "/tls/c", "/tls/d", "/tls/e", "/tls/f"}
	servedBy := map[string]bool{}
	for _, p := range paths {
		for i := range 3 {
			s, _, h, err := tc.get(tc.url(i, p))
			if err != nil || s != http.StatusOK {
				t.Fatalf("GET %s via n%d: %d %v", p, i, s, err)
			}
			servedBy[h.Get("X-Served-By")] = true
		}
		if got := tc.origin.FetchesOf(p); got != 1 {
			t.Errorf("origin fetched %s %d times, want 1 (routers forward to the owner over TLS)", p, got)
		}
	}
	if v := counterSum(t, tc.nodes[0], "crowdpilot_hop_rejected_total") + counterSum(t, tc.nodes[1], "crowdpilot_hop_rejected_total") + counterSum(t, tc.nodes[2], "crowdpilot_hop_rejected_total"); v != 0 {
		t.Errorf("hop_rejected_total = %v, want 0", v)
	}

	// A copy: the leader's call to the new replica, and the replica's fill
	// from the owner, both on the peer listeners.
	const p = "/tls/copied"
	key := tc.key(p)
	owner, _ := tc.nodes[0].router.Owner(tc.hashOf(p))
	var to *Node
	for _, nd := range tc.nodes {
		if nd.ID() != owner.ID {
			to = nd
			break
		}
	}
	if s, _, _, err := tc.get(tc.url(0, p)); err != nil || s != http.StatusOK {
		t.Fatalf("warm %s: %d %v", p, s, err)
	}
	from := tc.nodes[0]
	if err := (copier{from}).Copy(t.Context(), to.ID(), key, ""); err != nil {
		t.Fatalf("copy to %s over peer TLS: %v", to.ID(), err)
	}
	if _, ok := to.store.Get(key, http.Header{}); !ok {
		t.Errorf("%s does not hold %s after the copy", to.ID(), key)
	}
	if got := tc.origin.FetchesOf(p); got != 1 {
		t.Errorf("origin fetched %s %d times, want 1 (the copy fills from the owner)", p, got)
	}
}

// nodeByID is the node with id.
func (tc *testCluster) nodeByID(id string) *Node {
	for _, nd := range tc.nodes {
		if nd.ID() == id {
			return nd
		}
	}
	tc.t.Fatalf("no node %s", id)
	return nil
}

// TestPeerTLSRefusesOutsiders: with node-to-node TLS, the peer listener
// refuses plaintext, clients without a certificate and certificates of
// another CA; and the plaintext listeners refuse what only peers send: a
// valid peer proof on the admin listener (401), a valid hop proof on the
// data listener (served as a client's request, counted).
func TestPeerTLSRefusesOutsiders(t *testing.T) {
	ca := testpki.NewCA(t, "peers")
	tc := newTestCluster(t, 2, demo.Config{Latency: time.Millisecond}, withPeerTLS(t, ca, nil))
	from, to := tc.nodes[0], tc.nodes[1]
	peerURL := "https://" + to.PeerAddr() + pathReplicate
	body := []byte(`{"key":"` + tc.key("/tls/outsider") + `"}`)

	// Plaintext to the peer listener.
	resp, err := tc.client.Post("http://"+to.PeerAddr()+pathReplicate, "application/json", bytes.NewReader(body))
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plaintext to the peer listener: %d, want 400 (an HTTP request to an HTTPS server)", resp.StatusCode)
		}
	}
	// TLS without a client certificate, and with another CA's.
	other := testpki.NewCA(t, "strangers")
	stranger := other.Server(t, "stranger")
	for name, c := range map[string]*http.Client{
		"no client certificate":    tlsClient(t, ca.CertFile, nil),
		"another CA's certificate": tlsClient(t, ca.CertFile, &stranger),
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, peerURL, bytes.NewReader(body))
		from.signPeerCall(req, to.ID(), body) // even with a valid proof
		if resp, err := c.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			t.Errorf("%s: %d, want the TLS handshake refused", name, resp.StatusCode)
		}
	}
	// The control: a peer's certificate and proof are served.
	peer := ca.Server(t, "peer")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, peerURL, bytes.NewReader(body))
	from.signPeerCall(req, to.ID(), body)
	resp, err = tlsClient(t, ca.CertFile, &peer).Do(req)
	if err != nil {
		t.Fatalf("a peer with a certificate: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a peer with a certificate and a proof: %d, want 200", resp.StatusCode)
	}

	// A valid peer proof on the plaintext admin listener.
	before := counter(t, to, "crowdpilot_peer_calls_rejected_total", nil)
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+to.AdminAddr()+pathReplicate, bytes.NewReader(body))
	from.signPeerCall(req, to.ID(), body)
	resp, err = tc.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("peer proof on the admin listener: %d, want 401", resp.StatusCode)
	}
	if got := counter(t, to, "crowdpilot_peer_calls_rejected_total", nil); got != before+1 {
		t.Errorf("peer_calls_rejected_total = %v, want %v", got, before+1)
	}

	// A valid hop proof on the plaintext data listener.
	const p = "/tls/hop"
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, tc.url(1, p), nil)
	req.URL.Host, req.Host = to.DataAddr(), to.DataAddr()
	hop := from.hop.proof(http.MethodGet, tc.key(p), from.hop.now())
	req.Header.Set("X-Crowdpilot-Hop", hop)
	before = counter(t, to, "crowdpilot_hop_rejected_total", nil)
	resp, err = tc.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET with a hop proof on the data listener: %d, want 200 (served as a client's)", resp.StatusCode)
	}
	if got := counter(t, to, "crowdpilot_hop_rejected_total", nil); got != before+1 {
		t.Errorf("hop_rejected_total = %v, want %v (a hop on the data listener is not honoured)", got, before+1)
	}
	if v := fmt.Sprint(resp.Header.Values("X-Crowdpilot-Hop")); v != "[]" {
		t.Errorf("internal header in the answer: %s", v)
	}
}
