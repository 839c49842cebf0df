package httpcache

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// newTargetRequest builds a request for host and an origin-form target, as
// net/http's server would.
func newTargetRequest(t testing.TB, host, target string) *http.Request {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatalf("ParseRequestURI(%q): %v", target, err)
	}
	return &http.Request{Method: http.MethodGet, Host: host, URL: u, RequestURI: target}
}

func TestBaseKey(t *testing.T) {
	tests := []struct {
		host, target string
		want         string
	}{
		{"example.com", "/", "example.com/"},
		{"Example.COM", "/A/b", "example.com/A/b"},
		{"example.com:80", "/x", "example.com/x"},
		{"example.com:443", "/x", "example.com/x"},
		{"example.com:8080", "/x", "example.com:8080/x"},
		{"[::1]:80", "/x", "[::1]/x"},
		{"a:80:80", "/x", "a:80:80/x"},
		{"example.com", "/a/./b/../c", "example.com/a/c"},
		{"example.com", "/a/b/..", "example.com/a/"},
		{"example.com", "/a/b/.", "example.com/a/b/"},
		{"example.com", "/../../x", "example.com/x"},
		{"example.com", "/%2E%2E/x", "example.com/x"},
		{"example.com", "/a//b", "example.com/a//b"},
		{"example.com", "/%7euser/%41%62c", "example.com/~user/Abc"},
		{"example.com", "/a%2fb", "example.com/a%2Fb"},
		{"example.com", "/a%2Fb", "example.com/a%2Fb"},
		{"example.com", "/a b", "example.com/a%20b"},
		{"example.com", "/a!b", "example.com/a!b"},
		{"example.com", "/a%21b", "example.com/a%21b"},
		{"example.com", "/caf%c3%a9", "example.com/caf%C3%A9"},
		{"example.com", "/x?b=2&a=1", "example.com/x?a=1&b=2"},
		{"example.com", "/x?a=2&a=1&a=1", "example.com/x?a=2&a=1&a=1"},
		{"example.com", "/x?b=1&a=2&c&a=1", "example.com/x?a=2&a=1&b=1&c"},
		{"example.com", "/x?b&a=&a", "example.com/x?a=&a&b"},
		{"example.com", "/x?&&", "example.com/x"},
		{"example.com", "/x?", "example.com/x"},
		{"example.com", "/x?q=%7e%2f+%20", "example.com/x?q=~%2F+%20"},
		{"example.com", "/x?q=a b", "example.com/x?q=a%20b"},
		{"example.com", "/x?q=%0a", "example.com/x?q=%0A"},
		{"example.com", "/x?q=a=b", "example.com/x?q=a=b"},
		{"", "/x", "/x"},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.target, func(t *testing.T) {
			got, err := BaseKey(newTargetRequest(t, tt.host, tt.target))
			if err != nil || got != tt.want {
				t.Errorf("BaseKey(%q, %q) = %q, %v; want %q", tt.host, tt.target, got, err, tt.want)
			}
		})
	}
}

func TestBaseKeyEquivalence(t *testing.T) {
	// Targets in one group must share a key.
	groups := [][]string{
		{"/a/b?x=1&y=2", "/a/./b?y=2&x=1", "/a/c/../b?x=1&y=2", "/%61/%62?%78=1&y=%32"},
		{"/~a", "/%7Ea", "/%7ea"},
		{"/a%3F", "/a%3f"},
	}
	for _, g := range groups {
		want, err := BaseKey(newTargetRequest(t, "h", g[0]))
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range g[1:] {
			if got, err := BaseKey(newTargetRequest(t, "h", target)); err != nil || got != want {
				t.Errorf("BaseKey(%q) = %q, %v; want %q (as %q)", target, got, err, want, g[0])
			}
		}
	}
}

func TestBaseKeyHandBuiltURL(t *testing.T) {
	r := &http.Request{Method: http.MethodHead, URL: &url.URL{Host: "Example.com", Path: "/a b/?", RawQuery: "z=1&a"}}
	got, err := BaseKey(r)
	if want := "example.com/a%20b/%3F?a&z=1"; err != nil || got != want {
		t.Errorf("BaseKey = %q, %v; want %q", got, err, want)
	}
	// A RawPath that does not decode to Path is ignored, as by EscapedPath.
	r = &http.Request{URL: &url.URL{Host: "h", Path: "/b", RawPath: "/a"}}
	if got, err := BaseKey(r); err != nil || got != "h/b" {
		t.Errorf("BaseKey with stale RawPath = %q, %v; want h/b", got, err)
	}
}

func TestBaseKeyErrors(t *testing.T) {
	tests := []struct {
		name string
		r    *http.Request
	}{
		{"nil request", nil},
		{"nil URL", &http.Request{}},
		{"opaque", &http.Request{URL: &url.URL{Scheme: "http", Opaque: "x"}}},
		{"star", &http.Request{URL: &url.URL{Path: "*"}}},
		{"relative", &http.Request{URL: &url.URL{Path: "a/b"}}},
		{"NUL in path", &http.Request{URL: &url.URL{Path: "/a\x00b"}}},
		{"escaped NUL in path", &http.Request{URL: &url.URL{Path: "/a\x00b", RawPath: "/a%00b"}}},
		{"CTL in path", &http.Request{URL: &url.URL{Path: "/a\nb"}}},
		{"bad escape in raw path", &http.Request{URL: &url.URL{Path: "/a%zz", RawPath: "/a%zz"}}},
		{"bad escape in query", &http.Request{URL: &url.URL{Path: "/", RawQuery: "a=%g1"}}},
		{"truncated escape in query", &http.Request{URL: &url.URL{Path: "/", RawQuery: "a=%1"}}},
		{"CTL in query", &http.Request{URL: &url.URL{Path: "/", RawQuery: "a=\x01"}}},
		{"space in host", &http.Request{Host: "a b", URL: &url.URL{Path: "/"}}},
		{"slash in host", &http.Request{Host: "a/b", URL: &url.URL{Path: "/"}}},
		{"non-ASCII host", &http.Request{Host: "é.com", URL: &url.URL{Path: "/"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := BaseKey(tt.r)
			if !errors.Is(err, ErrBadTarget) {
				t.Errorf("BaseKey = %q, %v; want ErrBadTarget", k, err)
			}
		})
	}
}

func TestBaseKeyAllocs(t *testing.T) {
	r := newTargetRequest(t, "www.example.com", "/news/2024/article-1234.html?utm_source=x&page=2&id=77")
	if n := testing.AllocsPerRun(100, func() { _, _ = BaseKey(r) }); n > 1 {
		t.Errorf("BaseKey allocates %v times, want at most 1", n)
	}
}

func TestVariantKey(t *testing.T) {
	const base = "example.com/x"
	tests := []struct {
		name string
		vary []string
		h    http.Header
		want string
	}{
		{"no vary", nil, http.Header{"Accept-Encoding": {"gzip"}}, base},
		{"one", []string{"Accept-Encoding"}, http.Header{"Accept-Encoding": {"gzip"}}, base + "#Accept-Encoding=gzip"},
		{"absent differs from empty", []string{"Accept-Encoding"}, http.Header{}, base + "#Accept-Encoding"},
		{"empty", []string{"Accept-Encoding"}, http.Header{"Accept-Encoding": {""}}, base + "#Accept-Encoding="},
		{"whitespace folded", []string{"Accept-Language"}, http.Header{"Accept-Language": {"  en-GB,\t  en  "}}, base + "#Accept-Language=en-gb, en"},
		{"lines joined", []string{"Accept-Language"}, http.Header{"Accept-Language": {"en-GB", "en"}}, base + "#Accept-Language=en-gb, en"},
		{"names canonicalised and sorted", []string{"x-b", " accept ", "X-B"},
			http.Header{"Accept": {"a"}, "X-B": {"b"}}, base + "#Accept=a#X-B=b"},
		{"raw Vary field lines", []string{"accept-encoding, Accept-Language", "Accept-Encoding"},
			http.Header{"Accept-Encoding": {"br"}, "Accept-Language": {"en"}}, base + "#Accept-Encoding=br#Accept-Language=en"},
		{"separators escaped", []string{"X-A"}, http.Header{"X-A": {"a#b=c%d"}}, base + "#X-A=a%23b%3Dc%25d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VariantKey(base, tt.vary, tt.h); got != tt.want {
				t.Errorf("VariantKey = %q, want %q", got, tt.want)
			}
		})
	}
	// Folding makes equivalent requests share a variant.
	a := VariantKey(base, []string{"Accept-Encoding"}, http.Header{"Accept-Encoding": {"gzip,  br"}})
	b := VariantKey(base, []string{"Accept-Encoding"}, http.Header{"Accept-Encoding": {" gzip, br "}})
	if a != b {
		t.Errorf("folded variants differ: %q vs %q", a, b)
	}
	if strings.Contains(base, "#") {
		t.Fatal("test base must not contain #")
	}
}

func TestKeyHash(t *testing.T) {
	if KeyHash("a") == KeyHash("b") {
		t.Error("KeyHash collides on a trivial pair")
	}
	if KeyHash("example.com/x") != KeyHash("example.com/x") {
		t.Error("KeyHash is not deterministic")
	}
}
