package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// within reports whether got is within frac of want.
func within(got, want int64, frac float64) bool {
	d := float64(got - want)
	return d <= frac*float64(want) && -d <= frac*float64(want)
}

// TestOpenLoopThroughStall is the open-loop proof: the server stalls every
// request that arrives in the second second of a 3 s run for 1 s, yet
// requests keep arriving at the planned 200/s, and the stall shows in the
// latencies.
func TestOpenLoopThroughStall(t *testing.T) {
	t.Parallel()
	var (
		start    atomic.Int64    // unix nanoseconds when the run began
		arrivals [4]atomic.Int64 // by second of arrival
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		el := time.Since(time.Unix(0, start.Load()))
		if i := int(el / time.Second); i >= 0 && i < len(arrivals) {
			arrivals[i].Add(1)
		}
		if el >= time.Second && el < 2*time.Second {
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()

	g, err := New(Config{Targets: []string{srv.URL}, Schedule: Schedule{Base: 200, Duration: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	start.Store(time.Now().UnixNano())
	rep, err := g.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	tot := rep.Total
	if tot.Scheduled != 600 || tot.Sent != 600 || tot.OK != 600 || tot.Errors.Total() != 0 {
		t.Errorf("total = %+v; want 600 scheduled, sent and ok, no errors", tot.Counts)
	}
	var got int64
	for i := range arrivals {
		got += arrivals[i].Load()
	}
	if !within(got, 600, 0.05) {
		t.Errorf("server saw %d requests, want 600 ± 5%%", got)
	}
	// During the stall, a closed-loop generator would stop sending. (The
	// bound is looser per second: a scheduling hiccup moves requests across
	// the edge of a second without changing the total.)
	for i := 1; i <= 2; i++ {
		if n := arrivals[i].Load(); !within(n, 200, 0.1) {
			t.Errorf("server saw %d requests in second %d, want 200 ± 10%%", n, i)
		}
	}
	if p99 := tot.Latency.P99Ms; p99 < 900 {
		t.Errorf("whole-run p99 = %vms, want ≥ 900ms: the stall is missing", p99)
	}
	if len(rep.Series) != 3 {
		t.Fatalf("series has %d seconds, want 3", len(rep.Series))
	}
	if s := rep.Series[1]; s.Latency.P50Ms < 900 || s.Sent != 200 {
		t.Errorf("second 1: %d sent, p50 %vms; want 200 sent and p50 ≥ 900ms", s.Sent, s.Latency.P50Ms)
	}
	if s := rep.Series[0]; s.Latency.P99Ms >= 900 {
		t.Errorf("second 0 p99 = %vms; the stall leaked into it", s.Latency.P99Ms)
	}
}

// TestShedAtMaxInflight checks that a request due while the in-flight cap is
// full is counted as shed, not delayed and not dropped silently.
func TestShedAtMaxInflight(t *testing.T) {
	t.Parallel()
	var arrived atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		time.Sleep(300 * time.Millisecond)
	}))
	defer srv.Close()

	g, err := New(Config{
		Targets:     []string{srv.URL},
		Schedule:    Schedule{Base: 100, Duration: time.Second},
		MaxInflight: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	rep, err := g.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tot := rep.Total
	if tot.Scheduled != 100 || tot.Sent+tot.Errors.Shed != 100 {
		t.Errorf("scheduled %d, sent %d + shed %d; want 100 = sent + shed", tot.Scheduled, tot.Sent, tot.Errors.Shed)
	}
	if tot.Errors.Shed < 50 || tot.Errors.Shed != tot.Errors.Total() {
		t.Errorf("errors = %+v; want ≥ 50 shed and nothing else", tot.Errors)
	}
	if n := arrived.Load(); n != tot.Sent {
		t.Errorf("server saw %d requests, report says %d sent", n, tot.Sent)
	}
	if tot.Latency.Count != tot.Sent {
		t.Errorf("%d latencies for %d sent requests; shed ones have no latency", tot.Latency.Count, tot.Sent)
	}
}

// TestDrainCutsStragglers checks that the run ends a bounded time after the
// schedule, counting requests still out as timeouts.
func TestDrainCutsStragglers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()

	g, err := New(Config{
		Targets:  []string{srv.URL},
		Schedule: Schedule{Base: 20, Duration: 500 * time.Millisecond},
		Timeout:  300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	began := time.Now()
	rep, err := g.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("run took %v, want about 0.5 s + 0.3 s drain", took)
	}
	if e := rep.Total.Errors; e.Timeout != 10 || e.Total() != 10 {
		t.Errorf("errors = %+v, want 10 timeouts", e)
	}
	if l := rep.Total.Latency; l.Count != 10 || l.P50Ms < 300 {
		t.Errorf("latency = %+v, want 10 samples of at least the 300ms timeout", l)
	}
}

// TestRunInterrupted checks that cancelling the context stops the sending
// and reports what was sent.
func TestRunInterrupted(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	g, err := New(Config{Targets: []string{srv.URL}, Schedule: Schedule{Base: 100, Duration: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rep, err := g.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || len(rep.Series) != 1 || rep.Total.Scheduled < 10 || rep.Total.Scheduled > 60 {
		t.Errorf("interrupted=%v, %d seconds, %d scheduled; want an interrupted one-second report of ~30",
			rep.Interrupted, len(rep.Series), rep.Total.Scheduled)
	}
}
