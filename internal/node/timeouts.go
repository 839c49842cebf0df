package node

// Slow clients and the origin's connections (issue 10, finding 8): the
// data server's timeouts, a count of every connection they cut, and the
// bounded transport of the pass-through proxy.

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdpilot/crowdpilot/internal/h1"
)

// dataServer serves the data port: *h1.Server or *http.Server.
type dataServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// newDataServer builds the data port's server, with the configured
// timeouts (negative: none), and returns the listener to serve: every
// connection a timeout cuts is counted in crowdpilot_client_timeouts_total,
// whichever of h1 and net/http reads it, and a connection is closed after a
// request with ambiguous framing (framing.go).
func (n *Node) newDataServer() net.Listener {
	pos := func(d time.Duration) time.Duration { return max(d, 0) }
	handler := n.withTenants(n) // counts requests per tenant, if any (tenantload.go)
	std := &http.Server{
		Handler:           handler,
		MaxHeaderBytes:    n.cfg.MaxHeaderBytes,
		ErrorLog:          newStdLogger(n.cfg.Logger),
		ReadHeaderTimeout: pos(n.cfg.ReadHeaderTimeout),
		ReadTimeout:       pos(n.cfg.ReadTimeout),
		WriteTimeout:      pos(n.cfg.WriteTimeout),
		IdleTimeout:       pos(n.cfg.IdleTimeout),
	}
	cut := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crowdpilot_client_timeouts_total",
		Help: "Client connections cut by a data-server timeout, by phase: header (first request header too slow), body (request body too slow), write (client reading the response too slowly), idle (keep-alive unused, or a later request header too slow).",
	}, []string{"phase"})
	n.cfg.Registry.MustRegister(cut)
	std.ConnState = func(c net.Conn, s http.ConnState) {
		if tc, ok := c.(*timedConn); ok {
			tc.state.Store(int32(s))
		}
	}
	guardFraming(std) // closes the connection after ambiguous framing (framing.go); h1 hands such requests to std
	if !n.cfg.LeanHTTP {
		n.data = std
		return &timedListener{Listener: n.dataLn, cut: cut}
	}
	idle := std.IdleTimeout
	if idle == 0 {
		idle = std.ReadTimeout // as net/http
	}
	n.data = &h1.Server{
		Handler:           handler,
		Fallback:          std,
		ReadHeaderTimeout: cmp.Or(std.ReadHeaderTimeout, std.ReadTimeout),
		IdleTimeout:       idle,
		WriteTimeout:      std.WriteTimeout,
		OnTimeout:         func(phase string) { cut.WithLabelValues(phase).Inc() },
		Wrap:              func(c net.Conn) net.Conn { return &timedConn{Conn: c, cut: cut} },
		Logger:            n.cfg.Logger,
	}
	return n.dataLn
}

// timedListener hands out timedConns.
type timedListener struct {
	net.Listener
	cut *prometheus.CounterVec
}

func (l *timedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &timedConn{Conn: c, cut: l.cut}, nil
}

// timedConn counts the first deadline its reads or writes hit, and
// follows the framing of the requests read from it.
type timedConn struct {
	net.Conn
	cut     *prometheus.CounterVec
	state   atomic.Int32 // http.ConnState, from the server's ConnState hook
	counted atomic.Bool
	frame   framing // the requests as the server frames them
}

func (c *timedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.frame.Feed(b[:n])
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The server marks a connection active only once it has read a
		// whole request header.
		phase := "body"
		switch http.ConnState(c.state.Load()) {
		case http.StateNew:
			phase = "header"
		case http.StateIdle:
			phase = "idle"
		}
		c.count(phase)
	}
	return n, err
}

func (c *timedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.count("write")
	}
	return n, err
}

func (c *timedConn) count(phase string) {
	if c.counted.CompareAndSwap(false, true) {
		c.cut.WithLabelValues(phase).Inc()
	}
}

// newPassTransport reaches the origin for pass-through requests: at most
// --origin-max-concurrency connections (a request beyond it waits for one,
// within its own timeouts), as the fill transport, so slow clients
// streaming bodies cannot open origin connections without bound.
func (n *Node) newPassTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: n.cfg.OriginTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:       int(n.cfg.OriginMaxConcurrency),
		MaxIdleConnsPerHost:   int(n.cfg.OriginMaxConcurrency),
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: n.cfg.OriginTimeout,
	}
}
