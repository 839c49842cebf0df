package load

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The generator's tests run in a synctest bubble over a pipeNet: the real
// client, server and sending loop on a fake clock, so every figure below is
// exact and none depends on how busy the machine is.

// arrivals records when requests reached a server, since start, on the
// bubble's clock.
type arrivals struct {
	start time.Time
	mu    sync.Mutex // guards at
	at    []time.Duration
}

func (a *arrivals) record() time.Duration {
	el := time.Since(a.start)
	a.mu.Lock()
	a.at = append(a.at, el)
	a.mu.Unlock()
	return el
}

func (a *arrivals) sorted() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(slices.Values(a.at))
}

// stallingHandler stalls every request that arrives in [from, to) for
// stall, and answers the others at once.
func stallingHandler(a *arrivals, from, to, stall time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if el := a.record(); el >= from && el < to {
			select {
			case <-time.After(stall):
			case <-r.Context().Done():
			}
		}
	})
}

// checkOpenLoop fails unless request n of sched reached the server exactly
// at sched.At(n), for every n. A closed-loop generator, which waits for
// answers before sending more, fails it as soon as the server stalls.
func checkOpenLoop(sched Schedule, got []time.Duration) error {
	for n := uint64(0); ; n++ {
		at, ok := sched.At(n)
		if !ok {
			if int(n) != len(got) {
				return fmt.Errorf("server saw %d requests, the schedule plans %d", len(got), n)
			}
			return nil
		}
		if int(n) >= len(got) {
			return fmt.Errorf("server saw %d requests, the schedule plans more (request %d due at %v)", len(got), n, at)
		}
		if got[n] != at {
			return fmt.Errorf("request %d arrived at %v, planned at %v", n, got[n], at)
		}
	}
}

// TestOpenLoopThroughStall is the open-loop proof: the server stalls every
// request that arrives in the second second of a 3 s run for 1 s, yet every
// request leaves exactly at its planned time, and the stall shows in the
// latencies of that second only.
func TestOpenLoopThroughStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pn := newPipeNet()
		a := &arrivals{start: time.Now()}
		url := pn.serve("origin:80", stallingHandler(a, time.Second, 2*time.Second, time.Second))
		sched := Schedule{Base: 200, Duration: 3 * time.Second}
		g, err := New(Config{Targets: []string{url}, Schedule: sched, Transport: pn.transport()})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := g.Run(context.Background())
		g.Close()
		pn.close(t)
		if err != nil {
			t.Fatal(err)
		}

		if err := checkOpenLoop(sched, a.sorted()); err != nil {
			t.Errorf("not open loop: %v", err)
		}
		tot := rep.Total
		if tot.Scheduled != 600 || tot.Sent != 600 || tot.OK != 600 || tot.NotSent != 0 || tot.Errors.Total() != 0 {
			t.Errorf("total = %+v; want 600 scheduled, sent and ok, no errors", tot.Counts)
		}
		if len(rep.Series) != 3 {
			t.Fatalf("series has %d seconds, want 3", len(rep.Series))
		}
		// Latency is measured from the planned send time: exactly the stall.
		if s := rep.Series[1]; s.Sent != 200 || s.Latency.P50Ms < 999 || s.Latency.MaxMs > 1001 {
			t.Errorf("second 1: %d sent, latency %+v; want 200 sent, all at 1 s", s.Sent, s.Latency)
		}
		for _, i := range []int{0, 2} {
			if s := rep.Series[i]; s.Sent != 200 || s.Latency.MaxMs >= 1 {
				t.Errorf("second %d: %d sent, max %vms; want 200 sent, none stalled", i, s.Sent, s.Latency.MaxMs)
			}
		}
		if g := rep.Generator; g.MaxLagMs >= 1 || g.Behind || g.NotSent != 0 {
			t.Errorf("generator %+v: want no lag and nothing unsent", g)
		}
	})
}

// TestCheckOpenLoopCatchesClosedLoop shows that the proof above has teeth:
// a closed-loop sender (one request at a time, each after the previous
// answer) against the same stalling server fails checkOpenLoop.
func TestCheckOpenLoopCatchesClosedLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pn := newPipeNet()
		a := &arrivals{start: time.Now()}
		url := pn.serve("origin:80", stallingHandler(a, time.Second, 2*time.Second, time.Second))
		client := &http.Client{Transport: pn.transport()}
		sched := Schedule{Base: 200, Duration: 3 * time.Second}
		for n := uint64(0); ; n++ {
			at, ok := sched.At(n)
			if !ok {
				break
			}
			time.Sleep(time.Until(a.start.Add(at)))
			resp, err := client.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		client.CloseIdleConnections()
		pn.close(t)
		if err := checkOpenLoop(sched, a.sorted()); err == nil {
			t.Error("checkOpenLoop accepted a closed-loop sender")
		}
	})
}

// TestNotSentAtMaxInflight checks that a request due while the in-flight
// cap is full is not sent, not delayed, and counted as the generator's own
// failure, apart from the cluster's errors. 100 requests are due 10 ms apart;
// the server takes 305 ms; with 5 in flight, requests go in bursts of 5 at
// 0, 310, 620 and 930 ms, and the other 80 are not sent.
func TestNotSentAtMaxInflight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pn := newPipeNet()
		a := &arrivals{start: time.Now()}
		url := pn.serve("origin:80", stallingHandler(a, 0, time.Hour, 305*time.Millisecond))
		g, err := New(Config{
			Targets:     []string{url},
			Schedule:    Schedule{Base: 100, Duration: time.Second},
			MaxInflight: 5,
			Transport:   pn.transport(),
		})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := g.Run(context.Background())
		g.Close()
		pn.close(t)
		if err != nil {
			t.Fatal(err)
		}
		tot := rep.Total
		if tot.Scheduled != 100 || tot.Sent != 20 || tot.NotSent != 80 || tot.OK != 20 || tot.Errors.Total() != 0 {
			t.Errorf("total = %+v; want 100 scheduled, 20 sent and ok, 80 not sent, no cluster errors", tot.Counts)
		}
		if tot.ClusterSuccess != 1 || tot.Success != 0.2 {
			t.Errorf("cluster success %v, end-to-end %v; want 1 and 0.2", tot.ClusterSuccess, tot.Success)
		}
		if g := rep.Generator; g.NotSent != 80 || g.MaxInflight != 5 {
			t.Errorf("generator %+v; want 80 not sent at max-inflight 5", g)
		}
		var want []time.Duration
		for _, burst := range []time.Duration{0, 310, 620, 930} {
			for i := range time.Duration(5) {
				want = append(want, (burst+10*i)*time.Millisecond)
			}
		}
		if got := a.sorted(); !slices.Equal(got, want) {
			t.Errorf("server saw requests at %v, want %v", got, want)
		}
		if tot.Latency.Count != tot.Sent {
			t.Errorf("%d latencies for %d sent requests; unsent ones have no latency", tot.Latency.Count, tot.Sent)
		}
		// The first burst dials its 5 connections; the later ones find
		// them idle. Each answer took 305ms, over SlowAnswer.
		var dialed, slowDialed int64
		for _, s := range rep.Series {
			dialed += s.NewConns
			slowDialed += s.SlowNewConns
		}
		if dialed != 5 || slowDialed != 5 {
			t.Errorf("%d answers over new connections (%d slow), want 5 (5): one per connection dialed", dialed, slowDialed)
		}
	})
}

// TestDrainCutsStragglers checks that the run ends a bounded time after the
// schedule, counting requests still out as timeouts.
func TestDrainCutsStragglers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pn := newPipeNet()
		a := &arrivals{start: time.Now()}
		url := pn.serve("origin:80", stallingHandler(a, 0, time.Hour, time.Hour))
		g, err := New(Config{
			Targets:   []string{url},
			Schedule:  Schedule{Base: 20, Duration: 500 * time.Millisecond},
			Timeout:   300 * time.Millisecond,
			Transport: pn.transport(),
		})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := g.Run(context.Background())
		took := time.Since(a.start)
		g.Close()
		pn.close(t)
		if err != nil {
			t.Fatal(err)
		}
		// The last request is due at 450 ms and times out 300 ms later.
		if took != 750*time.Millisecond {
			t.Errorf("run took %v, want 450 ms + the 300 ms timeout", took)
		}
		if e := rep.Total.Errors; e.Timeout != 10 || e.Total() != 10 {
			t.Errorf("errors = %+v, want 10 timeouts", e)
		}
		if l := rep.Total.Latency; l.Count != 10 || l.P50Ms < 299 || l.MaxMs > 301 {
			t.Errorf("latency = %+v, want 10 samples of the 300ms timeout", l)
		}
	})
}

// TestRunInterrupted checks that cancelling the context stops the sending
// and reports what was sent.
func TestRunInterrupted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pn := newPipeNet()
		a := &arrivals{start: time.Now()}
		url := pn.serve("origin:80", stallingHandler(a, 0, 0, 0))
		g, err := New(Config{Targets: []string{url}, Schedule: Schedule{Base: 100, Duration: time.Minute}, Transport: pn.transport()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 295*time.Millisecond)
		defer cancel()
		rep, err := g.Run(ctx)
		g.Close()
		pn.close(t)
		if err != nil {
			t.Fatal(err)
		}
		// Requests at 0, 10, ..., 290 ms.
		if !rep.Interrupted || len(rep.Series) != 1 || rep.Total.Scheduled != 30 || rep.Total.OK != 30 {
			t.Errorf("interrupted=%v, %d seconds, total %+v; want an interrupted one-second report of 30",
				rep.Interrupted, len(rep.Series), rep.Total.Counts)
		}
	})
}
