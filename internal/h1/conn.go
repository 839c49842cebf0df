package h1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// readBufSize bounds a request head read here; a longer one (big cookies)
// goes to Fallback with the connection.
const readBufSize = 4096

// conn is one client connection while h1 serves it.
type conn struct {
	s      *Server
	rw     net.Conn
	raw    *rawIO // rw's socket for raw reads and writes (rawio_linux.go); nil: rw's methods
	remote string
	state  atomic.Int32

	buf  []byte // read buffer; buf[r:w] is read and not yet used
	r, w int

	served int       // requests answered on this connection
	rdl    time.Time // the read deadline set on rw (zero: none)
	wdl    time.Time // the write deadline set on rw
	resp   response  // reused per request
}

func newConn(s *Server, rw net.Conn) *conn {
	c := &conn{buf: make([]byte, readBufSize)}
	c.resp.c = c
	c.open(s, rw)
	return c
}

// open readies c, new or recycled, for the connection rw. A recycled conn
// keeps its read buffer and its response's buffers; nothing of its last
// connection's requests remains (buf[r:w] is empty, and the response is
// reset before each request, as on a kept-alive connection).
func (c *conn) open(s *Server, rw net.Conn) {
	c.s, c.rw, c.raw, c.remote = s, rw, newRawIO(rw), rw.RemoteAddr().String()
	c.state.Store(stateIdle)
	c.r, c.w, c.served = 0, 0, 0
	c.rdl, c.wdl = time.Time{}, time.Time{}
}

// release drops c's hold on its last connection before it waits for the
// next one in the server's free list.
func (c *conn) release() {
	c.rw, c.raw, c.remote = nil, nil, ""
	c.resp.idle()
}

func (c *conn) serve() {
	handed := false
	defer func() {
		if !handed {
			c.rw.Close()
		}
		c.s.forget(c)
	}()
	accepted := time.Now()
	for {
		head, err := c.readHead(accepted)
		if err != nil {
			return
		}
		if head == nil { // not one h1 reads: Fallback reads it from its first byte
			handed = c.handOff()
			return
		}
		if !c.activate() {
			return // Shutdown closed it under us
		}
		req, ok := c.parse(head)
		if !ok {
			handed = c.handOff()
			return
		}
		c.r += len(head)
		if !c.run(&req) || c.s.closing.Load() {
			return
		}
		c.served++
		if c.r == c.w {
			c.r, c.w = 0, 0
		}
		if !c.state.CompareAndSwap(stateActive, stateIdle) {
			return // closed by Shutdown or Close meanwhile
		}
	}
}

// growStack grows a new worker's goroutine stack in one step, while it
// is nearly empty and cheap to copy: serving a request needs more than a
// goroutine starts with, and growing it there, in steps, copies the deep
// frames of the handler's call each time (a tenth of the CPU of a crowd of
// new connections, by profile). The stack is what the first request would
// have grown it to anyway; the GC shrinks it again if it stays idle.
//
//go:noinline
func growStack() {
	var b [growStackBytes]byte
	holdStack(b[:])
}

// growStackBytes is the frame growStack puts on the stack: with what is
// below it, the stack doubles to 16 KiB.
const growStackBytes = 8 << 10

//go:noinline
func holdStack([]byte) {}

// readHead returns the next request head (through its blank line) at
// c.buf[c.r:], reading as needed. It returns nil and no error when the head
// is not one h1 reads (too long, bare LF line ends): Fallback gets it.
func (c *conn) readHead(accepted time.Time) ([]byte, error) {
	var started time.Time // the first byte of this request
	for {
		if head, ok, bad := scanHead(c.buf[c.r:c.w]); ok {
			return head, nil
		} else if bad {
			return nil, nil
		}
		if c.r > 0 && c.w == len(c.buf) { // make room: the head so far to the front
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if c.w == len(c.buf) {
			return nil, nil // a head longer than the buffer
		}
		now := time.Now()
		switch {
		case c.served == 0:
			c.setReadDeadline(accepted, c.s.ReadHeaderTimeout)
		case c.r == c.w:
			c.setReadDeadline(now, c.s.IdleTimeout)
		default:
			if started.IsZero() {
				started = now
			}
			c.setReadDeadline(started, c.s.ReadHeaderTimeout)
		}
		n, err := c.read(c.buf[c.w:])
		c.w += n
		if n > 0 && !c.activate() {
			return nil, net.ErrClosed // Shutdown closed it while it was idle
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				phase := "idle" // as net/http's states: new, then idle between requests
				if c.served == 0 {
					phase = "header"
				}
				c.timedOut(phase)
			}
			return nil, err
		}
		if started.IsZero() && c.r < c.w {
			started = now
		}
	}
}

func (c *conn) read(b []byte) (int, error) {
	if c.raw != nil {
		return c.raw.read(b)
	}
	return c.rw.Read(b)
}

func (c *conn) write(b []byte) (int, error) {
	if c.raw != nil {
		return c.raw.write(b)
	}
	return c.rw.Write(b)
}

// activate marks the connection active: a request of it is being read or
// served, so Shutdown lets it finish (as net/http, from its first byte).
func (c *conn) activate() bool {
	return c.state.CompareAndSwap(stateIdle, stateActive) || c.state.Load() == stateActive
}

// scanHead finds a complete head at the start of b. bad: b holds a line
// that does not end in CRLF, or starts with an empty line.
func scanHead(b []byte) (head []byte, ok, bad bool) {
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return nil, false, false
		}
		end := i + j
		if end == 0 || b[end-1] != '\r' {
			return nil, false, true
		}
		if end-1 == i { // an empty line: the head ends here
			if i == 0 {
				return nil, false, true
			}
			return b[:end+1], true, false
		}
		i = end + 1
	}
}

// slack is how much earlier than asked a deadline may be left in place,
// so that a busy connection resets its deadlines about once a second, not
// once a request.
func slack(d time.Duration) time.Duration { return min(time.Second, d/10) }

func (c *conn) setReadDeadline(from time.Time, d time.Duration) {
	var want time.Time
	if d > 0 {
		want = from.Add(d)
	}
	if want.Equal(c.rdl) || !want.IsZero() && !c.rdl.IsZero() && !c.rdl.After(want) && want.Sub(c.rdl) < slack(d) {
		return
	}
	c.rdl = want
	c.rw.SetReadDeadline(want)
}

func (c *conn) setWriteDeadline(now time.Time) {
	d := c.s.WriteTimeout
	var want time.Time
	if d > 0 {
		want = now.Add(d)
	}
	if want.Equal(c.wdl) || !want.IsZero() && !c.wdl.IsZero() && !c.wdl.After(want) && want.Sub(c.wdl) < slack(d) {
		return
	}
	c.wdl = want
	c.rw.SetWriteDeadline(want)
}

func (c *conn) timedOut(phase string) {
	if c.s.OnTimeout != nil {
		c.s.OnTimeout(phase)
	}
}

// handOff gives the connection, and the bytes not yet used, to Fallback.
func (c *conn) handOff() bool {
	if !c.state.CompareAndSwap(stateIdle, stateClosed) && !c.state.CompareAndSwap(stateActive, stateClosed) {
		return false // closing
	}
	c.rw.SetDeadline(time.Time{}) // Fallback sets its own
	pending := bytes.Clone(c.buf[c.r:c.w])
	c.s.handOff(&prefixConn{Conn: c.rw, pending: pending})
	return true
}

// run answers one request; false means the connection is done.
func (c *conn) run(parsed *http.Request) (keep bool) {
	// As in net/http, the request's context ends when ServeHTTP returns.
	// Its parent is not the connection's (nothing here watches the
	// connection while a handler runs, see the package doc): a child of
	// Background costs one small allocation, a child of a cancelable
	// parent a lock and a map entry too.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := parsed.WithContext(ctx) // the one copy that reaches the heap
	w := &c.resp
	w.reset(req)
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				c.s.logger().Error("h1: panic serving request", "remote", c.remote, "uri", req.RequestURI,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
			keep = false
		}
	}()
	defer w.idle()
	c.s.Handler.ServeHTTP(w, req)
	return w.finish() && !req.Close
}
