package node

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/httpcache"
	"github.com/crowdpilot/crowdpilot/internal/route"
)

// FuzzHopProof: verify never panics, accepts a proof for exactly the
// method, key and time window it was made for, and nothing else.
func FuzzHopProof(f *testing.F) {
	p := newHopProver("secret", nil, nil)
	at := time.UnixMilli(1_800_000_000_000)
	f.Add("GET", "h/a?b=1", p.proof("GET", "h/a?b=1", at), int64(0))
	f.Add("HEAD", "h/", "v2.1800000000000.00", int64(5000))
	f.Add("GET", "h/x", "v2..", int64(-1))
	f.Add("GET", "h/x", "v2.99999999999999999999.ab", int64(0))
	f.Fuzz(func(t *testing.T, method, key, value string, skewMS int64) {
		now := at.Add(time.Duration(skewMS%(1<<40)) * time.Millisecond)
		ok := p.verify(method, key, value, now)
		own := p.proof(method, key, at)
		if ok && value != own {
			// Another timestamp in the window is fine; anything else is a forgery.
			if !strings.HasPrefix(value, hopVersion+".") || p.mac(method, key, strings.Split(value, ".")[1]) != strings.Split(value, ".")[2] {
				t.Fatalf("verify(%q, %q, %q) accepted a value that is not a proof", method, key, value)
			}
		}
		d := now.Sub(at)
		if inWindow := d <= hopWindow && d >= -hopWindow; p.verify(method, key, own, now) != inWindow {
			t.Fatalf("own proof at skew %v: verify = %v, want %v", d, !inWindow, inWindow)
		}
		if p.verify(method+"x", key, own, at) || p.verify(method, key+"x", own, at) {
			t.Fatal("a proof verified for another method or key")
		}
	})
}

// FuzzForwardWhatIsKeyed: for any request target a client can send, the
// target a node forwards (keyedTarget) has the same key, carries no dot
// segment, and is stable: forwarding it again changes nothing.
func FuzzForwardWhatIsKeyed(f *testing.F) {
	for _, s := range []string{"/app/admin/../public", "/a/%2e%2e/b", "/a%2Fb?x=2&x=1", "/%7e/a//b/./c?&a&b=", "/q?a=%zz", "http://h/x?y", "/a/..%2f..%2fb", "/caf%c3%a9;p?q=a+b"} {
		f.Add(s)
	}
	parse := func(target string) (*http.Request, bool) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: h\r\n\r\n")))
		return r, err == nil
	}
	f.Fuzz(func(t *testing.T, target string) {
		if strings.ContainsAny(target, " \r\n") {
			return
		}
		r, ok := parse(target)
		if !ok {
			return
		}
		r.Host = "h"
		base, err := httpcache.BaseKey(r)
		if err != nil {
			return
		}
		keyedTarget(r, base)
		sent := r.URL.RequestURI()
		r2, ok := parse(sent)
		if !ok {
			t.Fatalf("target %q forwarded as %q, which does not parse", target, sent)
		}
		r2.Host = "h"
		base2, err := httpcache.BaseKey(r2)
		if err != nil || base2 != base {
			t.Fatalf("target %q keyed %q, forwarded as %q keyed %q (%v)", target, base, sent, base2, err)
		}
		p := r2.URL.EscapedPath()
		for _, seg := range strings.Split(p, "/") {
			if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") {
				t.Fatalf("target %q forwarded with a dot segment: %q", target, sent)
			}
		}
		keyedTarget(r2, base2)
		if again := r2.URL.RequestURI(); again != sent {
			t.Fatalf("forwarding %q again gives %q", sent, again)
		}
	})
}

// fuzzOrigin is the origin the fuzz targets' nodes key for.
var fuzzOrigin = &url.URL{Scheme: "http", Host: "origin.test:8080"}

// readFuzzRequest parses raw as a server does, or reports false.
func readFuzzRequest(raw string) (*http.Request, bool) {
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	return r, err == nil
}

// FuzzRequestKey: for any request a client can send (request line and
// header block), the key never panics and fails only with ErrBadTarget;
// it names the origin's host whatever Host or absolute-form authority the
// client sent (no poisoning through Host); and what is forwarded
// (keyedTarget) keys to the same key again.
func FuzzRequestKey(f *testing.F) {
	for _, s := range []string{
		"GET /a?b=2&b=1&a HTTP/1.1\r\nHost: evil.example\r\n\r\n",
		"GET http://evil.example/app/admin/../public HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /a%2Fb/%2e%2e/c?q=%7e HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: evil\r\n\r\n",
		"GET //a//b/./c/ HTTP/1.0\r\n\r\n",
		"GET /caf%C3%A9;p=1?x=a+b&y=%20 HTTP/1.1\r\nHost: [::1]:80\r\nVary: Accept\r\nAccept: */*\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add(s)
	}
	n := &Node{origin: fuzzOrigin}
	f.Fuzz(func(t *testing.T, raw string) {
		r, ok := readFuzzRequest(raw)
		if !ok {
			return
		}
		base, err := n.baseKey(r)
		if err != nil {
			if !errors.Is(err, httpcache.ErrBadTarget) {
				t.Fatalf("%q: key error %v does not wrap ErrBadTarget", raw, err)
			}
			return
		}
		if !strings.HasPrefix(base, fuzzOrigin.Host+"/") {
			t.Fatalf("%q keyed %q: not under the origin's host", raw, base)
		}
		other := r.Clone(r.Context())
		other.Host, other.URL.Host = "another.example", ""
		if k, err := n.baseKey(other); err != nil || k != base {
			t.Fatalf("%q: the key depends on the client's Host: %q vs %q (%v)", raw, base, k, err)
		}
		keyedTarget(r, base)
		sent := r.URL.RequestURI()
		r2, ok := readFuzzRequest(r.Method + " " + sent + " HTTP/1.1\r\nHost: h\r\n\r\n")
		if !ok {
			t.Fatalf("%q forwarded as %q, which does not parse", raw, sent)
		}
		if k, err := n.baseKey(r2); err != nil || k != base {
			t.Fatalf("%q keyed %q, forwarded as %q keyed %q (%v)", raw, base, sent, k, err)
		}
		if vk := httpcache.VariantKey(base, []string{"Accept", "Accept-Encoding"}, r.Header); !strings.HasPrefix(vk, base+"#") {
			t.Fatalf("variant key %q of %q", vk, base)
		}
	})
}

// FuzzInternalHeaders: for any request carrying any internal headers
// (hop proof, purge revision, peek), admitHop never panics; it admits only
// a single, exact proof for the request's own method and key, made within
// the window; and a request it does not admit keeps no internal header.
func FuzzInternalHeaders(f *testing.F) {
	at := time.UnixMilli(1_800_000_000_000)
	n := &Node{origin: fuzzOrigin, hop: newHopProver("secret", func() time.Time { return at }, nil)}
	proof := func(method, target string) string {
		r, _ := readFuzzRequest(method + " " + target + " HTTP/1.1\r\nHost: h\r\n\r\n")
		base, _ := n.baseKey(r)
		return n.hop.proof(method, base, at)
	}
	for _, s := range []string{
		"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Crowdpilot-Hop: " + proof("GET", "/a?b=1") + "\r\nX-Crowdpilot-Purge-Rev: 12\r\n\r\n",
		"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Crowdpilot-Hop: " + proof("GET", "/a?b=2") + "\r\n\r\n",
		"HEAD /a HTTP/1.1\r\nHost: x\r\nX-Crowdpilot-Hop: " + proof("GET", "/a") + "\r\nX-Crowdpilot-Peek: 1\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nX-Crowdpilot-Hop: " + proof("GET", "/a") + "\r\nx-crowdpilot-hop: v2.1.00\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nX-Crowdpilot-Hop: v2.1800000000000.zz\r\nX-CROWDPILOT-DEBUG: 1\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\nX-Crowdpilot-Hop: n1\r\nX-Crowdpilot-Purge-Rev: -9223372036854775809\r\n\r\n",
	} {
		f.Add(s)
	}
	// The target is not vacuous: a real proof is admitted.
	if r, _ := readFuzzRequest("GET /a HTTP/1.1\r\nHost: x\r\nX-Crowdpilot-Hop: " + proof("GET", "/a") + "\r\n\r\n"); !n.admitHop(r, fuzzOrigin.Host+"/a") {
		f.Fatal("a valid proof is not admitted")
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r, ok := readFuzzRequest(raw)
		if !ok {
			return
		}
		base, err := n.baseKey(r)
		if err != nil {
			return
		}
		hops := append([]string(nil), r.Header[route.HopHeader]...)
		_ = parseRev(r.Header.Get(purgeRevHeader)) // never panics
		if n.admitHop(r, base) {
			if len(hops) != 1 {
				t.Fatalf("%q admitted with %d hop values", raw, len(hops))
			}
			ts, _, _ := strings.Cut(strings.TrimPrefix(hops[0], hopVersion+"."), ".")
			if hops[0] != hopVersion+"."+ts+"."+n.hop.mac(r.Method, base, ts) {
				t.Fatalf("%q admitted a hop value that is not a proof: %q", raw, hops[0])
			}
			for _, m := range []string{"POST", r.Method + "X"} {
				if n.hop.verify(m, base, hops[0], at) {
					t.Fatalf("%q: its proof also admits method %s", raw, m)
				}
			}
			if n.hop.verify(r.Method, base+"x", hops[0], at) || n.hop.verify(r.Method, base, hops[0], at.Add(hopWindow+time.Millisecond)) {
				t.Fatalf("%q: its proof admits another key, or after the window", raw)
			}
			return
		}
		for k := range r.Header {
			if route.IsInternalHeader(k) {
				t.Fatalf("%q not admitted but keeps internal header %q", raw, k)
			}
		}
	})
}

// FuzzFraming checks the connection scanner (framing.go) against Go's own
// request parser, which the data server uses: for any byte stream, read
// requests and their bodies as the server does until it would stop; if a
// request it read had ambiguous framing (Content-Length and
// Transfer-Encoding, or Transfer-Encoding on HTTP/1.0), the scanner must
// have marked the connection for closing at that request or before, never
// later. (Marking earlier is allowed: it only closes a connection.)
func FuzzFraming(f *testing.F) {
	for _, c := range framingCases {
		f.Add(c.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var fr framing
		fr.Feed([]byte(raw))
		if bad := serverBad(raw); bad != 0 && (fr.Bad() == 0 || fr.Bad() > bad) {
			t.Fatalf("%q: request %d has ambiguous framing; the scanner marks %d", raw, bad, fr.Bad())
		}
	})
}

// serverBad reads raw as Go's server would and returns the 1-based index
// of the first request with ambiguous framing among those it reads, or 0.
func serverBad(raw string) int64 {
	src := strings.NewReader(raw)
	br := bufio.NewReader(src)
	offset := func() int { return len(raw) - src.Len() - br.Buffered() }
	lastPOST := false
	for k := int64(1); ; k++ {
		if lastPOST {
			// The server skips up to 4 CR or LF after a POST (RFC 7230 §3.5).
			peek, _ := br.Peek(4)
			i := 0
			for i < len(peek) && (peek[i] == '\r' || peek[i] == '\n') {
				i++
			}
			br.Discard(i)
		}
		start := offset()
		r, err := http.ReadRequest(br)
		if err != nil {
			return 0
		}
		// The header block as sent: Go has dropped Content-Length from r.
		tp := textproto.NewReader(bufio.NewReader(strings.NewReader(raw[start:offset()])))
		tp.ReadLine()
		h, _ := tp.ReadMIMEHeader()
		_, te := h["Transfer-Encoding"]
		_, cl := h["Content-Length"]
		if te && (cl || r.ProtoMajor == 1 && r.ProtoMinor == 0) {
			return k
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil || r.Close {
			return 0 // the server closes the connection here
		}
		lastPOST = r.Method == http.MethodPost
	}
}
