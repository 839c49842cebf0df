package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextGrowsJitteredAndCapped(t *testing.T) {
	b := Backoff{Base: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for i, want := range []time.Duration{10, 20, 40, 80, 80, 80} {
		want *= time.Millisecond
		if d := b.Next(); d < want/2 || d > want {
			t.Errorf("attempt %d: %v, want within [%v, %v]", i, d, want/2, want)
		}
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Errorf("after Reset: %v, want at most the base", d)
	}
	var zero Backoff
	if d := zero.Next(); d < 50*time.Millisecond || d > 100*time.Millisecond {
		t.Errorf("zero value first wait %v, want the 100ms default, jittered", d)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep reported a full wait on a cancelled context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep did not report a full wait")
	}
}
