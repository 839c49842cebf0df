package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/testwait"
)

// echo answers with what it was asked, so that two servers reading the same
// bytes can be compared on what their handlers saw.
func echo(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q %q %q %q close=%v proto=%s len=%d\n", r.Method, r.Host, r.RequestURI, r.URL.Path, r.URL.RawQuery, r.Close, r.Proto, r.ContentLength)
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range r.Header {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q\n", k, r.Header[k])
	}
	body, _ := io.ReadAll(r.Body)
	fmt.Fprintf(&b, "body=%q\n", body)
	w.Header().Set("X-Echo", "1")
	io.WriteString(w, b.String())
}

type servers struct {
	lean, std string // addresses: h1 (with net/http behind it) and net/http alone
	h1        *Server
	timeouts  chan string
}

// start serves handler through h1 and, separately, through net/http alone.
// A response from h1's fallback says so in X-Front.
func start(t testing.TB, handler http.HandlerFunc, tune func(*Server)) *servers {
	t.Helper()
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Front", "fallback")
		handler(w, r)
	})
	st := &servers{timeouts: make(chan string, 16)}
	st.h1 = &Server{
		Handler:   handler,
		Fallback:  &http.Server{Handler: fallback},
		OnTimeout: func(phase string) { st.timeouts <- phase },
	}
	if tune != nil {
		tune(st.h1)
	}
	st.lean = serve(t, st.h1.Serve, func() { st.h1.Close() })
	std := &http.Server{Handler: handler}
	st.std = serve(t, std.Serve, func() { std.Close() })
	return st
}

func serve(t testing.TB, run func(net.Listener) error, stop func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run(ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// exchange sends raw on a new connection and reads every response to it,
// until the server closes the connection or stops answering.
type answer struct {
	status int
	header http.Header
	body   string
	te     []string
}

func exchange(t *testing.T, addr, raw string, want int) ([]answer, bool) {
	t.Helper()
	var methods []string // of each request, to read HEAD responses as such
	for _, line := range strings.Split(raw, "\r\n") {
		if m, _, ok := strings.Cut(line, " "); ok && strings.HasSuffix(line, " HTTP/1.1") {
			methods = append(methods, m)
		}
	}
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var out []answer
	for len(out) < want {
		var req *http.Request
		if len(out) < len(methods) {
			req = &http.Request{Method: methods[len(out)]}
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return out, true
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("body: %v", err)
		}
		resp.Header.Del("Date")
		out = append(out, answer{resp.StatusCode, resp.Header, string(body), resp.TransferEncoding})
	}
	// Closed after the last answer? A kept-alive connection sends nothing.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = br.ReadByte()
	var ne net.Error
	closed := err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return out, closed
}

func TestReadsRequestsAsNetHTTPDoes(t *testing.T) {
	st := start(t, echo, nil)
	for _, tc := range []struct {
		name, raw string
		lean      bool // h1 answers it itself
	}{
		{"get", "GET /a/b?x=1&x=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n", true},
		{"head", "HEAD /a HTTP/1.1\r\nHost: example.com\r\n\r\n", true},
		{"repeated and odd-case fields", "GET / HTTP/1.1\r\nhost: h\r\naccept-encoding: gzip\r\nX-a: 1\r\nX-A: 2\r\ncookie: a=1\r\nCookie: b=2\r\n\r\n", true},
		{"blanks around values", "GET / HTTP/1.1\r\nHost:h\r\nX-Pad: \t padded \t \r\nX-Empty:\r\n\r\n", true},
		{"pragma no-cache", "GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n", true},
		{"connection close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", true},
		{"escaped path", "GET /a%2Fb/%7Euser/../c?q=%20 HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"utf-8 value", "GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9\r\n\r\n", true},
		{"post with a body", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", false},
		{"get with a body", "GET /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", false},
		{"chunked", "GET /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
		{"expect", "GET /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", false},
		{"http/1.0", "GET /p HTTP/1.0\r\nHost: h\r\n\r\n", false},
		{"absolute form", "GET http://other.example/p HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"options", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"upgrade", "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
		{"no host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", false},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false},
		{"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", false},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", false},
		{"control in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n", false},
		{"bare LF", "GET / HTTP/1.1\nHost: h\n\n", false},
		{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"lowercase method", "get / HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"garbage", "HELLO\r\n\r\n", false},
		{"long head", "GET / HTTP/1.1\r\nHost: h\r\nCookie: " + strings.Repeat("c", 6000) + "\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, gotClosed := exchange(t, st.lean, tc.raw, 1)
			want, wantClosed := exchange(t, st.std, tc.raw, 1)
			if len(got) != len(want) {
				t.Fatalf("h1 gave %d responses, net/http %d", len(got), len(want))
			}
			if gotClosed != wantClosed {
				t.Errorf("connection closed after: h1 %v, net/http %v", gotClosed, wantClosed)
			}
			for i := range got {
				// The handler answered, and not through the fallback.
				lean := got[i].header.Get("X-Echo") != "" && got[i].header.Get("X-Front") == ""
				if lean != tc.lean {
					t.Errorf("answered by h1 itself: %v, want %v", lean, tc.lean)
				}
				got[i].header.Del("X-Front")
				if got[i].status != want[i].status || got[i].body != want[i].body {
					t.Errorf("h1: %d %q\nnet/http: %d %q", got[i].status, got[i].body, want[i].status, want[i].body)
				}
				for _, h := range []http.Header{got[i].header, want[i].header} {
					h.Del("Content-Length") // framing may differ (below), the rest may not
				}
				if fmt.Sprint(got[i].header) != fmt.Sprint(want[i].header) {
					t.Errorf("header: h1 %v, net/http %v", got[i].header, want[i].header)
				}
			}
		})
	}
}

func TestWritesResponsesAsNetHTTPDoes(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 5000) // 80,000 bytes: past maxBuffered
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		method  string
		framing string // h1's: "length N", "chunked" or "none"
	}{
		{"small, no length", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }, "GET", "length 5"},
		{"sniffed type", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html><body>x</body></html>") }, "GET", "length 27"},
		{"no sniffing when the type is present but empty", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			io.WriteString(w, "<html></html>")
		}, "GET", "length 13"},
		{"declared length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}, "GET", "length 5"},
		{"big, no length", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }, "GET", "chunked"},
		{"big, declared length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big)
		}, "GET", fmt.Sprintf("length %d", len(big))},
		{"head with a length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}, "HEAD", "length 5"},
		{"head, body written", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }, "HEAD", "length 5"},
		{"head, nothing written", func(w http.ResponseWriter, r *http.Request) {}, "HEAD", "none"},
		{"error", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nope", http.StatusNotFound) }, "GET", "length 5"},
		{"no content", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "9")
			w.WriteHeader(http.StatusNoContent)
		}, "GET", "none"},
		{"not modified", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Etag", `"x"`)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusNotModified)
		}, "GET", "none"},
		{"header changed after WriteHeader", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Before", "1")
			w.WriteHeader(http.StatusAccepted)
			w.Header().Set("X-After", "1")
			io.WriteString(w, "ok")
		}, "GET", "length 2"},
		{"value with a newline", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["X-Split"] = []string{"a\r\nX-Injected: 1"}
		}, "GET", "length 0"},
		{"unknown status", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(599) }, "GET", "length 0"},
		{"ranges and conditionals", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Etag", `"v1"`)
			http.ServeContent(w, r, "", time.Time{}, strings.NewReader("0123456789"))
		}, "GET", "length 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := start(t, tc.handler, nil)
			raw := tc.method + " / HTTP/1.1\r\nHost: h\r\nRange: bytes=2-4\r\n\r\n"
			got := rawExchange(t, st.lean, raw, tc.method)
			want := rawExchange(t, st.std, raw, tc.method)
			if got.status != want.status || got.body != want.body {
				t.Fatalf("h1: %d %q\nnet/http: %d %q", got.status, got.body, want.status, want.body)
			}
			if got.fields != want.fields {
				t.Errorf("fields: h1 %q\nnet/http %q", got.fields, want.fields)
			}
			if got.framing != tc.framing {
				t.Errorf("h1 framing %q, want %q (net/http: %q)", got.framing, tc.framing, want.framing)
			}
			if got.date != want.date || got.date != "present" {
				t.Errorf("Date: h1 %s, net/http %s", got.date, want.date)
			}
		})
	}
}

// rawAnswer is one response as sent: the fields other than framing and
// Date, sorted, and how the body was framed.
type rawAnswer struct {
	status        int
	fields, body  string
	framing, date string
}

func rawExchange(t *testing.T, addr, raw, method string) rawAnswer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, raw)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	a := rawAnswer{status: resp.StatusCode, body: string(body), framing: "none", date: "absent"}
	switch {
	case len(resp.TransferEncoding) > 0:
		a.framing = "chunked"
	case resp.Header.Get("Content-Length") != "":
		a.framing = "length " + resp.Header.Get("Content-Length")
	}
	if resp.Header.Get("Date") != "" {
		a.date = "present"
	}
	var fields []string
	for k, vv := range resp.Header {
		if k != "Date" && k != "Content-Length" {
			fields = append(fields, fmt.Sprintf("%s=%q", k, vv))
		}
	}
	slices.Sort(fields)
	a.fields = strings.Join(fields, " ")
	return a
}

func TestKeepsTheConnectionAcrossRequestsAndHandsItOver(t *testing.T) {
	st := start(t, echo, nil)
	raw := "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n" + // pipelined with the next
		"HEAD /2 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"POST /3 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi" + // Fallback's from here
		"GET /4 HTTP/1.1\r\nHost: h\r\n\r\n"
	got, closed := exchange(t, st.lean, raw, 4)
	if len(got) != 4 || closed {
		t.Fatalf("%d responses, closed %v; want 4 on a kept-alive connection", len(got), closed)
	}
	for i, want := range []struct{ front, body string }{
		{"", "GET \"h\" \"/1\""}, {"", ""}, {"fallback", "POST \"h\" \"/3\""}, {"fallback", "GET \"h\" \"/4\""},
	} {
		if f := got[i].header.Get("X-Front"); f != want.front {
			t.Errorf("response %d served by %q, want %q", i+1, f, want.front)
		}
		if !strings.HasPrefix(got[i].body, want.body) {
			t.Errorf("response %d: %q, want it to start %q", i+1, got[i].body, want.body)
		}
	}
	if !strings.Contains(got[2].body, `body="hi"`) {
		t.Errorf("the handed-over request lost its body: %q", got[2].body)
	}
}

func TestConnectionClosesWhenTheResponseCannotBeKept(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		raw     string
	}{
		{"client asks", func(w http.ResponseWriter, r *http.Request) {}, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"},
		{"handler asks", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Connection", "close") }, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"short body", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/bad" {
				w.Header().Set("Content-Length", "10")
				io.WriteString(w, "12345")
			}
		}, "GET /bad HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"aborted", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/bad" {
				io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
		}, "GET /bad HTTP/1.1\r\nHost: h\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := start(t, tc.handler, nil)
			if err := sendUntilClosed(st.lean, tc.raw); err != nil {
				t.Fatalf("the connection was not closed: %v", err)
			}
			// The server goes on serving others.
			if got, _ := exchange(t, st.lean, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 1); len(got) != 1 {
				t.Fatal("no answer after")
			}
		})
	}
}

// sendUntilClosed writes raw on a new connection and reads until the
// server closes it (an error: it did not within 10 s).
func sendUntilClosed(addr, raw string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	io.WriteString(c, raw)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(c)
	return err
}

func TestStreamsWhatItCannotHold(t *testing.T) {
	chunk := strings.Repeat("x", 40<<10)
	st := start(t, func(w http.ResponseWriter, r *http.Request) {
		for range 3 {
			io.WriteString(w, chunk)
			w.(http.Flusher).Flush()
		}
	}, nil)
	got, closed := exchange(t, st.lean, "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 2)
	if len(got) != 2 || closed {
		t.Fatalf("%d responses, closed %v", len(got), closed)
	}
	for _, a := range got {
		if a.body != strings.Repeat(chunk, 3) || !slices.Equal(a.te, []string{"chunked"}) {
			t.Errorf("body %d bytes, transfer-encoding %v; want %d chunked", len(a.body), a.te, 3*len(chunk))
		}
	}
}

func TestTimeoutsCutSlowClients(t *testing.T) {
	st := start(t, echo, func(s *Server) {
		s.ReadHeaderTimeout = 100 * time.Millisecond
		s.IdleTimeout = 100 * time.Millisecond
	})
	for _, tc := range []struct{ name, raw, phase string }{
		{"header", "GET / HTTP/1.1\r\nHost:", "header"},
		{"idle", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "idle"},
		{"later header", "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\n", "idle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := sendUntilClosed(st.lean, tc.raw); err != nil {
				t.Fatalf("not cut: %v", err)
			}
			select {
			case p := <-st.timeouts:
				if p != tc.phase {
					t.Errorf("counted as %q, want %q", p, tc.phase)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the cut was not reported")
			}
		})
	}
}

func TestShutdownClosesIdleConnectionsAndFinishesActiveOnes(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	st := start(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			once.Do(func() { close(entered) })
			<-release
		}
		io.WriteString(w, "done")
	}, nil)
	idle, err := net.Dial("tcp", st.lean)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if got, _ := exchangeOn(t, idle, "GET /fast HTTP/1.1\r\nHost: h\r\n\r\n"); got != "done" {
		t.Fatalf("idle connection's first answer: %q", got)
	}
	active, err := net.Dial("tcp", st.lean)
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	io.WriteString(active, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- st.h1.Shutdown(context.Background()) }()
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(idle); err != nil {
		t.Fatalf("the idle connection was not closed: %v", err)
	}
	testwait.Holds(t, 50*time.Millisecond, "Shutdown waits for the active request", func() bool { return len(shut) == 0 })
	close(release)
	active.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(active), nil)
	if err != nil {
		t.Fatalf("active request: %v", err)
	}
	if !resp.Close {
		t.Error("the last response of a shutting-down server should say Connection: close")
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func exchangeOn(t *testing.T, c net.Conn, raw string) (string, error) {
	t.Helper()
	io.WriteString(c, raw)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// FuzzReadsRequestsAsNetHTTPDoes sends the same bytes to h1 and to
// net/http: both answer alike (status and what the handler saw), whichever
// of h1 and its fallback reads them.
func FuzzReadsRequestsAsNetHTTPDoes(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /a?b HTTP/1.1\r\nHost: h:80\r\nX: y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nPragma: no-cache\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r0Host:0\r\n\r\n", // a bare CR in the request line: 400, not a Host
	} {
		f.Add(s)
	}
	st := start(f, echo, nil)
	f.Fuzz(func(t *testing.T, raw string) {
		lower := strings.ToLower(raw)
		if !strings.HasSuffix(raw, "\r\n\r\n") || strings.Contains(lower, "content-length") || strings.Contains(lower, "transfer-encoding") {
			return // waits for more bytes (net/http's on both sides anyway): nothing to compare
		}
		got, _ := exchange(t, st.lean, raw, 1)
		want, _ := exchange(t, st.std, raw, 1)
		if len(got) != len(want) {
			t.Fatalf("h1 gave %d responses, net/http %d", len(got), len(want))
		}
		if len(got) == 1 && (got[0].status != want[0].status || got[0].body != want[0].body) {
			t.Fatalf("h1: %d %q\nnet/http: %d %q", got[0].status, got[0].body, want[0].status, want[0].body)
		}
	})
}

// TestIdleConnectionsHoldLittle: after a large answer, a kept-alive
// connection waits with small buffers, not the answer's.
func TestIdleConnectionsHoldLittle(t *testing.T) {
	big := strings.Repeat("y", 60<<10)
	st := start(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }, nil)
	c, err := net.Dial("tcp", st.lean)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := exchangeOn(t, c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil || got != big {
		t.Fatalf("answer: %d bytes, %v", len(got), err)
	}
	held := func() (n int, idle bool) {
		st.h1.mu.Lock()
		defer st.h1.mu.Unlock()
		for cn := range st.h1.conns {
			// Read only once the connection says idle: its goroutine is
			// done with the buffers (the atomic state orders the reads).
			if idle = cn.state.Load() == stateIdle; idle {
				n = cap(cn.resp.body) + cap(cn.resp.out)
			}
		}
		return n, idle
	}
	testwait.Eventually(t, 10*time.Second, "the connection goes idle", func() bool { _, idle := held(); return idle })
	if n, _ := held(); n > 2*keepBytes {
		t.Errorf("an idle connection holds %d bytes of buffers, want at most %d", n, 2*keepBytes)
	}
}

// TestWorkersServeOneConnectionAfterAnother: a connection that arrives
// after another has ended is served by the goroutine that served the first
// (no new goroutine, whose stack would grow again), and the idle workers
// stop with the server.
func TestWorkersServeOneConnectionAfterAnother(t *testing.T) {
	st := start(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }, nil)
	idle := func() int {
		st.h1.mu.Lock()
		defer st.h1.mu.Unlock()
		return len(st.h1.idle)
	}
	for i := range 20 {
		if got := rawExchange(t, st.lean, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", http.MethodGet); got.status != http.StatusOK {
			t.Fatalf("connection %d: status %d", i, got.status)
		}
		testwait.Eventually(t, 10*time.Second, "the worker waits for the next connection", func() bool { return idle() == 1 })
	}
	if n := st.h1.live.Load(); n != 1 {
		t.Errorf("%d workers served 20 connections one after another, want 1", n)
	}
	st.h1.Close()
	testwait.Eventually(t, 10*time.Second, "the idle worker stops with the server", func() bool { return st.h1.live.Load() == 0 })
}

// TestARecycledConnectionStartsClean: the next connection is served on the
// last one's conn (its buffers kept), and nothing of the last connection
// reaches it: not the unread start of a pipelined request, not a header
// its handler set.
func TestARecycledConnectionStartsClean(t *testing.T) {
	st := start(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/a" {
			w.Header().Set("X-For-A", "a")
		}
		fmt.Fprintf(w, "%s %q", r.URL.Path, r.Header.Get("X-Leak"))
	}, nil)
	free := func() []*conn {
		st.h1.mu.Lock()
		defer st.h1.mu.Unlock()
		return slices.Clone(st.h1.free)
	}
	// A's second request is cut off before its end: its bytes sit in the
	// read buffer when A's connection ends.
	a := rawExchange(t, st.lean, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\nX-Leak: secret\r\n", http.MethodGet)
	if a.status != http.StatusOK || a.body != `/a ""` {
		t.Fatalf("A: %d %q", a.status, a.body)
	}
	var kept []*conn
	testwait.Eventually(t, 10*time.Second, "A's conn is kept for the next connection", func() bool { kept = free(); return len(kept) == 1 })
	b := rawExchange(t, st.lean, "GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", http.MethodGet)
	if b.status != http.StatusOK || b.body != `/b ""` || strings.Contains(b.fields, "X-For-A") {
		t.Errorf("B on A's conn: %d %q, fields %s; want /b with nothing of A", b.status, b.body, b.fields)
	}
	testwait.Eventually(t, 10*time.Second, "B was served on A's conn, kept again", func() bool {
		got := free()
		return len(got) == 1 && got[0] == kept[0]
	})
}

// TestIdleWorkersStopAfterAWhile: a worker nobody hands a connection stops
// after workerIdle, and at most maxIdleWorkers wait.
func TestIdleWorkersStopAfterAWhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{}
		idle := func() int {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.idle)
		}
		got := make(chan *conn, 1)
		go func() {
			c, _ := s.next(make(worker, 1), nil)
			got <- c
		}()
		synctest.Wait()
		if n := idle(); n != 1 {
			t.Fatalf("%d idle workers, want 1", n)
		}
		time.Sleep(workerIdle - time.Millisecond)
		synctest.Wait()
		if len(got) != 0 {
			t.Fatal("the worker stopped before workerIdle")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if c := <-got; c != nil || idle() != 0 {
			t.Fatalf("after workerIdle: conn %v, %d idle; want none", c, idle())
		}

		for range maxIdleWorkers {
			s.idle = append(s.idle, make(worker, 1))
		}
		if c, _ := s.next(make(worker, 1), nil); c != nil || idle() != maxIdleWorkers {
			t.Fatalf("with %d waiting, one more waited (%d idle)", maxIdleWorkers, idle())
		}
	})
}
