package node

// Node-to-node TLS (Config.PeerCert): every node serves its peers on a
// listener of its own with mutual TLS, and dials its peers there. The data
// listener stays the public, plain HTTP service; with peer TLS on, it and
// the admin listener accept neither hop nor peer proofs, so a node's
// internal calls only ever travel between holders of a certificate the
// peer CA signed.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/cluster"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// peerTLS is the TLS of the peer listener and of dialling peers.
type peerTLS struct {
	server *tls.Config // this node's certificate; client certificates required, signed by the CA
	client *tls.Config // the CA; this node's certificate for the peer to check
}

// peerTLS loads the peer TLS files: nil without them, an error naming the
// setting when they do not make a working configuration.
func (c Config) peerTLS() (*peerTLS, error) {
	switch {
	case c.PeerCert == "" && c.PeerKey == "" && c.PeerCACert == "":
		return nil, nil
	case c.PeerCert != "" && c.PeerKey == "":
		return nil, errors.New("peer cert is set without its private key (peer key)")
	case c.PeerCert == "" && c.PeerKey != "":
		return nil, errors.New("peer key is set without its certificate (peer cert)")
	case c.PeerCert == "":
		return nil, errors.New("peer cacert is set without peer cert and peer key: node-to-node TLS needs all three")
	case c.PeerCACert == "":
		return nil, errors.New("peer cacert is required with peer cert: the CA that signs every node's peer certificate")
	}
	pemCA, err := os.ReadFile(c.PeerCACert)
	if err != nil {
		return nil, fmt.Errorf("peer cacert is unreadable: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, fmt.Errorf("peer cacert %s: no PEM certificate in it", c.PeerCACert)
	}
	for _, f := range []struct{ name, path string }{{"cert", c.PeerCert}, {"key", c.PeerKey}} {
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("peer %s is unreadable: %w", f.name, err)
		}
	}
	pair, err := tls.LoadX509KeyPair(c.PeerCert, c.PeerKey)
	if err != nil {
		return nil, fmt.Errorf("peer cert %s with peer key %s: %w", c.PeerCert, c.PeerKey, err)
	}
	leaf := pair.Leaf // parsed by LoadX509KeyPair
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("peer cert %s is not signed by peer cacert %s: %w", c.PeerCert, c.PeerCACert, err)
	}
	if u := leaf.ExtKeyUsage; len(u) > 0 && !slices.Contains(u, x509.ExtKeyUsageAny) &&
		(!slices.Contains(u, x509.ExtKeyUsageServerAuth) || !slices.Contains(u, x509.ExtKeyUsageClientAuth)) {
		return nil, fmt.Errorf("peer cert %s must allow both server and client authentication (extended key usage): each node is a peer's server and client", c.PeerCert)
	}
	return &peerTLS{
		server: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{pair},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		},
		client: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{pair},
			RootCAs:      pool,
		},
	}, nil
}

// clientConfig is the TLS to dial peers with; nil without peer TLS.
func (p *peerTLS) clientConfig() *tls.Config {
	if p == nil {
		return nil
	}
	return p.client
}

// peerConnKey marks the context of a request that came in on the peer
// listener (mutual TLS).
type peerConnKey struct{}

// fromPeerListener reports whether r came in on the peer listener.
func fromPeerListener(r *http.Request) bool {
	v, _ := r.Context().Value(peerConnKey{}).(bool)
	return v
}

// peerChannelOK reports whether a hop or peer proof on r may be honoured:
// always without peer TLS; with it, only on the peer listener.
func (n *Node) peerChannelOK(r *http.Request) bool {
	return n.ptls == nil || fromPeerListener(r)
}

// dataAddrOf is where this node sends m forwards, fills, peeks and peer
// invalidations: m's peer listener with peer TLS (empty when m has none:
// it does not run peer TLS), else its data listener.
func (n *Node) dataAddrOf(m cluster.Member) string {
	if n.ptls != nil {
		return m.Peer
	}
	return m.Addr
}

// callAddrOf is where this node makes node-to-node admin calls to m: its
// peer listener with peer TLS, else its admin listener.
func (n *Node) callAddrOf(m cluster.Member) string {
	if n.ptls != nil {
		return m.Peer
	}
	return m.Admin
}

// callURL is the URL of path on a peer at addr (from callAddrOf).
func (n *Node) callURL(addr, path string) string {
	if n.ptls != nil {
		return "https://" + addr + path
	}
	return "http://" + addr + path
}

// maxNoPeerTLSWarned bounds the members warnNoPeerTLS remembers.
const maxNoPeerTLSWarned = 1024

// warnNoPeerTLS logs once per member that it is not routed to: this node
// runs peer TLS and the member advertises no peer listener (every node of
// a cluster needs the same peer settings). Called from onMembers only.
func (n *Node) warnNoPeerTLS(id string) {
	if _, seen := n.noPeerTLS[id]; seen || len(n.noPeerTLS) >= maxNoPeerTLSWarned {
		return
	}
	if n.noPeerTLS == nil {
		n.noPeerTLS = make(map[string]struct{})
	}
	n.noPeerTLS[id] = struct{}{}
	n.cfg.Logger.Warn("member left out of routing: it has no peer listener, and this node talks to peers only over TLS (give every node --peer-cert, --peer-key and --peer-cacert)", "member", id)
}

// newPeerClient is the HTTP client of node-to-node admin calls.
func (n *Node) newPeerClient() *http.Client {
	c := &http.Client{Timeout: 2 * time.Second}
	if n.ptls != nil {
		c.Transport = &http.Transport{
			TLSClientConfig:     n.ptls.client,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     60 * time.Second,
		}
	}
	return c
}

// newPeerServer is the peer listener's server: requests carrying a hop go
// to the data handler, every other request (node-to-node admin calls) to
// admin. It speaks TLS through the listener Start wraps.
func (n *Node) newPeerServer(admin http.Handler) *http.Server {
	pos := func(d time.Duration) time.Duration { return max(d, 0) }
	data := n.withTenants(n)
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, hop := r.Header[route.HopHeader]; hop {
				data.ServeHTTP(w, r)
				return
			}
			admin.ServeHTTP(w, r)
		}),
		MaxHeaderBytes:    n.cfg.MaxHeaderBytes,
		ReadHeaderTimeout: pos(n.cfg.ReadHeaderTimeout),
		WriteTimeout:      pos(n.cfg.WriteTimeout),
		IdleTimeout:       pos(n.cfg.IdleTimeout),
		ErrorLog:          newStdLogger(n.cfg.Logger),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, peerConnKey{}, true)
		},
	}
}
