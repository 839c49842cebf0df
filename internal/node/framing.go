package node

// Ambiguous request framing (issue 10, weak items; RFC 9112 §6.1). A
// request with both Transfer-Encoding and Content-Length, or with
// Transfer-Encoding on HTTP/1.0, may be a smuggling attempt: a front end
// that framed it by the other field sees a different next request than we
// do. Go's server reads such a request as chunked and drops Content-Length
// before the handler sees it, so the connection is watched instead: a
// scanner follows the bytes the server reads, request by request, the way
// the server frames them, and marks the first header block whose framing
// is ambiguous. The handler closes the connection after answering that
// request (Connection: close); nothing more is read from it.

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// framingLine is how much of each line the scanner keeps: enough for a
// field name and a Content-Length, or a chunk size. A longer Content-Length
// or chunk-size line is not followed: the connection is closed after the
// request it belongs to.
const framingLine = 64

// Scanner states.
const (
	fsStart     = iota // before a request line (leading CR and LF skipped)
	fsHeader           // in the header block
	fsBody             // skipping a Content-Length body
	fsChunkSize        // reading a chunk-size line
	fsChunkData        // skipping chunk data
	fsChunkEnd         // the CRLF after chunk data
	fsTrailer          // trailer lines after the last chunk
	fsDone             // stopped: the connection closes after request bad
)

// framing follows the requests on one client connection. Feed is called
// with every byte the server reads, in order; Bad is read by the handler.
type framing struct {
	mu     sync.Mutex // guards the fields below bad; the server reads from one goroutine at a time, this makes it plain
	bad    atomic.Int64
	state  uint8
	blocks int64 // header blocks begun
	// The current line: its first framingLine bytes, its length, and its
	// last three bytes (the request line's protocol version ends there).
	line [framingLine]byte
	n    int
	tail [3]byte
	// The current header block.
	http10, te, cl, clBad bool
	clVal                 int64
	remain                int64 // body or chunk bytes left to skip
	end                   int   // bytes of a chunk's CRLF seen
}

// Bad is the 1-based index of the first request on the connection after
// whose response the connection must be closed, 0 if none.
func (f *framing) Bad() int64 { return f.bad.Load() }

// Closing reports whether the connection must be closed after the response
// being written now. The server may have read requests ahead (pipelining),
// so this is true from the first response after the scanner has seen the
// ambiguous request, which may be the response to an earlier, clean one:
// closing early only makes a pipelining client retry; closing late could
// serve a smuggled request.
func (f *framing) Closing() bool { return f.bad.Load() != 0 }

// Feed scans b, the next bytes read from the connection.
func (f *framing) Feed(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(b) > 0 && f.state != fsDone {
		switch f.state {
		case fsBody, fsChunkData:
			k := int(min(int64(len(b)), f.remain))
			b = b[k:]
			if f.remain -= int64(k); f.remain == 0 {
				if f.state == fsBody {
					f.state = fsStart
				} else {
					f.state, f.end = fsChunkEnd, 0
				}
			}
		case fsChunkEnd:
			if b[0] != "\r\n"[f.end] {
				f.stop() // Go's server rejects it too
				return
			}
			b = b[1:]
			if f.end++; f.end == 2 {
				f.state = fsChunkSize
			}
		case fsStart:
			if f.n == 0 && (b[0] == '\r' || b[0] == '\n') {
				b = b[1:]
				continue
			}
			fallthrough
		default:
			i := bytes.IndexByte(b, '\n')
			switch {
			case i < 0:
				f.take(b)
				return
			case f.n == 0:
				f.endLine(b[:i]) // the whole line is here: no copy
			default:
				f.take(b[:i])
				f.endLine(nil)
			}
			b = b[i+1:]
		}
	}
}

// take appends to the current line.
func (f *framing) take(b []byte) {
	if len(b) == 0 {
		return
	}
	copy(f.line[min(f.n, framingLine):], b)
	if len(b) >= len(f.tail) {
		copy(f.tail[:], b[len(b)-len(f.tail):])
	} else {
		k := copy(f.tail[:], f.tail[len(b):])
		copy(f.tail[k:], b)
	}
	f.n += len(b)
}

// endLine handles a whole line without its LF: line, or else the one
// take gathered.
func (f *framing) endLine(line []byte) {
	n, kept, tail := f.n, f.line[:min(f.n, framingLine)], f.tail
	if line != nil || n == 0 {
		n, kept = len(line), line[:min(len(line), framingLine)]
		tail = [3]byte{}
		copy(tail[max(0, 3-len(line)):], line[max(0, len(line)-3):])
	}
	cr := n > 0 && tail[2] == '\r'
	if cr {
		n--
		kept = kept[:min(len(kept), n)]
		tail = [3]byte{0, tail[0], tail[1]}
	}
	f.n, f.tail = 0, [3]byte{}
	switch f.state {
	case fsStart: // the request line
		f.blocks++
		f.state = fsHeader
		f.te, f.cl, f.clBad, f.clVal = false, false, false, 0
		// "GET / HTTP/1.0": Go's server ignores Transfer-Encoding then,
		// and every other version but 1.1 it refuses.
		f.http10 = n >= 2 && tail[1] == '.' && tail[2] == '0'
	case fsHeader:
		if n == 0 {
			f.endHeader()
			return
		}
		if kept[0] == ' ' || kept[0] == '\t' {
			return // a continuation of the field before
		}
		name, value, ok := bytes.Cut(kept, []byte(":"))
		switch {
		case !ok:
		case equalFoldASCII(name, "transfer-encoding"):
			f.te = true
		case equalFoldASCII(name, "content-length"):
			v, good := parseLength(value)
			if n > framingLine || !good || f.cl && v != f.clVal {
				f.clBad = true
			}
			f.cl, f.clVal = true, v
		}
	case fsChunkSize:
		if !cr || n > framingLine {
			f.stop() // bare LF (Go rejects it) or a line too long to follow
			return
		}
		size, ok := parseChunkSize(kept)
		if !ok {
			f.stop()
			return
		}
		if size == 0 {
			f.state = fsTrailer
		} else {
			f.state, f.remain = fsChunkData, size
		}
	case fsTrailer:
		if n == 0 {
			f.state = fsStart
		}
	}
}

// endHeader decides the framing of the body after a header block.
func (f *framing) endHeader() {
	switch {
	case f.te && (f.cl || f.http10):
		f.stop() // ambiguous: answered, then closed
	case f.te:
		f.state = fsChunkSize
	case f.clBad:
		f.stop() // a length we cannot follow (or Go refuses)
	case f.cl && f.clVal > 0:
		f.state, f.remain = fsBody, f.clVal
	default:
		f.state = fsStart
	}
}

// stop ends scanning: the request whose header block was begun last is
// answered and the connection is closed after it.
func (f *framing) stop() {
	f.state = fsDone
	if f.bad.Load() == 0 {
		f.bad.Store(max(f.blocks, 1))
	}
}

// parseLength parses a Content-Length value as Go's server does: digits
// only, between optional whitespace.
func parseLength(v []byte) (int64, bool) {
	v = bytes.Trim(v, " \t")
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseChunkSize parses a chunk-size line (without CRLF): hex digits, then
// optional whitespace and extensions.
func parseChunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | int64(c)
	}
	return n, true
}

func equalFoldASCII(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// connKey finds the client connection from a request's context.
type connKey struct{}

// guardFraming makes the data server close a connection after answering a
// request with ambiguous framing: each connection (a timedConn) is put in
// its requests' context, so the handler can ask it (framing.Closing).
func guardFraming(srv *http.Server) {
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if tc, ok := c.(*timedConn); ok {
			return context.WithValue(ctx, connKey{}, tc)
		}
		return ctx
	}
	next := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tc, ok := r.Context().Value(connKey{}).(*timedConn); ok && tc.frame.Closing() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}
