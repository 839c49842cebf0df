package httpcache

import (
	"bytes"
	"net/http"
	"time"
)

// ServeEntry writes e as the response to r at now: it copies e's headers, sets
// Age (whole seconds), and answers conditional requests (If-None-Match,
// If-Modified-Since, If-Match, If-Unmodified-Since, If-Range) and byte Range
// requests (206 with Content-Range, or 416) from the full object through
// http.ServeContent. HEAD gets no body. Only 200 entries answer conditionals
// and ranges; other statuses (404, 301, ...) are written as stored.
//
// The caller sets Cache-Status and X-Served-By before calling. A request with
// none of the conditional or Range headers takes a fast path that writes the
// stored headers, Content-Length included, and the body directly, allocating
// only for the header map and the Age value. Header value slices are shared
// with e (see Entry.Header). Content-Type is never sniffed: an entry whose
// origin sent none is served without one.
func ServeEntry(w http.ResponseWriter, r *http.Request, e *Entry, now time.Time) {
	h := w.Header()
	for k, v := range e.Header {
		h[k] = v
	}
	h["Age"] = ageField(min(int64(e.Age(now)/time.Second), 1<<31))
	if _, ok := h["Content-Type"]; !ok && bodyAllowed(e.Status) {
		h["Content-Type"] = nil // no sniffing, by net/http or ServeContent
	}
	if e.Status != http.StatusOK || !needsServeContent(r.Header) {
		w.WriteHeader(e.Status)
		if r.Method != http.MethodHead && bodyAllowed(e.Status) {
			_, _ = w.Write(e.Body) // the client went away; nothing to do
		}
		return
	}
	var modtime time.Time
	if e.LastModified != "" {
		modtime, _ = http.ParseTime(e.LastModified) // zero when invalid: ignored
	}
	r = limitRanges(r, int64(len(e.Body))) // at most MaxRanges, coalesced
	http.ServeContent(w, r, "", modtime, bytes.NewReader(e.Body))
}

// ageFields are the Age field's values for the first seconds, built once
// so that a hit's Age costs no allocation. They are shared by every
// response and never written: each slice's capacity is its length, so an
// append copies it.
var ageFields = SecondsFields("", "", 1024)

func ageField(secs int64) []string {
	if secs < int64(len(ageFields)) {
		return ageFields[secs]
	}
	return []string{itoa(secs)}
}

// SecondsFields returns n one-value header fields, prefix, then 0, 1, ...
// n-1 in decimal, then suffix, for a serving path to share rather than
// build per response. Nobody may write to them.
func SecondsFields(prefix, suffix string, n int) [][]string {
	vals := make([]string, n)
	fields := make([][]string, n)
	for i := range n {
		vals[i] = prefix + itoa(int64(i)) + suffix
		fields[i] = vals[i : i+1 : i+1]
	}
	return fields
}

// needsServeContent reports whether h holds a conditional or Range field.
func needsServeContent(h http.Header) bool {
	if len(h) == 0 {
		return false
	}
	for _, k := range [...]string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"} {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}
