package load

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// pipeNet is a loopback network made of net.Pipe connections, so that a
// test inside a testing/synctest bubble runs the real net/http client and
// server on the bubble's fake clock: a request leaves exactly when the
// generator sends it, and a handler that sleeps a second takes exactly a
// second, however busy the machine is. (Real sockets are not durably
// blocking, so they cannot be used in a bubble.)
type pipeNet struct {
	mu      sync.Mutex // guards servers
	servers map[string]*pipeListener
	wg      sync.WaitGroup // the servers' Serve loops
	https   []*http.Server
}

func newPipeNet() *pipeNet { return &pipeNet{servers: map[string]*pipeListener{}} }

// serve starts h at host ("name:port") and returns its base URL.
func (p *pipeNet) serve(host string, h http.Handler) string {
	l := &pipeListener{addr: pipeAddr(host), conns: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}
	p.mu.Lock()
	p.servers[host] = l
	p.https = append(p.https, srv)
	p.mu.Unlock()
	p.wg.Go(func() { _ = srv.Serve(l) })
	return "http://" + host
}

// dial connects to a server started with serve; other addresses refuse.
func (p *pipeNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	p.mu.Lock()
	l := p.servers[addr]
	p.mu.Unlock()
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: fmt.Errorf("%s: connection refused", addr)}
	}
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// transport is the generator's own transport over the pipe network.
func (p *pipeNet) transport() *connTransport {
	t := newConnTransport(time.Minute, 1000)
	t.dial = p.dial
	return t
}

// close stops every server and waits for them, so that the bubble can end.
func (p *pipeNet) close(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	srvs := p.https
	p.mu.Unlock()
	for _, s := range srvs {
		if err := s.Close(); err != nil {
			t.Errorf("close pipe server: %v", err)
		}
	}
	p.wg.Wait()
}

type pipeListener struct {
	addr  pipeAddr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return l.addr }

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

var _ net.Listener = (*pipeListener)(nil)
