package load

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// connTransport is the generator's HTTP/1.1 transport for http:// URLs:
// a request goes out and its answer is read on the calling goroutine,
// over a kept-alive connection from a bounded pool (or one dialed for
// it). net/http's Transport hands every request to two goroutines of its
// connection and back; on a 2-core machine shared with the cluster under
// test, this generator then used 0.45 core at 6,000 requests a second
// (0.36 with this transport), and its first crowd second was over twice
// the baseline in 5 of 12 short testbed runs against 1 of 12 with this
// one (bench/RESULTS.md, "The generator's own stalls"). Requests and
// answers are still written and read by net/http (Request.Write,
// ReadResponse). https:// URLs go to tls, a net/http Transport.
type connTransport struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle int // connections kept idle, per host
	tls     http.RoundTripper

	mu   sync.Mutex
	idle map[string][]*loadConn // by host:port; the last one in is the first out
}

func newConnTransport(timeout time.Duration, maxIdle int) *connTransport {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return &connTransport{
		dial:    d.DialContext,
		maxIdle: maxIdle,
		idle:    map[string][]*loadConn{},
		tls: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConns:        maxIdle,
			MaxIdleConnsPerHost: maxIdle,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// loadConn is one connection with its buffers.
type loadConn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// aLongTimeAgo, as a deadline, makes a blocked read or write return at once.
var aLongTimeAgo = time.Unix(1, 0)

func (t *connTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return t.tls.RoundTrip(req)
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body.Close()
		return nil, errors.New("load: request bodies are not supported")
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		c, reused, err := t.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		if tr := httptrace.ContextClientTrace(ctx); tr != nil && tr.GotConn != nil {
			tr.GotConn(httptrace.GotConnInfo{Conn: c.nc, Reused: reused})
		}
		resp, err := t.exchange(ctx, c, addr, req)
		if err == nil {
			return resp, nil
		}
		c.nc.Close()
		// A kept-alive connection the server closed meanwhile fails before
		// any answer: the GET goes again on a new one, as net/http does.
		var ne net.Error
		timedOut := errors.As(err, &ne) && ne.Timeout()
		if reused && attempt == 0 && ctx.Err() == nil && !timedOut && errors.Is(err, errNothingRead) {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
}

// errNothingRead wraps a failure before the first byte of the answer.
var errNothingRead = errors.New("connection closed before an answer")

type nothingRead struct{ err error }

func (e nothingRead) Error() string   { return errNothingRead.Error() + ": " + e.err.Error() }
func (e nothingRead) Unwrap() []error { return []error{errNothingRead, e.err} }

// Timeout says whether the failure was the request's deadline, which
// url.Error (what http.Client returns) asks of the error it wraps.
func (e nothingRead) Timeout() bool {
	var ne net.Error
	return errors.As(e.err, &ne) && ne.Timeout()
}

// exchange writes req on c and reads the answer's head; the body is read
// through the returned response, which gives c back to the pool at its
// end.
func (t *connTransport) exchange(ctx context.Context, c *loadConn, addr string, req *http.Request) (*http.Response, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(dl)
	} else {
		c.nc.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	if err := req.Write(c.bw); err != nil {
		stop()
		return nil, nothingRead{err}
	}
	if err := c.bw.Flush(); err != nil {
		stop()
		return nil, nothingRead{err}
	}
	if _, err := c.br.Peek(1); err != nil {
		stop()
		return nil, nothingRead{err}
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		stop()
		return nil, err
	}
	resp.Body = &connBody{t: t, c: c, body: resp.Body, keep: !resp.Close, stop: stop, addr: addr}
	return resp, nil
}

// connBody is an answer's body: read to its end, it puts the connection
// back in the pool (unless the answer closes it); closed before, it
// closes the connection.
type connBody struct {
	t    *connTransport
	c    *loadConn
	body io.ReadCloser
	keep bool
	stop func() bool
	addr string
	done bool
}

func (b *connBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
	}
	return n, err
}

func (b *connBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

func (b *connBody) finish(whole bool) {
	b.done = true
	if b.stop() && whole && b.keep {
		b.t.put(b.c, b.addr)
		return
	}
	b.c.nc.Close()
}

// get takes an idle connection to addr, or dials one.
func (t *connTransport) get(ctx context.Context, addr string) (c *loadConn, reused bool, err error) {
	t.mu.Lock()
	if l := t.idle[addr]; len(l) > 0 {
		c = l[len(l)-1]
		l[len(l)-1] = nil
		t.idle[addr] = l[:len(l)-1]
	}
	t.mu.Unlock()
	if c != nil {
		return c, true, nil
	}
	nc, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &loadConn{nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}, false, nil
}

// put keeps c idle for addr, or closes it when the pool is full.
func (t *connTransport) put(c *loadConn, addr string) {
	t.mu.Lock()
	if len(t.idle[addr]) < t.maxIdle {
		t.idle[addr] = append(t.idle[addr], c)
		c = nil
	}
	t.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// CloseIdleConnections closes the idle connections.
func (t *connTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*loadConn{}
	t.mu.Unlock()
	for _, l := range idle {
		for _, c := range l {
			c.nc.Close()
		}
	}
	if ci, ok := t.tls.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
