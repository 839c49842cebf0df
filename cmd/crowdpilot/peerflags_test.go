package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crowdpilot/crowdpilot/internal/node"
	"github.com/crowdpilot/crowdpilot/internal/testpki"
)

// TestNodePeerFlagsBadCombinations: every bad combination of the
// node-to-node TLS flags is a one-line error naming the flag, exit code 2,
// before anything starts (no etcd is reachable here: a node that started
// would not fail this way).
func TestNodePeerFlagsBadCombinations(t *testing.T) {
	ca := testpki.NewCA(t, "peers")
	pair := ca.Server(t, "node")
	clientOnly := ca.Client(t, "client-only")
	stranger := testpki.NewCA(t, "strangers").Server(t, "stranger")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	notPEM := filepath.Join(dir, "not-pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--etcd", "http://127.0.0.1:1", "--origin", "http://127.0.0.1:9", "--admin-token", "t", "--log-level", "error"}
	all := func(extra ...string) []string {
		return append([]string{"--peer-cert", pair.CertFile, "--peer-key", pair.KeyFile, "--peer-cacert", ca.CertFile}, extra...)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"--peer-cert", pair.CertFile, "--peer-cacert", ca.CertFile}, "--peer-cert is set without its private key"},
		{"key without cert", []string{"--peer-key", pair.KeyFile, "--peer-cacert", ca.CertFile}, "--peer-key is set without its certificate"},
		{"CA alone", []string{"--peer-cacert", ca.CertFile}, "--peer-cacert is set without peer cert and peer key"},
		{"no CA", []string{"--peer-cert", pair.CertFile, "--peer-key", pair.KeyFile}, "--peer-cacert is required with peer cert"},
		{"unreadable CA", []string{"--peer-cert", pair.CertFile, "--peer-key", pair.KeyFile, "--peer-cacert", missing}, "--peer-cacert is unreadable"},
		{"CA not PEM", []string{"--peer-cert", pair.CertFile, "--peer-key", pair.KeyFile, "--peer-cacert", notPEM}, "--peer-cacert " + notPEM + ": no PEM certificate"},
		{"unreadable cert", []string{"--peer-cert", missing, "--peer-key", pair.KeyFile, "--peer-cacert", ca.CertFile}, "--peer-cert is unreadable"},
		{"key of another cert", []string{"--peer-cert", pair.CertFile, "--peer-key", stranger.KeyFile, "--peer-cacert", ca.CertFile}, "--peer-cert " + pair.CertFile + " with peer key"},
		{"cert of another CA", []string{"--peer-cert", stranger.CertFile, "--peer-key", stranger.KeyFile, "--peer-cacert", ca.CertFile}, "--peer-cert " + stranger.CertFile + " is not signed by peer cacert"},
		{"client-only cert", []string{"--peer-cert", clientOnly.CertFile, "--peer-key", clientOnly.KeyFile, "--peer-cacert", ca.CertFile}, "--peer-cert " + clientOnly.CertFile + " must allow both server and client authentication"},
		{"listen without TLS", []string{"--peer-listen", "127.0.0.1:7081"}, "--peer-listen is set without node-to-node TLS"},
		{"advertise without TLS", []string{"--advertise-peer", "cache-1:7080"}, "--advertise-peer is set without node-to-node TLS"},
		{"listen not host:port", all("--peer-listen", "not-an-address"), `--peer-listen "not-an-address" is not host:port`},
		{"advertise not host:port", all("--advertise-peer", "cache-1"), `--advertise-peer "cache-1" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			code := runNode(context.Background(), append(append([]string{}, tt.args...), base...), io.Discard, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.want) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line with %q", code, stderr.String(), tt.want)
			}
		})
	}
	// up runs every node on loopback in plaintext: the flags are not its.
	var stderr strings.Builder
	if code := runUp(context.Background(), all(), io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--peer-cert") {
		t.Errorf("up --peer-cert: exit %d, stderr %q", code, stderr.String())
	}
}

// TestNodePeerFlagsReachConfig: the flags, and their environment
// variables, reach the node's config.
func TestNodePeerFlagsReachConfig(t *testing.T) {
	parse := func(t *testing.T, args []string) node.Config {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		var nf nodeFlags
		nf.register(fs)
		var pf peerFlags
		pf.register(fs)
		if err := parseFlags(fs, args, io.Discard, "", ""); err != nil {
			t.Fatal(err)
		}
		c := nf.config(slog.New(slog.DiscardHandler))
		if err := pf.apply(fs, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := parse(t, []string{"--peer-cert", "c.pem", "--peer-key", "k.pem", "--peer-cacert", "ca.pem", "--peer-listen", "0.0.0.0:7443", "--advertise-peer", "cache-1:7443"})
	if c.PeerCert != "c.pem" || c.PeerKey != "k.pem" || c.PeerCACert != "ca.pem" || c.PeerListen != "0.0.0.0:7443" || c.AdvertisePeer != "cache-1:7443" {
		t.Errorf("config from flags: %q %q %q %q %q", c.PeerCert, c.PeerKey, c.PeerCACert, c.PeerListen, c.AdvertisePeer)
	}
	if c := parse(t, nil); c.PeerCert != "" || c.PeerListen != node.DefaultConfig().PeerListen {
		t.Errorf("defaults: cert %q listen %q", c.PeerCert, c.PeerListen)
	}
	t.Setenv("CROWDPILOT_PEER_CERT", "env.pem")
	if c := parse(t, nil); c.PeerCert != "env.pem" {
		t.Errorf("config from the environment: cert %q", c.PeerCert)
	}
}
