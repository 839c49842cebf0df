package cluster

import (
	"context"
	"log/slog"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startEtcd starts an embedded server in dir and closes it at cleanup.
func startEtcd(t *testing.T, dir, clientAddr, peerAddr string) *Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbedConfig{Dir: dir, ClientAddr: clientAddr, PeerAddr: peerAddr, NoFsync: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

func newTestClient(t *testing.T, e *Embedded) *clientv3.Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Endpoints: []string{e.ClientURL()}}, testLogger(t))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse %q: %v", rawURL, err)
	}
	return u.Host
}
