package cluster

import (
	"context"
	"log/slog"
	"net/url"
	"sync"
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
	e, err := StartEmbedded(ctx, EmbedConfig{Dir: dir, ClientAddr: clientAddr, PeerAddr: peerAddr, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

func newTestClient(t *testing.T, e *Embedded) *clientv3.Client {
	t.Helper()
	c, err := NewClient([]string{e.ClientURL()}, testLogger(t))
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

// runner runs fn(ctx) in a goroutine until stopped; cleanup stops it.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

func startRunner(t *testing.T, fn func(context.Context) error) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = fn(ctx)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the run and waits for it to return nil.
func (r *runner) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
			if r.err != nil {
				t.Errorf("Run returned %v", r.err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
