package node

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestLoadWindow(t *testing.T) {
	var inflight atomic.Int64
	m := newMetrics(prometheus.NewRegistry(), &inflight)
	w := m.window()
	if l := w.next(); l.p99 != 0 || l.errRate != 0 || l.cpu != 0 {
		t.Fatalf("empty first window: %+v", l)
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
	l := w.next()
	p99, er := l.p99, l.errRate
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
	l = w.next()
	if l.p99 < 3*time.Second || l.errRate != 0 {
		t.Errorf("second window: p99 %v error rate %v, want >= 3s and 0", l.p99, l.errRate)
	}
}

// TestLoadWindowCPU: a window over a busy spell reports the cores used
// (between 0 and the cores there are), one over an idle spell about none.
func TestLoadWindowCPU(t *testing.T) {
	var inflight atomic.Int64
	w := newMetrics(prometheus.NewRegistry(), &inflight).window()
	w.next()
	// Spin on this goroutine for a fixed amount of CPU time, not wall time,
	// so the result does not depend on what else the machine is doing.
	start := processCPU()
	x := 0
	for processCPU()-start < 50*time.Millisecond {
		for i := range 10000 {
			x += i
		}
	}
	_ = x
	busy := w.next()
	if busy.cpu <= 0 || busy.cpu > float64(runtime.NumCPU())+0.5 {
		t.Errorf("busy window: %.3f cores, want in (0, %d]", busy.cpu, runtime.NumCPU())
	}
}

// TestLoadWindowCPUSpansASecond: reports that come quickly measure CPU
// over the last second, not since the previous report, so a burst within
// a CFS period does not read as several times the quota.
func TestLoadWindowCPUSpansASecond(t *testing.T) {
	var w loadWindow
	t0 := time.Unix(1000, 0)
	const ms = time.Millisecond
	// 0.2 core on average: 20 ms of CPU every 100 ms, reported every 250 ms.
	for i := range 8 {
		w.cpuSince(time.Duration(i)*50*ms, t0.Add(time.Duration(i)*250*ms))
	}
	// A report 20 ms after the last, during a burst of 20 ms of CPU: since
	// the last report that is a whole core; over the last second, 0.22.
	got := w.cpuSince(7*50*ms+20*ms, t0.Add(7*250*ms+20*ms))
	if got < 0.15 || got > 0.3 {
		t.Errorf("cores over the last second = %.3f, want about 0.22 (not the burst's 1.0)", got)
	}
	if first := new(loadWindow).cpuSince(time.Second, t0); first != 0 {
		t.Errorf("first sample: %.3f cores, want 0", first)
	}
}
