package node

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crowdpilot/crowdpilot/internal/httpcache"
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
