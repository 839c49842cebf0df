package node

import (
	"net/http"
	"strings"
	"testing"
)

// TestCookiePagesNotShared (issue 10, finding 2): a response to a request
// with Cookie is not stored nor served to others unless the origin marks
// it shared (public, s-maxage), the web-cache-deception shape
// (/account/x.css) included; a request with Cookie is not answered from
// a copy made for others unless that copy is marked shared; analytics
// cookies named by IgnoreCookies are dropped and do not make a page
// personal.
func TestCookiePagesNotShared(t *testing.T) {
	tc, eo := newEchoCluster(t, 3, func(c *Config) { c.IgnoreCookies = []string{"_ga*", "consent"} })
	get := func(i int, path, cookie string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, tc.url(i, path), nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		status, body, _ := tc.do(req)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, status)
		}
		return body
	}

	// Explicit freshness but not public: storable by a shared cache only
	// for requests without credentials or cookies.
	const personal = "/account/x.css?cc=max-age%3D60"
	if b := get(0, personal, "session=alice"); !strings.Contains(b, "session=alice") {
		t.Fatalf("alice's page does not show her cookie: %s", b)
	}
	for i := range 3 {
		if b := get(i, personal, ""); strings.Contains(b, "alice") {
			t.Errorf("n%d served alice's page to a visitor without her cookie:\n%s", i, b)
		}
	}
	// The anonymous copy is now stored; bob's cookie request is not
	// answered from it.
	before := eo.gets(personal)
	if b := get(1, personal, "session=bob"); !strings.Contains(b, "session=bob") {
		t.Errorf("bob got a copy made for others:\n%s", b)
	}
	if eo.gets(personal) != before+1 {
		t.Errorf("bob's request did not reach the origin")
	}

	// Marked shared by the origin: stored and served to everyone.
	const shared = "/news?cc=public,+max-age%3D60"
	get(0, shared, "session=alice")
	for i := range 3 {
		get(i, shared, "")
		get(i, shared, "session=carol")
	}
	if n := eo.gets(shared); n != 1 {
		t.Errorf("a public page with cookies: %d origin fetches, want 1", n)
	}

	// Only analytics cookies: dropped, so the page is shared, and the
	// origin never sees them.
	const page = "/home?cc=max-age%3D60" // explicit freshness: with the cookies gone, shareable
	get(0, page, "_ga=GA1.2.3; consent=yes; _gat_x=1")
	for i := range 3 {
		get(i, page, "_ga=GA9")
	}
	if n := eo.gets(page); n != 1 {
		t.Errorf("a page requested with only ignored cookies: %d origin fetches, want 1", n)
	}
	for _, s := range eo.requests() {
		if c := s.Header.Get("Cookie"); strings.Contains(c, "_ga") || strings.Contains(c, "consent") {
			t.Errorf("the origin got an ignored cookie: %q", c)
		}
	}
}
