package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is a loopback server that counts the connections it
// accepted.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// get sends a GET through c and returns the status, the body and whether
// the connection was one kept alive.
func get(t *testing.T, c *http.Client, url string) (int, string, bool) {
	t.Helper()
	var reused bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp.StatusCode, string(b), reused
}

func TestConnTransportKeepsAConnectionAlive(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", "n0")
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	})
	tr := newConnTransport(5*time.Second, 10)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for i := range 20 {
		status, body, reused := get(t, c, fmt.Sprintf("%s/obj/%d", srv.URL, i))
		if status != 200 || body != fmt.Sprintf("hello /obj/%d", i) {
			t.Fatalf("request %d: %d %q", i, status, body)
		}
		if reused != (i > 0) {
			t.Errorf("request %d: reused %v", i, reused)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 requests one after another took %d connections, want 1", n)
	}
}

func TestConnTransportReadsChunkedAnswersAndKeepsTheConnection(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush() // no Content-Length: chunked
		}
	})
	tr := newConnTransport(5*time.Second, 10)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for range 3 {
		if _, body, _ := get(t, c, srv.URL); body != "part0;part1;part2;" {
			t.Fatalf("body %q", body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("3 chunked answers took %d connections, want 1", n)
	}
}

func TestConnTransportDialsAgainAfterAClosingAnswer(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	tr := newConnTransport(5*time.Second, 10)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for i := range 3 {
		if _, body, reused := get(t, c, srv.URL); body != "bye" || reused {
			t.Fatalf("request %d: %q, reused %v", i, body, reused)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("3 closing answers took %d connections, want 3", n)
	}
}

// A kept-alive connection the server closed while it was idle is not a
// failure of the next request: it goes again on a new connection.
func TestConnTransportRetriesOnANewConnectionWhenTheIdleOneWasClosed(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newConnTransport(5*time.Second, 10)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	get(t, c, srv.URL)
	srv.CloseClientConnections()
	if status, body, _ := get(t, c, srv.URL); status != 200 || body != "ok" {
		t.Fatalf("after the server closed the idle connection: %d %q", status, body)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("connections %d, want 2", n)
	}
}

// A body closed before its end closes its connection: the next request
// must not read the rest of the last answer.
func TestConnTransportClosesAConnectionWhoseBodyWasNotRead(t *testing.T) {
	big := strings.Repeat("x", 256<<10)
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "small")
	})
	tr := newConnTransport(5*time.Second, 10)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	resp, err := c.Get(srv.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, b); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, body, reused := get(t, c, srv.URL+"/small"); body != "small" || reused {
		t.Fatalf("after a body closed early: %q, reused %v", body, reused)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("connections %d, want 2", n)
	}
}

func TestConnTransportEndsARequestWithItsContext(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	})
	tr := newConnTransport(5*time.Second, 10)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	get(t, c, srv.URL) // a kept-alive connection: the retry must not hide the cancel

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow", nil)
	_, err := c.Do(req)
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("request past its deadline: %v, want a timeout", err)
	}
	once.Do(func() { close(release) })
	if status, body, _ := get(t, c, srv.URL); status != 200 || body != "ok" {
		t.Fatalf("after the cut requests: %d %q", status, body)
	}
}
