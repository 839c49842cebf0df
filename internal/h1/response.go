package h1

import (
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// maxBuffered is the body a response holds before it commits: a response
// up to it goes out with its header in one write and a Content-Length.
// Past it the header goes out (chunked, without a Content-Length).
const maxBuffered = 64 << 10

// keepBytes is the most a connection's buffer keeps between requests: an
// idle connection holds no more than a small answer's worth, however large
// its last answer was (10,000 idle connections after 60 KiB answers would
// otherwise pin over a gigabyte).
const keepBytes = 8 << 10

func keep(b []byte) []byte {
	if cap(b) > keepBytes {
		return nil
	}
	return b[:0]
}

// sniffLen is what http.DetectContentType reads.
const sniffLen = 512

// response is the ResponseWriter of one request read by h1. It follows
// net/http's rules: the header as it stood at WriteHeader, Date and a
// Content-Length (when the whole body is known) added, Content-Type sniffed
// when absent, no body for HEAD, 1xx, 204 and 304, chunked when streaming
// without a length, and the connection closed after a short body or when
// the request or the handler asks.
type response struct {
	c           *conn
	req         *http.Request
	header      http.Header // reused across requests, cleared each time
	status      int
	wroteHeader bool
	committed   bool // the head is on the wire
	chunked     bool
	head        bool  // a HEAD request: the body is counted, never sent
	clen        int64 // the handler's Content-Length, or -1
	written     int64
	hasDate     bool
	hasType     bool
	closeAfter  bool
	broken      bool   // a write failed: the connection is done
	fields      []byte // status line and header fields, from WriteHeader
	body        []byte // held until commit (HEAD: its first bytes, to sniff)
	sniffed     []byte // the write that commits, when nothing is held
	out         []byte
	keys        []string
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
)

func (w *response) reset(req *http.Request) {
	w.req = req
	if w.header == nil {
		w.header = make(http.Header, 16)
	} else {
		clear(w.header)
	}
	w.status, w.clen, w.written = 0, -1, 0
	w.wroteHeader, w.committed, w.chunked, w.hasDate, w.hasType, w.closeAfter, w.broken = false, false, false, false, false, false, false
	w.head = req.Method == http.MethodHead
	w.fields, w.body, w.out = w.fields[:0], keep(w.body), keep(w.out)
}

// idle lets go of what the connection should not hold while it waits.
func (w *response) idle() {
	w.req, w.sniffed = nil, nil
	w.body, w.out = keep(w.body), keep(w.out)
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.wroteHeader || w.committed {
		return // superfluous, as net/http (which logs it)
	}
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code)) // as net/http
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.informational(code)
		return
	}
	w.wroteHeader, w.status = true, code
	if cl := w.header.Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.clen = v
		}
	}
	w.fields = appendStatus(w.fields[:0], code)
	w.fields = w.appendFields(w.fields, code)
}

// appendFields appends the handler's header fields, sorted (as net/http
// writes them), without the ones framing decides.
func (w *response) appendFields(b []byte, code int) []byte {
	w.keys = w.keys[:0]
	for k := range w.header {
		w.keys = append(w.keys, k)
	}
	slices.Sort(w.keys)
	for _, k := range w.keys {
		vv := w.header[k]
		switch k {
		case "Content-Length", "Transfer-Encoding", "Trailer":
			continue // framing is decided at commit; trailers are not sent
		case "Connection":
			if httpguts.HeaderValuesContainsToken(vv, "close") {
				w.closeAfter = true
			}
			continue
		case "Date":
			w.hasDate = len(vv) > 0
		case "Content-Type":
			w.hasType = true // present, even empty: no sniffing
			if code == http.StatusNotModified {
				continue
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// appendValue writes v with CR and LF as spaces, as net/http does, so that
// no value can start a field of its own.
func appendValue(b []byte, v string) []byte {
	if !strings.ContainsAny(v, "\r\n") {
		return append(b, v...)
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		if ch == '\r' || ch == '\n' {
			ch = ' '
		}
		b = append(b, ch)
	}
	return b
}

func (w *response) informational(code int) {
	b := appendStatus(w.out[:0], code)
	b = w.appendFields(b, code)
	b = append(b, "\r\n"...)
	w.out = b
	w.send(b)
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.broken {
		return 0, errBroken
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.clen >= 0 && w.written+int64(len(p)) > w.clen {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.head { // counted, and the first bytes kept to sniff a type from
		if !w.committed && len(w.body) < sniffLen {
			w.body = append(w.body, p[:min(len(p), sniffLen-len(w.body))]...)
		}
		return len(p), nil
	}
	if !w.committed {
		if len(w.body)+len(p) <= maxBuffered {
			w.body = append(w.body, p...)
			return len(p), nil
		}
		if len(w.body) == 0 {
			w.sniffed = p // the type comes from the first bytes written
		}
		err := w.commit(false)
		w.sniffed = nil
		if err != nil {
			return 0, err
		}
	}
	if !w.chunked {
		if err := w.send(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == 0 {
		return 0, nil // an empty chunk would end the body
	}
	size := strconv.AppendInt(w.out[:0], int64(len(p)), 16)
	size = append(size, "\r\n"...)
	bufs := net.Buffers{size, p, crlf}
	w.c.setWriteDeadline(time.Now())
	if _, err := bufs.WriteTo(w.c.rw); err != nil {
		w.failed(err)
		return 0, err
	}
	return len(p), nil
}

var (
	crlf      = []byte("\r\n")
	errBroken = errors.New("h1: connection broken by an earlier write")
)

// Flush sends the head and what the body holds so far.
func (w *response) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed && !w.broken {
		_ = w.commit(false)
	}
}

// commit sends the head, with framing: the length when the body is whole
// (final), else chunked.
func (w *response) commit(final bool) error {
	w.committed = true
	b := append(w.out[:0], w.fields...)
	switch {
	case w.status == http.StatusNotModified || w.status == http.StatusNoContent:
	case w.clen >= 0:
		b = appendLength(b, w.clen)
	case final && !w.head:
		b = appendLength(b, int64(len(w.body)))
	case final && w.written > 0:
		b = appendLength(b, w.written) // HEAD: what the handler would have sent
	case !w.head && bodyAllowed(w.status):
		w.chunked = true
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	first := w.body
	if len(first) == 0 {
		first = w.sniffed
	}
	if !w.hasType && bodyAllowed(w.status) && len(first) > 0 {
		b = append(b, "Content-Type: "...)
		b = append(b, http.DetectContentType(first)...)
		b = append(b, "\r\n"...)
	}
	if !w.hasDate {
		b = append(b, w.c.s.dateLine(time.Now())...)
	}
	if w.req.Close || w.c.s.closing.Load() {
		w.closeAfter = true
	}
	if w.closeAfter {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	switch {
	case w.head: // the body held only to sniff from
	case w.chunked && len(w.body) > 0:
		b = strconv.AppendInt(b, int64(len(w.body)), 16)
		b = append(b, "\r\n"...)
		b = append(b, w.body...)
		b = append(b, "\r\n"...)
	default:
		b = append(b, w.body...)
	}
	w.out = b
	return w.send(b)
}

func appendLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

// finish completes the response after the handler returned and reports
// whether the connection may serve another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.broken {
		return false
	}
	if !w.committed {
		if w.commit(true) != nil {
			return false
		}
	} else if w.chunked {
		if w.send([]byte("0\r\n\r\n")) != nil {
			return false
		}
	}
	if w.clen >= 0 && w.written < w.clen && !w.head && bodyAllowed(w.status) {
		return false // the client waits for bytes that will not come: close
	}
	return !w.closeAfter
}

func (w *response) send(b []byte) error {
	w.c.setWriteDeadline(time.Now())
	if _, err := w.c.write(b); err != nil {
		w.failed(err)
		return err
	}
	return nil
}

func (w *response) failed(err error) {
	if !w.broken && errors.Is(err, os.ErrDeadlineExceeded) {
		w.c.timedOut("write")
	}
	w.broken = true
}

func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// appendStatus appends the status line.
func appendStatus(b []byte, code int) []byte {
	if code == http.StatusOK {
		return append(b, "HTTP/1.1 200 OK\r\n"...)
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}
