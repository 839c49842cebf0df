package node

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestLoadWindow(t *testing.T) {
	var inflight atomic.Int64
	m := newMetrics(prometheus.NewRegistry(), &inflight)
	w := m.window()
	if p99, er := w.next(); p99 != 0 || er != 0 {
		t.Fatalf("empty window: p99 %v error rate %v", p99, er)
	}
	// 990 fast hits and 10 slow sheds: p99 is in the fast bucket range,
	// error rate 1%.
	for range 990 {
		m.observe(resHit, 300*time.Microsecond)
	}
	for range 10 {
		m.observe(resShed, 2*time.Second)
	}
	m.observe(resBad, 300*time.Microsecond) // the client's fault: not an error
	p99, er := w.next()
	if p99 < 300*time.Microsecond || p99 > 800*time.Microsecond {
		t.Errorf("p99 = %v, want the bucket holding 300µs", p99)
	}
	if er < 0.0099 || er > 0.0101 {
		t.Errorf("error rate = %v, want 0.01", er)
	}
	// The next window only sees what came after.
	for range 100 {
		m.observe(resHit, 3*time.Second)
	}
	p99, er = w.next()
	if p99 < 3*time.Second || er != 0 {
		t.Errorf("second window: p99 %v error rate %v, want >= 3s and 0", p99, er)
	}
}
