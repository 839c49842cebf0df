package node

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// clientTimeouts reads crowdpilot_client_timeouts_total{phase}.
func clientTimeouts(t *testing.T, nd *Node, phase string) float64 {
	t.Helper()
	return counter(t, nd, "crowdpilot_client_timeouts_total", map[string]string{"phase": phase})
}

// dialSlow opens a connection to addr and writes head, then nothing more.
func dialSlow(t *testing.T, addr, head string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSlowClientsAreCut (issue 10, finding 8): a client that trickles its
// header or its body is cut by the data server's timeouts and counted; a
// slow body gets 408, not an origin error; and however many slow bodies
// stream to the origin at once, the node holds at most
// OriginMaxConcurrency origin connections for them.
func TestSlowClientsAreCut(t *testing.T) {
	eo := &echoOrigin{}
	tc, _ := newEchoClusterWith(t, 1, eo, func(c *Config) {
		c.ReadHeaderTimeout = 300 * time.Millisecond
		c.ReadTimeout = 3 * time.Second
		c.OriginMaxConcurrency = 2
	})
	nd := tc.nodes[0]
	addr := nd.DataAddr()

	// Half a header: the connection is closed, not held.
	c := dialSlow(t, addr, "GET /slow HTTP/1.1\r\nHost: "+addr+"\r\nX-A: ")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1024)); err == nil || isTimeout(err) {
		t.Errorf("half a header: read %v, want the node to close the connection", err)
	}
	eventually(t, 5*time.Second, func() string {
		if v := clientTimeouts(t, nd, "header"); v < 1 {
			return fmt.Sprintf("header cut counted %v times", v)
		}
		return ""
	})

	// Six bodies that never finish, at once.
	const slow = 6
	conns := make([]net.Conn, slow)
	for i := range conns {
		conns[i] = dialSlow(t, addr, fmt.Sprintf("POST /upload/%d HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n0123456789", i, addr))
	}
	// Two stream to the origin; the others wait for a connection.
	eventually(t, 2*time.Second, func() string {
		if o, in := eo.busy.Load(), nd.inflight.Load(); o != 2 || in != slow {
			return fmt.Sprintf("%d busy origin connections and %d requests in flight, want 2 and %d", o, in, slow)
		}
		return ""
	})
	if m := eo.maxBusy.Load(); m > 2 {
		t.Errorf("the origin saw %d connections at once for slow bodies, want at most OriginMaxConcurrency = 2", m)
	}
	var wg sync.WaitGroup
	codes := make([]int, slow)
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				codes[i] = -1
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusRequestTimeout {
			t.Errorf("slow body %d: status %d, want 408", i, code)
		}
	}
	if v := clientTimeouts(t, nd, "body"); v < slow {
		t.Errorf("slow bodies cut: counted %v, want %d", v, slow)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestMalformedChunkedBodyIs400 (issue 10, weak items): a broken chunked
// request body is the client's error, not an origin failure.
func TestMalformedChunkedBodyIs400(t *testing.T) {
	tc, _ := newEchoCluster(t, 1, nil)
	addr := tc.nodes[0].DataAddr()
	status, body := rawRequest(t, addr, "POST /form HTTP/1.1\r\nHost: "+addr+"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n")
	if status != http.StatusBadRequest {
		t.Errorf("malformed chunked body: %d %q, want 400", status, body)
	}
}
