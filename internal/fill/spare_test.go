package fill

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// connOrigin is an origin on loopback that counts the connections it
// accepted and those that closed.
type connOrigin struct {
	srv            *http.Server
	url            string
	opened, closed atomic.Int64
}

func newConnOrigin(t *testing.T, headerTimeout time.Duration) *connOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &connOrigin{url: "http://" + ln.Addr().String()}
	o.srv = &http.Server{
		ReadHeaderTimeout: headerTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Write([]byte("body"))
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				o.opened.Add(1)
			case http.StateClosed, http.StateHijacked:
				o.closed.Add(1)
			}
		},
	}
	go o.srv.Serve(ln)
	t.Cleanup(func() { o.srv.Close() })
	return o
}

func spares(g *Group, result string) float64 {
	return testutil.ToFloat64(g.m.spares.WithLabelValues(result))
}

// The group dials a connection to the origin before any fetch needs one;
// the first fetch takes it, and the next spare is dialled behind it.
func TestSpareOriginConnectionIsDialledAheadAndTaken(t *testing.T) {
	o := newConnOrigin(t, time.Minute)
	g, _ := newGroup(t, o.url, func(c *Config) { c.Registerer = prometheus.NewRegistry(); c.Timeout = 5 * time.Second })
	testwait.Eventually(t, 10*time.Second, "a spare dialled with no fetch", func() bool { return o.opened.Load() == 1 })
	r, base := get("/a")
	res, err := g.Fetch(context.Background(), r, base, nil, nil)
	if err != nil || res.Entry == nil || res.Entry.Status != http.StatusOK {
		t.Fatalf("fetch: %+v, %v", res, err)
	}
	if got := spares(g, "used"); got != 1 {
		t.Errorf("spares used %v, want 1", got)
	}
	testwait.Eventually(t, 10*time.Second, "the next spare dialled", func() bool { return o.opened.Load() == 2 })
	g.Close()
	testwait.Eventually(t, 10*time.Second, "both connections closed with the group", func() bool { return o.closed.Load() == 2 })
}

// A spare the origin has closed (here after its header timeout) is not
// sent on: the fetch dials anew and succeeds.
func TestSpareClosedByTheOriginIsNotUsed(t *testing.T) {
	o := newConnOrigin(t, 50*time.Millisecond)
	g, _ := newGroup(t, o.url, func(c *Config) { c.Registerer = prometheus.NewRegistry(); c.Timeout = 5 * time.Second })
	testwait.Eventually(t, 10*time.Second, "the origin closes the idle spare", func() bool { return o.closed.Load() >= 1 })
	r, base := get("/a")
	res, err := g.Fetch(context.Background(), r, base, nil, nil)
	if err != nil || res.Entry == nil || res.Entry.Status != http.StatusOK {
		t.Fatalf("fetch after the spare closed: %+v, %v", res, err)
	}
	if used, stale := spares(g, "used"), spares(g, "stale"); used != 0 || stale != 1 {
		t.Errorf("spares used %v, stale %v; want 0 and 1", used, stale)
	}
}

func TestStillOpenTellsAClosedPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); accepted <- c }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer := <-accepted
	if !stillOpen(c) {
		t.Fatal("an open, silent connection reads as closed")
	}
	peer.Close()
	testwait.Eventually(t, 10*time.Second, "the peer's close seen", func() bool { return !stillOpen(c) })
	// Peeking read nothing away: the end of the stream is still there.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("read after the peek: %d, %v; want 0 and EOF", n, err)
	}
}
