package httpcache

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestNewEntryHeaders(t *testing.T) {
	h := hdr(
		"Date", httpDate(t0),
		"Cache-Control", "public, max-age=60",
		"Connection", "close, X-Hop",
		"X-Hop", "1",
		"Keep-Alive", "timeout=5",
		"Transfer-Encoding", "chunked",
		"Set-Cookie", "sid=secret",
		"Surrogate-Key", "news  sport news",
		"Cache-Tag", "front, ,sport",
		"Age", "3",
		"Cache-Status", "upstream; hit",
		"X-Served-By", "node-1",
		"Content-Length", "999",
		"Etag", `"v1"`,
		"Last-Modified", httpDate(t0.Add(-time.Hour)),
		"Vary", "accept-encoding, Accept-Language",
		"Vary", "Accept-Encoding",
		"X-Kept", "yes",
	)
	body := []byte("hello")
	e := NewEntry("k", "k#v", &http.Request{Method: http.MethodGet}, 200, h, body, t0, t0, Defaults{})
	for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Transfer-Encoding", "Surrogate-Key", "Cache-Tag", "Age", "Cache-Status", "X-Served-By"} {
		if _, ok := e.Header[k]; ok {
			t.Errorf("stored header keeps %s", k)
		}
	}
	if got := e.Header.Get("Set-Cookie"); got != "sid=secret" {
		t.Errorf("Set-Cookie = %q: the fetching client must get it", got)
	}
	if sh := e.Shareable(); sh == e || sh.Header.Get("Set-Cookie") != "" || e.Header.Get("Set-Cookie") == "" || sh.Size() >= e.Size() {
		t.Error("Shareable does not drop Set-Cookie from a copy")
	}
	if got := e.Header.Get("X-Kept"); got != "yes" {
		t.Errorf("X-Kept = %q", got)
	}
	if got := e.Header.Get("Content-Length"); got != "5" {
		t.Errorf("Content-Length = %q, want 5 (the body's)", got)
	}
	if v, ok := e.Header["Content-Type"]; !ok || v != nil {
		t.Errorf("Content-Type = %q, %v; want a nil value that stops sniffing", v, ok)
	}
	if want := []string{"front", "news", "sport"}; !slices.Equal(e.Tags, want) {
		t.Errorf("Tags = %q, want %q", e.Tags, want)
	}
	if want := []string{"Accept-Encoding", "Accept-Language"}; !slices.Equal(e.Vary, want) {
		t.Errorf("Vary = %q, want %q", e.Vary, want)
	}
	if e.ETag != `"v1"` || e.LastModified != httpDate(t0.Add(-time.Hour)) {
		t.Errorf("validators = %q, %q", e.ETag, e.LastModified)
	}
	if e.InitialAge != 3*time.Second {
		t.Errorf("InitialAge = %v, want 3s from the Age header", e.InitialAge)
	}
	if e.Size() <= int64(len(body)+len(e.Key)) {
		t.Errorf("Size = %d, too small", e.Size())
	}
	// The caller's header is untouched and not shared.
	h.Set("X-Kept", "changed")
	if e.Header.Get("X-Kept") != "yes" || h.Get("Set-Cookie") == "" {
		t.Error("NewEntry shares or modifies the caller's header")
	}
}

func TestNewEntryAddsDateAndDropsBodyLength(t *testing.T) {
	e := NewEntry("k", "", nil, 204, hdr("Content-Length", "0", "Cache-Control", "max-age=5"), nil, t0, t0.Add(time.Second), Defaults{})
	if got := e.Header.Get("Date"); got != httpDate(t0.Add(time.Second)) {
		t.Errorf("Date = %q, want the response time", got)
	}
	if _, ok := e.Header["Content-Length"]; ok {
		t.Error("204 entry keeps Content-Length")
	}
	if _, ok := e.Header["Content-Type"]; ok {
		t.Error("204 entry gets a Content-Type")
	}
	if e.Key != "k" {
		t.Errorf("Key = %q, want the base key", e.Key)
	}
}

func TestNewEntryDerivesVariantKey(t *testing.T) {
	req := &http.Request{Method: http.MethodGet, Header: hdr("Accept-Encoding", "gzip")}
	e := NewEntry("h/x", "", req, 200, hdr("Vary", "accept-encoding", "Cache-Control", "max-age=60"), nil, t0, t0, Defaults{})
	if want := "h/x#Accept-Encoding=gzip"; e.Key != want || e.BaseKey != "h/x" {
		t.Errorf("Key, BaseKey = %q, %q; want %q, h/x", e.Key, e.BaseKey, want)
	}
}

func TestRevalidated(t *testing.T) {
	h := hdr(
		"Date", httpDate(t0),
		"Cache-Control", "max-age=60",
		"Etag", `"a"`,
		"Content-Type", "text/html",
		"X-Old", "1",
		"Surrogate-Key", "t1",
		"Vary", "Accept-Encoding",
	)
	body := []byte("hello")
	e := NewEntry("k", "k#Accept-Encoding=gzip", nil, 200, h, body, t0, t0, Defaults{StaleWhileRevalidate: time.Minute})
	t1 := t0.Add(10 * time.Minute)
	notModified := hdr(
		"Date", httpDate(t1),
		"Cache-Control", "max-age=120, must-revalidate",
		"Etag", `"a"`, // the stored validator: the 304 selects it (RFC 9111 §4.3.4)
		"Content-Length", "0",
		"X-Old", "2",
		"Connection", "X-Hop",
		"X-Hop", "y",
		"Age", "4",
		"Surrogate-Key", "t2 t3",
		"Vary", "Cookie",
	)
	r := e.Revalidated(notModified, t1.Add(-time.Second), t1, Defaults{StaleWhileRevalidate: time.Minute})

	checks := []struct{ name, got, want string }{
		{"Content-Length", r.Header.Get("Content-Length"), "5"},
		{"Content-Type", r.Header.Get("Content-Type"), "text/html"},
		{"Etag", r.Header.Get("Etag"), `"a"`},
		{"ETag field", r.ETag, `"a"`},
		{"X-Old", r.Header.Get("X-Old"), "2"},
		{"X-Hop", r.Header.Get("X-Hop"), ""},
		{"Age", r.Header.Get("Age"), ""},
		{"Date", r.Header.Get("Date"), httpDate(t1)},
		{"Vary", r.Header.Get("Vary"), "Accept-Encoding"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if r.Lifetime != 120*time.Second || r.SWR != 0 {
		t.Errorf("Lifetime, SWR = %v, %v; want 120s, 0 (must-revalidate)", r.Lifetime, r.SWR)
	}
	if r.InitialAge != 5*time.Second { // Age 4 + 1s response delay
		t.Errorf("InitialAge = %v, want 5s", r.InitialAge)
	}
	if !slices.Equal(r.Tags, []string{"t2", "t3"}) || !slices.Equal(r.Vary, []string{"Accept-Encoding"}) {
		t.Errorf("Tags, Vary = %q, %q", r.Tags, r.Vary)
	}
	if r.ResponseTime != t1 || r.RequestTime != t1.Add(-time.Second) || r.Key != e.Key || &r.Body[0] != &body[0] {
		t.Error("times, key or shared body wrong")
	}
	if r.State(t1.Add(time.Minute), 0.9) != Fresh {
		t.Errorf("revalidated entry not fresh a minute later")
	}
	// The original is unchanged.
	if e.ETag != `"a"` || e.Header.Get("X-Old") != "1" || e.Lifetime != 60*time.Second || !slices.Equal(e.Tags, []string{"t1"}) {
		t.Error("Revalidated modified the original entry")
	}
	// Without Date or tags in the 304: Date is the response time, tags stay.
	r2 := e.Revalidated(hdr("Cache-Control", "max-age=30"), t1, t1, Defaults{})
	if r2.Header.Get("Date") != httpDate(t1) || r2.InitialAge != 0 || !slices.Equal(r2.Tags, e.Tags) {
		t.Errorf("304 without Date: Date %q, initial age %v, tags %q", r2.Header.Get("Date"), r2.InitialAge, r2.Tags)
	}
}

func TestStaleCopy(t *testing.T) {
	e := &Entry{ResponseTime: t0, Lifetime: time.Minute, SWR: 10 * time.Second}
	now := t0.Add(20 * time.Second)
	s := e.stale(now)
	if s == e || s.State(now, 0.9) != StaleRevalidate || s.SWR != e.SWR {
		t.Errorf("stale copy: state %v", s.State(now, 0.9))
	}
	if e.State(now, 0.9) != Fresh {
		t.Error("stale modified the original")
	}
	if s.stale(now) != s {
		t.Error("stale of a stale entry copies it")
	}
}
