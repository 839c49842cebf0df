package fill

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rawOrigin is an origin written byte by byte: on its first connection it
// answers the first request with what first says, then reads the second
// request, answers it with what second says (nothing: it hangs) and closes;
// every later connection answers each request properly.
type rawOrigin struct {
	ln            net.Listener
	first, second string
	wg            sync.WaitGroup
	mu            sync.Mutex // guards conns
	conns         int
}

const okResponse = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok"

func newRawOrigin(t *testing.T, first, second string) *rawOrigin {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{ln: ln, first: first, second: second}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			o.conns++
			n := o.conns
			o.mu.Unlock()
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				o.serve(c, n == 1)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); o.wg.Wait() })
	return o
}

func (o *rawOrigin) serve(c net.Conn, scripted bool) {
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; ; i++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		answer := okResponse
		if scripted && i == 0 {
			answer = o.first
		} else if scripted && i == 1 {
			answer = o.second
		}
		if answer == "" { // hang until the client gives up
			io.Copy(io.Discard, br)
			return
		}
		if _, err := io.WriteString(c, answer); err != nil || scripted && i == 1 {
			return // the scripted connection ends after its second answer
		}
	}
}

func (o *rawOrigin) connections() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.conns
}

// TestRetryOnReusedConnection: an origin's response that carries more bytes
// than its Content-Length (or a connection it breaks) fails only the fetch
// that next reuses the connection, never a different one each run. The
// scripted origin holds its excess bytes until the next request arrives, so
// the reused connection always reads them as the next response's status
// line (a live origin races the transport's idle check).
func TestRetryOnReusedConnection(t *testing.T) {
	long := "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello"
	for _, tc := range []struct {
		name          string
		first, second string
		bare          bool // the transport without the retry
		timeout       time.Duration
		wantErr       bool
		wantRetried   float64
		wantConns     int
		wantNextBody  string
		wantFirstBody string
	}{
		{name: "excess bytes after Content-Length are not the next response", first: long, second: "-and-more\r\n\r\n" + okResponse,
			wantRetried: 1, wantConns: 2, wantFirstBody: "hello", wantNextBody: "ok"},
		{name: "without the retry the next fetch fails", first: long, second: "-and-more\r\n\r\n" + okResponse, bare: true,
			wantErr: true, wantConns: 1, wantFirstBody: "hello"},
		{name: "a reused connection closed before the response", first: long, second: "HTTP/1.1 2",
			wantRetried: 1, wantConns: 2, wantFirstBody: "hello", wantNextBody: "ok"},
		{name: "a timeout on a reused connection is not retried", first: long, second: "", timeout: 200 * time.Millisecond,
			wantErr: true, wantConns: 1, wantFirstBody: "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newRawOrigin(t, tc.first, tc.second)
			reg := prometheus.NewRegistry()
			g, _ := newGroup(t, "http://"+o.ln.Addr().String(), func(c *Config) {
				c.Registerer = reg
				c.NoSpareConn = true // the origin scripts its answers by connection
				if tc.timeout > 0 {
					c.Timeout = tc.timeout
				}
			})
			if tc.bare {
				wrapped := g.rt
				g.rt = wrapped.(reusedRetry).rt
				t.Cleanup(func() { g.rt = wrapped }) // before g.Close
			}
			r, base := get("/long")
			res, err := g.Fetch(context.Background(), r, base, nil, nil)
			if err != nil || string(res.Entry.Body) != tc.wantFirstBody {
				t.Fatalf("first fetch: %v %q", err, bodyOf(res))
			}
			r, base = get("/next")
			res, err = g.Fetch(context.Background(), r, base, nil, nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("next fetch: err %v, want error %v", err, tc.wantErr)
			}
			if err == nil && string(res.Entry.Body) != tc.wantNextBody {
				t.Fatalf("next fetch body %q, want %q", bodyOf(res), tc.wantNextBody)
			}
			if got := fetchesCounted(t, reg, "retried"); got != tc.wantRetried {
				t.Fatalf("retried %v, want %v", got, tc.wantRetried)
			}
			if got := o.connections(); got != tc.wantConns {
				t.Fatalf("origin connections %d, want %d", got, tc.wantConns)
			}
		})
	}
}

// fetchesCounted reads crowdpilot_origin_fetches_total{result}.
func fetchesCounted(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "crowdpilot_origin_fetches_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func bodyOf(res Result) string {
	if res.Entry == nil {
		return ""
	}
	return string(res.Entry.Body)
}
