package httpcache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

func TestServeEntry(t *testing.T) {
	lm := t0.Add(-time.Hour)
	full := NewEntry("k", "", nil, 200, hdr(
		"Date", httpDate(t0),
		"Cache-Control", "max-age=60",
		"Content-Type", "text/plain",
		"Etag", `"v1"`,
		"Last-Modified", httpDate(lm),
	), []byte("0123456789"), t0, t0, Defaults{})
	notFound := NewEntry("k", "", nil, 404, hdr("Date", httpDate(t0), "Content-Type", "text/plain"), []byte("gone"), t0, t0, Defaults{TTL: time.Minute})
	untyped := NewEntry("k", "", nil, 200, hdr("Date", httpDate(t0), "Cache-Control", "max-age=60"), []byte("<html>hi</html>"), t0, t0, Defaults{})

	tests := []struct {
		name    string
		e       *Entry
		method  string
		reqHdr  http.Header
		code    int
		body    string
		headers map[string]string // "" means absent
	}{
		{"plain", full, "GET", nil, 200, "0123456789",
			map[string]string{"Content-Length": "10", "Content-Type": "text/plain", "Etag": `"v1"`, "Age": "5", "Cache-Status": "crowdpilot; hit"}},
		{"head", full, "HEAD", nil, 200, "", map[string]string{"Content-Length": "10", "Age": "5"}},
		{"if-none-match hit", full, "GET", hdr("If-None-Match", `"x", "v1"`), 304, "",
			map[string]string{"Content-Length": "", "Content-Type": "", "Etag": `"v1"`, "Age": "5"}},
		{"if-none-match weak", full, "GET", hdr("If-None-Match", `W/"v1"`), 304, "", nil},
		{"if-none-match star", full, "GET", hdr("If-None-Match", `*`), 304, "", nil},
		{"if-none-match miss", full, "GET", hdr("If-None-Match", `"v2"`), 200, "0123456789", map[string]string{"Content-Length": "10"}},
		{"if-modified-since not modified", full, "GET", hdr("If-Modified-Since", httpDate(t0)), 304, "", nil},
		{"if-modified-since modified", full, "GET", hdr("If-Modified-Since", httpDate(lm.Add(-time.Second))), 200, "0123456789", nil},
		{"if-match fails", full, "GET", hdr("If-Match", `"v2"`), 412, "", nil},
		{"range", full, "GET", hdr("Range", "bytes=2-4"), 206, "234",
			map[string]string{"Content-Range": "bytes 2-4/10", "Content-Length": "3", "Content-Type": "text/plain", "Age": "5"}},
		{"suffix range", full, "GET", hdr("Range", "bytes=-3"), 206, "789", map[string]string{"Content-Range": "bytes 7-9/10"}},
		{"unsatisfiable range", full, "GET", hdr("Range", "bytes=20-30"), 416, "",
			map[string]string{"Content-Range": "bytes */10"}},
		{"head range", full, "HEAD", hdr("Range", "bytes=0-0"), 206, "", map[string]string{"Content-Length": "1"}},
		{"if-range match", full, "GET", hdr("Range", "bytes=0-1", "If-Range", `"v1"`), 206, "01", nil},
		{"if-range mismatch", full, "GET", hdr("Range", "bytes=0-1", "If-Range", `"v0"`), 200, "0123456789", nil},
		{"404 ignores range and conditionals", notFound, "GET", hdr("Range", "bytes=0-1", "If-None-Match", "*"), 404, "gone",
			map[string]string{"Content-Length": "4", "Content-Range": ""}},
		{"untyped fast path", untyped, "GET", nil, 200, "<html>hi</html>", map[string]string{"Content-Type": ""}},
		{"untyped range", untyped, "GET", hdr("Range", "bytes=0-5"), 206, "<html>", map[string]string{"Content-Type": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://example.com/k", nil)
			for k, v := range tt.reqHdr {
				r.Header[k] = v
			}
			w := httptest.NewRecorder()
			w.Header().Set("Cache-Status", "crowdpilot; hit")
			ServeEntry(w, r, tt.e, t0.Add(5500*time.Millisecond))
			res := w.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.code {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.code)
			}
			if tt.code != 412 && tt.code != 416 && string(body) != tt.body {
				t.Errorf("body = %q, want %q", body, tt.body)
			}
			for k, want := range tt.headers {
				if got := res.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	// The entry is untouched by serving.
	if full.Header.Get("Content-Length") != "10" || full.Header.Get("Content-Range") != "" || full.Header.Get("Age") != "" {
		t.Errorf("serving modified the entry's header: %v", full.Header)
	}
}

// TestServeEntryNoSniffOnWire checks, through a real server, that an entry
// without Content-Type is served without one.
func TestServeEntryNoSniffOnWire(t *testing.T) {
	e := NewEntry("k", "", nil, 200, hdr("Cache-Control", "max-age=60"), []byte("<html><body>x</body></html>"), t0, t0, Defaults{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ServeEntry(w, r, e, t0)
	}))
	defer srv.Close()
	for _, rng := range []string{"", "bytes=0-5"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if ct, ok := res.Header["Content-Type"]; ok {
			t.Errorf("range %q: Content-Type %q sniffed", rng, ct)
		}
	}
}

func TestServeEntryFastPathAllocs(t *testing.T) {
	e := NewEntry("k", "", nil, 200, hdr("Date", httpDate(t0), "Cache-Control", "max-age=60", "Content-Type", "text/plain"), make([]byte, 4096), t0, t0, Defaults{})
	r := httptest.NewRequest(http.MethodGet, "http://example.com/k", nil)
	w := &discardWriter{h: make(http.Header, 8)}
	n := testing.AllocsPerRun(100, func() {
		clear(w.h)
		ServeEntry(w, r, e, t0.Add(3*time.Second))
	})
	if n != 0 { // Age comes from the shared table
		t.Errorf("fast path allocates %v times, want 0", n)
	}
	if got := w.h["Age"]; len(got) != 1 || got[0] != "3" {
		t.Errorf("Age = %q, want [3]", got)
	}
	// Past the table, the value is built.
	clear(w.h)
	ServeEntry(w, r, e, t0.Add(5000*time.Second))
	if got := w.h["Age"]; len(got) != 1 || got[0] != "5000" {
		t.Errorf("Age = %q, want [5000]", got)
	}
}

func TestSecondsFieldsAreSafeToShare(t *testing.T) {
	fields := SecondsFields("ttl=", ";x", 12)
	for i, f := range fields {
		if want := "ttl=" + strconv.Itoa(i) + ";x"; len(f) != 1 || f[0] != want {
			t.Fatalf("field %d = %q, want [%s]", i, f, want)
		}
	}
	// A response that adds a value (a router appending its member) must
	// not write into the shared backing array.
	h := http.Header{"Cache-Status": fields[3]}
	h.Add("Cache-Status", "router; fwd=bypass")
	if fields[4][0] != "ttl=4;x" || len(fields[3]) != 1 {
		t.Fatalf("an append wrote into the shared table: %q %q", fields[3], fields[4])
	}
}

// discardWriter is a ResponseWriter that keeps its header and drops the rest.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
