package node

import (
	"bufio"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// framingCases are connections' worth of request bytes and the request
// after which each must be closed (0: none).
var framingCases = []struct {
	name string
	raw  string
	bad  int64
}{
	{"one GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0},
	{"pipelined GETs", "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", 0},
	{"bare LF headers", "GET /a HTTP/1.1\nHost: x\n\nGET /b HTTP/1.1\nHost: x\n\n", 0},
	{"length body then GET", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n", 0},
	{"chunked body then GET", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", 0},
	{"leading blank lines", "\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", 0},
	{"HTTP/1.0 with a length", "POST /a HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi", 0},
	{"a body that looks like a request", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 75\r\n\r\n" +
		"GET /s HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + "GET /b HTTP/1.1\r\n\r\n", 0},
	{"chunk data that looks like a request", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2D\r\n" +
		"GET /s HTTP/1.1\r\nContent-Length: 3\r\nTE: x\r\n\r\n\r\n0\r\n\r\n", 0},

	{"length and chunked", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1},
	{"chunked and length", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 1},
	{"lower case", "GET /a HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 1},
	{"a clean request, then a smuggler", "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 2},
	{"after a chunked body", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n0\r\n\r\n", 2},
	{"HTTP/1.0 with Transfer-Encoding", "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1},
	{"a long target", "POST /" + strings.Repeat("a", 300) + " HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1},
	{"a long target, HTTP/1.0", "POST /" + strings.Repeat("a", 300) + " HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 1},
	{"a padded length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:" + strings.Repeat(" ", 100) + "4\r\n\r\nabcd", 1},
	{"a bad length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\nabcd", 1},
	{"two lengths", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 1},
	{"bare LF in chunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n", 1},
	{"no CRLF after chunk data", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy0\r\n\r\n", 1},
}

// TestFramingScanner: the scanner finds the first request with ambiguous
// framing however the bytes arrive, and is not fooled by bodies.
func TestFramingScanner(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range framingCases {
		t.Run(tt.name, func(t *testing.T) {
			for split := range 20 {
				var f framing
				b := []byte(tt.raw)
				for len(b) > 0 {
					k := len(b)
					switch {
					case split == 1:
						k = 1
					case split > 1:
						k = 1 + rng.IntN(len(b))
					}
					f.Feed(b[:k])
					b = b[k:]
				}
				if got := f.Bad(); got != tt.bad {
					t.Fatalf("split %d: close after request %d, want %d", split, got, tt.bad)
				}
			}
		})
	}
}

// TestConflictingFramingClosesTheConnection (issue 10, weak items; RFC
// 9112 §6.1): a request with both Content-Length and Transfer-Encoding (or
// Transfer-Encoding on HTTP/1.0) is answered with Connection: close and
// the connection is closed, so a request smuggled after it is never read;
// a clean chunked request keeps its connection.
func TestConflictingFramingClosesTheConnection(t *testing.T) {
	tc, eo := newEchoCluster(t, 1, nil)
	addr := tc.nodes[0].DataAddr()
	tests := []struct {
		name string
		// steps are written one at a time, each after the responses to
		// the one before.
		steps  []string
		want   []int  // responses per step
		close  int    // 1-based response carrying Connection: close; 0 none
		closed bool   // the server closes the connection after them
		never  string // a target the origin must not receive
	}{
		{"length and chunked, then a smuggled request",
			[]string{"POST /form HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"},
			[]int{1}, 1, true, "/smuggled"},
		{"a GET with both",
			[]string{"GET /both HTTP/1.1\r\nHost: " + addr + "\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /smuggled2 HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"},
			[]int{1}, 1, true, "/smuggled2"},
		{"HTTP/1.0 with Transfer-Encoding",
			[]string{"POST /form10 HTTP/1.0\r\nHost: " + addr + "\r\nConnection: keep-alive\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello"},
			[]int{1}, 1, true, ""},
		{"a clean request, then a conflicting one",
			[]string{"GET /first HTTP/1.1\r\nHost: " + addr + "\r\n\r\n",
				"POST /second HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled3 HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"},
			[]int{1, 1}, 2, true, "/smuggled3"},
		{"clean chunked requests keep the connection",
			[]string{"POST /c1 HTTP/1.1\r\nHost: " + addr + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /c2 HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"},
			[]int{2}, 0, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			var resps []*http.Response
			for i, step := range tt.steps {
				if _, err := io.WriteString(c, step); err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				for range tt.want[i] {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("step %d, after %d responses: %v", i+1, len(resps), err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					resps = append(resps, resp)
				}
			}
			for i, resp := range resps {
				if want := i+1 == tt.close; resp.Close != want {
					t.Errorf("response %d (%d): Connection: close = %v, want %v", i+1, resp.StatusCode, resp.Close, want)
				}
			}
			if closed := serverCloses(t, c, br); closed != tt.closed {
				t.Errorf("connection closed = %v, want %v", closed, tt.closed)
			}
			if tt.never != "" && eo.fetches(tt.never) != 0 {
				t.Errorf("the smuggled request %s reached the origin", tt.never)
			}
		})
	}
}

// TestConflictingFramingPipelined: pipelined behind a clean request, a
// request with both lengths closes the connection after the first response
// the server writes once it has read it (the clean request's, if the
// server read both at once), and the request smuggled behind it is never
// served.
func TestConflictingFramingPipelined(t *testing.T) {
	tc, eo := newEchoCluster(t, 1, nil)
	addr := tc.nodes[0].DataAddr()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"+
		"POST /second HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET /smuggled HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var resps []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("after %d responses the connection is still open", len(resps))
			}
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		resps = append(resps, resp)
	}
	if n := len(resps); n == 0 || n > 2 || !resps[n-1].Close {
		t.Errorf("%d responses, the last with Connection: close = %v; want 1 or 2, the last closing", n, n > 0 && resps[n-1].Close)
	}
	if eo.fetches("/smuggled") != 0 {
		t.Error("the smuggled request reached the origin")
	}
}

// serverCloses reports whether the server closes c (EOF) rather than
// keeping it open for more requests; anything else read fails the test.
func serverCloses(t *testing.T, c net.Conn, br *bufio.Reader) bool {
	t.Helper()
	// A closed connection reads EOF at once; an open one stays silent.
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := br.ReadByte()
	if err == nil {
		t.Errorf("an unexpected response (first byte %q)", b)
		return false
	}
	return !isTimeout(err)
}

// TestMalformedChunkedGETBodyIs400 (issue 10, weak items): a GET's body is
// never forwarded, but a malformed one is still the client's error (400),
// on the node that owns the key and on a router that would forward it, and
// it neither reaches the origin nor marks a peer as failing.
func TestMalformedChunkedGETBodyIs400(t *testing.T) {
	tc, eo := newEchoCluster(t, 3, nil)
	path, owner := tc.pathOwnedElsewhere(0, "/gbody/")
	for _, i := range []int{owner, 0} {
		addr := tc.nodes[i].DataAddr()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || strings.TrimSpace(string(body)) == "" {
			t.Errorf("node %d: malformed chunked GET body: %d %q, want 400 with a message", i, resp.StatusCode, body)
		}
		if !serverCloses(t, c, br) {
			t.Errorf("node %d: the connection stays open after a malformed body", i)
		}
	}
	if n := eo.fetches(path); n != 0 {
		t.Errorf("the origin received %d requests for it", n)
	}
	mfs, err := tc.nodes[0].cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if v := mf.GetMetric()[0].GetCounter().GetValue(); mf.GetName() == "crowdpilot_forward_failovers_total" && v != 0 {
			t.Errorf("the router failed over %v times for a client's bad body", v)
		}
	}
	// A well-formed GET body is read and dropped: the GET is served.
	addr := tc.nodes[0].DataAddr()
	if status, body := rawRequest(t, addr, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 5\r\n\r\nhello"); status != http.StatusOK || strings.Contains(body, "Content-Length") {
		t.Errorf("GET with a body: %d %q, want 200 and no body forwarded", status, body)
	}
}

// BenchmarkFramingFeed is the scanner's cost per typical browser GET
// (about 400 bytes of header), the data server's price for it per request.
func BenchmarkFramingFeed(b *testing.B) {
	req := []byte("GET /articles/2026/12/flash-crowd.html?utm_source=x HTTP/1.1\r\nHost: www.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n\r\n")
	var f framing
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		f.Feed(req)
	}
	if f.Bad() != 0 {
		b.Fatal("a clean request marked")
	}
}
