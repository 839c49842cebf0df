package cluster

import (
	"context"
	"testing"
)

func TestStartEmbeddedRequiresDir(t *testing.T) {
	if _, err := StartEmbedded(t.Context(), EmbedConfig{}); err == nil {
		t.Fatal("StartEmbedded without Dir succeeded")
	}
}

func TestStartEmbeddedCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if e, err := StartEmbedded(ctx, EmbedConfig{Dir: t.TempDir()}); err == nil {
		e.Close()
		t.Fatal("StartEmbedded with a cancelled ctx succeeded")
	}
}

func TestEmbeddedServesAndClosesTwice(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, t.TempDir(), "", "")
	c := newTestClient(t, e)
	if _, err := c.Put(t.Context(), Prefix("t")+"k", "v"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	e.Close()
	e.Close()
}
