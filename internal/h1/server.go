// Package h1 is the data port's lean HTTP/1.1 front: it reads the requests
// a cache mostly sees (GET and HEAD, HTTP/1.1, no body) itself, runs the
// handler with a buffering ResponseWriter, and writes each small response
// in one write, without net/http's per-request background read and
// deadline resets. At the first request it does not take (a body, an
// upgrade, HTTP/1.0, anything unusual or malformed), it hands the
// connection, with every byte it has buffered, to a net/http Server for
// good, so net/http decides everything it is better placed to decide.
//
// A connection is served on a worker goroutine that has served earlier
// ones (its stack already grown) and on a recycled conn (its buffers
// kept); both are bounded (maxIdleWorkers) and idle workers stop after
// workerIdle. A flash crowd brings new clients, so a new connection must
// cost little more than a request on an open one.
//
// One difference from net/http remains: h1 does not read ahead while a
// handler runs, so a request's context ends when ServeHTTP returns or the
// connection is found closed on the next read or write, not the moment a
// client goes away mid-request (the handler's own timeouts bound it).
package h1

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/1.1 on a listener, handing connections it does not
// take to Fallback. Set the fields before Serve; do not change them after.
type Server struct {
	// Handler answers every request this server reads itself. Fallback's
	// handler should be the same.
	Handler http.Handler
	// Fallback serves connections handed over. Required. Serve runs it
	// on an internal listener; Shutdown and Close stop it too.
	Fallback *http.Server
	// ReadHeaderTimeout bounds reading a request header (from the
	// connection's accept, or the request's first byte); IdleTimeout the
	// wait for the next request on a kept-alive connection; WriteTimeout
	// writing a response. Zero or negative: no timeout, as in net/http.
	ReadHeaderTimeout, IdleTimeout, WriteTimeout time.Duration
	// OnTimeout, if not nil, is told when a timeout cuts a connection
	// here: "header" (the first request header), "idle" (waiting for, or
	// reading, a later one) or "write".
	OnTimeout func(phase string)
	// Wrap, if not nil, wraps each connection handed to Fallback.
	Wrap func(net.Conn) net.Conn
	// Logger reports handler panics. Nil: slog.Default().
	Logger *slog.Logger

	mu      sync.Mutex
	conns   map[*conn]struct{} // guarded by mu; the connections served here
	ln      net.Listener       // guarded by mu
	hand    *handoffListener   // guarded by mu; created by the first Serve
	closing atomic.Bool
	wg      sync.WaitGroup // connection goroutines and the fallback's Serve
	date    atomic.Pointer[dateLine]

	idle []worker     // guarded by mu; goroutines waiting for a connection, the most recent last
	free []*conn      // guarded by mu; conns (and their buffers) kept for the next connections, at most maxFreeConns
	live atomic.Int64 // worker goroutines running, busy or idle
}

// A worker is a goroutine that serves one connection after another: a new
// connection starts on one that has served before, whose stack has grown
// already, rather than on a new goroutine that grows its stack again
// (copying it) while it serves its first request. At most maxIdleWorkers
// wait, each at most workerIdle; they stop when the server does.
// Closed connections' conns are kept for new ones, at most maxFreeConns:
// as many as idle workers, one for each.
const (
	maxIdleWorkers = 128
	workerIdle     = 10 * time.Second
	maxFreeConns   = maxIdleWorkers
)

// worker hands an idle worker its next connection (buffered: the accept
// loop never waits); closed, it tells the worker to stop.
type worker chan *conn

// Connection states, for Shutdown: only an idle connection (waiting for a
// request, nothing of it read) may be closed under a client.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

// Serve accepts connections on ln until Shutdown or Close, and returns
// http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	if s.Fallback == nil || s.Handler == nil {
		return errors.New("h1: Server needs a Handler and a Fallback")
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.ln = ln
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	first := s.hand == nil
	if first {
		s.hand = newHandoffListener(ln.Addr())
	}
	hand := s.hand
	s.mu.Unlock()
	if first {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := s.Fallback.Serve(hand)
			if err != nil && !errors.Is(err, http.ErrServerClosed) && !(s.closing.Load() && errors.Is(err, net.ErrClosed)) {
				s.logger().Error("h1: fallback server stopped", "err", err)
			}
		}()
	}
	var delay time.Duration // accept backoff, as net/http's
	for {
		rw, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var te interface{ Temporary() bool } // EMFILE, ECONNABORTED: retried, as net/http does
			if errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay) // accept backoff, not a wait on state
				continue
			}
			return err
		}
		delay = 0
		c, w := s.newConn(rw)
		switch {
		case c == nil:
			rw.Close()
		case w != nil:
			w <- c
		default:
			s.live.Add(1)
			go s.work(c)
		}
	}
}

// newConn registers a connection and takes an idle worker for it, if one
// waits (nil: start one).
func (s *Server) newConn(rw net.Conn) (*conn, worker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil, nil
	}
	var c *conn
	if n := len(s.free); n > 0 {
		c = s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		c.open(s, rw)
	} else {
		c = newConn(s, rw)
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	var w worker
	if n := len(s.idle); n > 0 {
		w = s.idle[n-1]
		s.idle[n-1] = nil
		s.idle = s.idle[:n-1]
	}
	return c, w
}

// work serves c, then each connection handed to it, until next has none.
func (s *Server) work(c *conn) {
	defer s.live.Add(-1)
	growStack()
	w := make(worker, 1)
	var t *time.Timer
	for c != nil {
		c.serve()
		c, t = s.next(w, t)
	}
	if t != nil {
		t.Stop()
	}
}

// next waits, as an idle worker, for the connection the accept loop hands
// w; nil when the server is closing, enough workers wait already, or none
// came within workerIdle. t is the worker's timer, made on its first wait.
func (s *Server) next(w worker, t *time.Timer) (*conn, *time.Timer) {
	s.mu.Lock()
	if s.closing.Load() || len(s.idle) >= maxIdleWorkers {
		s.mu.Unlock()
		return nil, t
	}
	s.idle = append(s.idle, w)
	s.mu.Unlock()
	if t == nil {
		t = time.NewTimer(workerIdle)
	} else {
		t.Reset(workerIdle)
	}
	select {
	case c := <-w: // nil once closed: the server stops
		t.Stop()
		return c, t
	case <-t.C:
	}
	s.mu.Lock()
	i := slices.Index(s.idle, w)
	if i >= 0 {
		s.idle = slices.Delete(s.idle, i, i+1)
	}
	s.mu.Unlock()
	if i >= 0 {
		return nil, t
	}
	return <-w, t // taken as the timer fired: its connection is on the way
}

// forget drops c, whose connection is closed or handed off, and keeps it
// for a next connection while fewer than maxFreeConns are kept: nothing
// else holds it (Close and Shutdown reach connections only through conns,
// under mu).
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	c.release() // under mu: Close may be closing c.rw until c leaves conns
	if len(s.free) < maxFreeConns && !s.closing.Load() {
		s.free = append(s.free, c)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// handOff gives c's connection to Fallback.
func (s *Server) handOff(nc net.Conn) {
	if s.Wrap != nil {
		nc = s.Wrap(nc)
	}
	s.mu.Lock()
	hand := s.hand
	s.mu.Unlock()
	hand.give(nc)
}

// Shutdown stops accepting, closes idle connections, lets active ones
// finish their response, and shuts Fallback down, within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	ferr := make(chan error, 1)
	go func() { ferr <- s.Fallback.Shutdown(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond) // poll, as net/http's Shutdown does
	defer tick.Stop()
	for {
		if s.closeIdle() {
			break
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), <-ferr)
		case <-tick.C:
		}
	}
	return <-ferr
}

// Close closes the listener and every connection at once, Fallback's too.
func (s *Server) Close() error {
	s.stopAccepting()
	s.mu.Lock()
	for c := range s.conns {
		c.state.Store(stateClosed)
		c.rw.Close()
	}
	s.mu.Unlock()
	return s.Fallback.Close()
}

func (s *Server) stopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	if s.ln != nil {
		s.ln.Close()
	}
	for _, w := range s.idle {
		close(w)
	}
	s.idle, s.free = nil, nil
	if s.hand == nil {
		s.hand = newHandoffListener(nil) // Fallback never started: nothing to hand to
	}
	s.hand.Close()
}

// closeIdle closes every idle connection and reports whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.rw.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// handoffListener is the listener Fallback serves: it accepts what h1
// hands over.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// give waits for Fallback to accept c; once the listener is closed, c is
// closed instead.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// prefixConn is a handed-off connection: the bytes h1 read but did not
// use come first.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// dateLine is the Date header of one second, formatted once.
type dateLine struct {
	sec  int64
	line []byte // "Date: ...\r\n"
}

func (s *Server) dateLine(now time.Time) []byte {
	sec := now.Unix()
	if d := s.date.Load(); d != nil && d.sec == sec {
		return d.line
	}
	line := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
	line = append(line, "\r\n"...)
	s.date.Store(&dateLine{sec: sec, line: line})
	return line
}
