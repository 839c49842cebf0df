package h1

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// parse reads a request head h1 takes: GET or HEAD, an origin-form target,
// HTTP/1.1, one valid Host, header lines of tokens and plain values, and
// nothing that announces a body, an upgrade or a 100-continue. Anything
// else (ok false) is left to Fallback, which answers it as net/http does,
// malformed requests included. What it builds is what net/http's
// readRequest would, by value: run gives the handler a copy carrying the
// request's context, and this one need not reach the heap.
func (c *conn) parse(head []byte) (req http.Request, ok bool) {
	// The request line ends at the first LF (scanHead saw a CR before
	// each): a bare CR inside it is the line's, and makes it one h1 does
	// not read (net/http refuses it), never the end of it.
	lineEnd := bytes.IndexByte(head, '\n') - 1
	method, target, ok := requestLine(head[:lineEnd])
	if !ok {
		return req, false
	}
	hs := string(head) // one allocation; every string below is a slice of it
	rest := hs[lineEnd+2 : len(hs)-2]
	n := strings.Count(rest, "\r\n")
	h := make(http.Header, n)
	vals := make([]string, n) // one backing array for the usual one value per field
	for i := 0; rest != ""; i++ {
		line, more, _ := strings.Cut(rest, "\r\n")
		rest = more
		name, value, ok := headerLine(line)
		if !ok {
			return req, false
		}
		key := textproto.CanonicalMIMEHeaderKey(name) // name itself when already canonical
		switch key {
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Http2-Settings":
			return req, false
		case "Connection":
			if !plainConnection(value) {
				return req, false
			}
		}
		if old, ok := h[key]; ok {
			h[key] = append(old, value)
			continue
		}
		vals[i] = value
		h[key] = vals[i : i+1 : i+1]
	}
	hosts := h["Host"]
	if len(hosts) != 1 || !httpguts.ValidHostHeader(hosts[0]) {
		return req, false
	}
	u, err := requestURL(hs[len(method)+1 : len(method)+1+len(target)])
	if err != nil {
		return req, false
	}
	delete(h, "Host")
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"} // as net/http's fixPragmaCacheControl
		}
	}
	return http.Request{
		Method:     hs[:len(method)],
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       hosts[0],
		Close:      httpguts.HeaderValuesContainsToken(h["Connection"], "close"),
		RemoteAddr: c.remote,
		RequestURI: hs[len(method)+1 : len(method)+1+len(target)],
	}, true
}

// requestURL is url.ParseRequestURI(target) for an origin-form target
// (requestLine's: a "/", then printable ASCII). A path of only the bytes
// that url escapes nowhere in a path, with an optional query, is what
// ParseRequestURI would return field for field, without its parse (5% of
// a node's CPU in a crowd); anything else (escapes, other characters) is
// parsed.
func requestURL(target string) (*url.URL, error) {
	path, query, hasQuery := strings.Cut(target, "?")
	for i := 0; i < len(path); i++ {
		if !plainPathByte(path[i]) {
			return url.ParseRequestURI(target)
		}
	}
	if !hasQuery {
		return &url.URL{Path: path}, nil
	}
	if query == "" || strings.Contains(query, "?") {
		return url.ParseRequestURI(target) // ForceQuery, and "a??" (which url reads its own way)
	}
	return &url.URL{Path: path, RawQuery: query}, nil
}

// plainPathByte: bytes url.URL keeps as they are in a path (its
// shouldEscape(c, encodePath) is false), so Path needs no RawPath.
func plainPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '~', '$', '&', '+', ',', '/', ':', ';', '=', '@':
		return true
	}
	return false
}

// requestLine splits "GET /path HTTP/1.1".
func requestLine(b []byte) (method, target []byte, ok bool) {
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		return nil, nil, false
	}
	method = b[:sp]
	if string(method) != http.MethodGet && string(method) != http.MethodHead {
		return nil, nil, false
	}
	rest := b[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 || string(rest[sp+1:]) != "HTTP/1.1" {
		return nil, nil, false
	}
	target = rest[:sp]
	if target[0] != '/' {
		return nil, nil, false // absolute-form, asterisk-form: net/http's to decide
	}
	for _, ch := range target {
		if ch <= ' ' || ch >= 0x7f {
			return nil, nil, false
		}
	}
	return method, target, true
}

// headerLine splits "Name: value", value without surrounding blanks. The
// name must be a token right before the colon, the value free of control
// characters (RFC 9110 §5.5); anything else is net/http's to refuse.
func headerLine(line string) (name, value string, ok bool) {
	colon := strings.IndexByte(line, ':')
	if colon <= 0 {
		return "", "", false
	}
	name = line[:colon]
	for i := 0; i < len(name); i++ {
		if !httpguts.IsTokenRune(rune(name[i])) {
			return "", "", false
		}
	}
	value = strings.Trim(line[colon+1:], " \t")
	for i := 0; i < len(value); i++ {
		if ch := value[i]; ch < ' ' && ch != '\t' || ch == 0x7f {
			return "", "", false
		}
	}
	return name, value, true
}

// plainConnection reports whether a Connection field holds only
// keep-alive and close.
func plainConnection(v string) bool {
	for tok := range strings.SplitSeq(v, ",") {
		tok = strings.TrimSpace(tok)
		if !strings.EqualFold(tok, "keep-alive") && !strings.EqualFold(tok, "close") {
			return false
		}
	}
	return true
}
